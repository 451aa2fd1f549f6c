// y = x . w^T with bf16 weights on the CPU. With AVX512-BF16 (Zen 4, Sapphire Rapids) the engine
// packs every bf16 matrix (16 weight rows x k pairs), and the products run on vdpbf16ps over
// bf16-rounded activations with fp32 accumulation: each instruction adds two k terms to 16 output
// columns for one broadcast activation pair, no horizontal sums. Row-major bf16 weights (a CPU
// without AVX512-BF16) are widened to fp32 panel by panel for sgemm.
// Only the packed tile is compiled for AVX512-BF16 (a target attribute, when the compiler has it:
// DYNIN_RT_AVX512BF16_KERNEL), and it runs only after a CPUID check. The rest of this file, and the
// inline functions it instantiates, keep the build's baseline instruction set: compiling the whole
// file with -mavx512* let the linker pick AVX-512 copies of shared inline code, which then faulted
// on CPUs without AVX-512.
#include <cblas.h>

#include <algorithm>
#include <vector>

#if DYNIN_RT_AVX512BF16_KERNEL
#include <immintrin.h>
#define DYNIN_RT_AVX512BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
#endif

#include "cpu_ops.h"
#include "dynin_rt/common.h"
#include "thread_pool.h"

namespace dynin_rt {

bool cpu_has_avx512_bf16() {
#if DYNIN_RT_AVX512BF16_KERNEL
    static const bool supported = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
    return supported;
#else
    return false;
#endif
}

namespace {

void gemm_bf16_widen(const GemmParams& p) {
    constexpr int64_t kChunk = 256;  // weight rows widened per sgemm call
    const auto* w = static_cast<const uint16_t*>(p.w);
    const int64_t chunks = (p.n + kChunk - 1) / kChunk;
    parallel_for(chunks, [&](int64_t c0, int64_t c1) {
        std::vector<float> panel(static_cast<size_t>(kChunk * p.k));
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t n0 = c * kChunk, rows = std::min(kChunk, p.n - n0);
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = 0; j < p.k; ++j) panel[r * p.k + j] = bf16_to_f32(w[(n0 + r) * p.ldw + j]);
            scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(p.m), static_cast<blasint>(rows),
                              static_cast<blasint>(p.k), 1.0f, p.x, static_cast<blasint>(p.ldx), panel.data(),
                              static_cast<blasint>(p.k), p.accumulate ? 1.0f : 0.0f, p.y + n0, static_cast<blasint>(p.ldy));
        }
    });
}

#if DYNIN_RT_AVX512BF16_KERNEL
constexpr int64_t kPanel = 16;  // weight rows per packed panel
constexpr int64_t kRows = 12;   // activation rows per tile: 2 panels x 12 = 24 accumulators

