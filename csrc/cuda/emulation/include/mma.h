// Stand-in for the toolkit's mma.h in the emulated build: nvcuda::wmma 16x16x16 tiles of bf16 or
// fp16 with fp32 accumulators. A fragment holds 8 elements per lane (lane l holds elements
// 8l .. 8l + 7 of the tile in row-major order); the hardware's mapping is unspecified, so code that
// works here depends on no particular one. load/store/mma are warp collectives: all 32 lanes must
// call them together (checked); mma_sync multiplies in fp32 in the order k = 0, 1, ..., 15.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulation provides 16x16x16 tiles only");
    static constexpr int num_elements = 8;
    T x[8];
};

namespace detail {

inline int lane() {
    const uint3 t = threadIdx;
    const dim3 b = blockDim;
    return static_cast<int>((t.x + b.x * (t.y + b.y * t.z)) % 32u);
}

inline void collective(const char* what, const char* file, int line, void* payload = nullptr,
                       void (*combine)(void* const*) = nullptr) {
    dynin_rt::emu::warp_collective(dynin_rt::emu::Site{what, file, line}, dynin_rt::emu::Collective::kWmma, 0xffffffffu, 0, 0, 32,
                                   payload, combine);
}

// Element i of this lane's fragment is tile element (row, col) of the logical 16x16 matrix.
inline int row_of(int i) { return (lane() * 8 + i) / 16; }
inline int col_of(int i) { return (lane() * 8 + i) % 16; }

template <typename T>
struct MmaArgs {
    const T* a;
    const T* b;
    const float* c;
    float* d;
};

template <typename T>
void mma_combine(void* const* payloads) {
    float a[16][16], b[16][16], c[16][16];
    for (int l = 0; l < 32; ++l) {
        const auto* args = static_cast<const MmaArgs<T>*>(payloads[l]);
        for (int i = 0; i < 8; ++i) {
            const int e = l * 8 + i;
            a[e / 16][e % 16] = static_cast<float>(args->a[i]);
            b[e / 16][e % 16] = static_cast<float>(args->b[i]);
            c[e / 16][e % 16] = args->c[i];
        }
    }
    for (int l = 0; l < 32; ++l) {
        const auto* args = static_cast<const MmaArgs<T>*>(payloads[l]);
        for (int i = 0; i < 8; ++i) {
            const int m = (l * 8 + i) / 16, n = (l * 8 + i) % 16;
            float acc = 0.0f;
            for (int k = 0; k < 16; ++k) acc += a[m][k] * b[k][n];
            args->d[i] = acc + c[m][n];
        }
    }
}

}  // namespace detail

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, T v) {
    for (int i = 0; i < 8; ++i) f.x[i] = v;
}

// matrix_a is [m, k], matrix_b is [k, n]; row_major: element (r, c) at p[r * ldm + c].
template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value, "operand layout");
    detail::collective("wmma::load_matrix_sync", file, line);
    for (int i = 0; i < 8; ++i) {
        const int r = detail::row_of(i), c = detail::col_of(i);
        f.x[i] = std::is_same<Layout, row_major>::value ? p[r * ldm + c] : p[c * ldm + r];
    }
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t layout,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    detail::collective("wmma::load_matrix_sync", file, line);
    for (int i = 0; i < 8; ++i) {
        const int r = detail::row_of(i), c = detail::col_of(i);
        f.x[i] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t layout,
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    detail::collective("wmma::store_matrix_sync", file, line);
    for (int i = 0; i < 8; ++i) {
        const int r = detail::row_of(i), c = detail::col_of(i);
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[i];
    }
}

// d = a b + c over the warp's tiles (d may be c).
template <typename T, typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LayoutA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LayoutB>& b, const fragment<accumulator, 16, 16, 16, float>& c,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    static_assert(std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value, "bf16 or fp16 operands");
    detail::MmaArgs<T> args{a.x, b.x, c.x, d.x};
    detail::collective("wmma::mma_sync", file, line, &args, &detail::mma_combine<T>);
}

}  // namespace wmma
}  // namespace nvcuda