// Two panels (32 output columns) x MR activation rows; xb is [m, k_pairs * 2] bf16.
template <int MR>
DYNIN_RT_AVX512BF16_TARGET void packed_tile(const GemmParams& p, const uint16_t* xb, int64_t k_pairs, const uint16_t* w0, const uint16_t* w1, int64_t m0,
                 int64_t panel) {
    __m512 a0[MR], a1[MR];
    for (int i = 0; i < MR; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
    const int32_t* x = reinterpret_cast<const int32_t*>(xb) + m0 * k_pairs;  // one bf16 pair per int32
    for (int64_t kp = 0; kp < k_pairs; ++kp) {
        const __m512bh v0 = (__m512bh)_mm512_loadu_si512(w0 + kp * 2 * kPanel);
        const __m512bh v1 = (__m512bh)_mm512_loadu_si512(w1 + kp * 2 * kPanel);
        for (int i = 0; i < MR; ++i) {
            const __m512bh xv = (__m512bh)_mm512_set1_epi32(x[i * k_pairs + kp]);
            a0[i] = _mm512_dpbf16_ps(a0[i], xv, v0);
            a1[i] = _mm512_dpbf16_ps(a1[i], xv, v1);
        }
    }
    alignas(64) float buf[2 * kPanel];
    const int64_t col_lo = p.w_row0, col_hi = p.w_row0 + p.n;
    for (int i = 0; i < MR; ++i) {
        _mm512_store_ps(buf, a0[i]);
        _mm512_store_ps(buf + kPanel, a1[i]);
        float* y = p.y + (m0 + i) * p.ldy;
        for (int64_t j = 0; j < 2 * kPanel; ++j) {
            const int64_t row = panel * kPanel + j;
            if (row < col_lo || row >= col_hi) continue;
            float& out = y[row - p.w_row0];
            out = p.accumulate ? out + buf[j] : buf[j];
        }
    }
}

using PackedTile = void (*)(const GemmParams&, const uint16_t*, int64_t, const uint16_t*, const uint16_t*, int64_t, int64_t);
constexpr PackedTile kPackedTiles[kRows + 1] = {nullptr,          packed_tile<1>,  packed_tile<2>, packed_tile<3>,
                                                packed_tile<4>,   packed_tile<5>,  packed_tile<6>, packed_tile<7>,
                                                packed_tile<8>,   packed_tile<9>,  packed_tile<10>, packed_tile<11>,
                                                packed_tile<12>};
#endif

}  // namespace

int64_t cpu_packed_bf16_elems(int64_t n, int64_t k) { return (n + 15) / 16 * 16 * ((k + 1) / 2) * 2; }

void cpu_pack_weights_bf16(const uint16_t* w, int64_t n, int64_t k, uint16_t* packed) {
    // element (row, col) -> ((panel * k_pairs + col / 2) * 16 + row % 16) * 2 + col % 2
    const int64_t panels = (n + 15) / 16, k_pairs = (k + 1) / 2;
    parallel_for(panels, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p)
            for (int64_t kp = 0; kp < k_pairs; ++kp)
                for (int64_t j = 0; j < 16; ++j)
                    for (int64_t e = 0; e < 2; ++e) {
                        const int64_t row = p * 16 + j, col = 2 * kp + e;
                        packed[((p * k_pairs + kp) * 16 + j) * 2 + e] = row < n && col < k ? w[row * k + col] : 0;
                    }
    }, 64);
}

void cpu_gemm_packed_bf16(const GemmParams& p) {
#if DYNIN_RT_AVX512BF16_KERNEL
    const int64_t k_pairs = (p.k + 1) / 2;
    std::vector<uint16_t> xb(static_cast<size_t>(p.m * k_pairs * 2), 0);  // activations in bf16, even k
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = 0; j < p.k; ++j) xb[i * k_pairs * 2 + j] = f32_to_bf16(p.x[i * p.ldx + j]);
    });
    const auto* packed = static_cast<const uint16_t*>(p.w);
    const int64_t panel_elems = k_pairs * 2 * kPanel;
    const int64_t first = p.w_row0 / kPanel, last = (p.w_row0 + p.n - 1) / kPanel;
    const int64_t pairs = (last - first) / 2 + 1;
    parallel_for(pairs, [&](int64_t q0, int64_t q1) {
        std::vector<uint16_t> zero(static_cast<size_t>(panel_elems), 0);  // stands in past the last panel
        for (int64_t q = q0; q < q1; ++q) {
            const int64_t panel = first + 2 * q;
            const uint16_t* w0 = packed + panel * panel_elems;
            const uint16_t* w1 = panel + 1 <= last ? w0 + panel_elems : zero.data();
            for (int64_t m0 = 0; m0 < p.m; m0 += kRows)
                kPackedTiles[std::min(kRows, p.m - m0)](p, xb.data(), k_pairs, w0, w1, m0, panel);
        }
    }, 4);
#else
    throw InvalidArgument("packed bf16 weights need AVX512-BF16");
#endif
}

void cpu_gemm_bf16(const GemmParams& p) {
    if (p.m == 0 || p.n == 0) return;
    gemm_bf16_widen(p);
}

}  // namespace dynin_rt
