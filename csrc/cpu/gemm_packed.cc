// y = x . w^T from a panel-packed fp32 weight copy, for few activation rows over a very wide weight
// (the LM head: 138752 x 4096 in the release). Row-major weights force dot products that end in
// horizontal sums; packing each 16 weight rows k-major ([k][16]) turns the product into broadcast
// FMAs whose 16 lanes are 16 output columns, so the kernel streams the weight once at FMA rate.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu_ops.h"
#include "dynin_rt/common.h"
#include "thread_pool.h"

namespace dynin_rt {

namespace {
constexpr int64_t kPanel = 16;  // weight rows per packed panel
constexpr int64_t kRows = 12;   // activation rows per tile: 2 panels x 12 = 24 accumulators
}  // namespace

bool cpu_packs_weights() {
#if defined(__AVX512F__)
    return true;
#else
    return false;
#endif
}

void cpu_pack_weights_f32(const float* w, int64_t n, int64_t k, float* packed) {
    const int64_t panels = (n + kPanel - 1) / kPanel;
    parallel_for(panels, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p)
            for (int64_t kk = 0; kk < k; ++kk)
                for (int64_t j = 0; j < kPanel; ++j) {
                    const int64_t row = p * kPanel + j;
                    packed[(p * k + kk) * kPanel + j] = row < n ? w[row * k + kk] : 0.0f;
                }
    }, 64);
}

int64_t cpu_packed_weights_floats(int64_t n, int64_t k) { return (n + kPanel - 1) / kPanel * kPanel * k; }

#if defined(__AVX512F__)
namespace {

// Two panels (32 columns) x MR rows; stores only the columns inside [col_lo, col_hi).
template <int MR>
void tile(const GemmParams& p, const float* w0, const float* w1, int64_t m0, int64_t panel, int64_t col_lo, int64_t col_hi) {
    __m512 a0[MR], a1[MR];
    for (int i = 0; i < MR; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
    const float* x = p.x + m0 * p.ldx;
    for (int64_t kk = 0; kk < p.k; ++kk) {
        const __m512 v0 = _mm512_loadu_ps(w0 + kk * kPanel);
        const __m512 v1 = _mm512_loadu_ps(w1 + kk * kPanel);
        for (int i = 0; i < MR; ++i) {
            const __m512 xb = _mm512_set1_ps(x[i * p.ldx + kk]);
            a0[i] = _mm512_fmadd_ps(xb, v0, a0[i]);
            a1[i] = _mm512_fmadd_ps(xb, v1, a1[i]);
        }
    }
    alignas(64) float buf[2 * kPanel];
    for (int i = 0; i < MR; ++i) {
        _mm512_store_ps(buf, a0[i]);
        _mm512_store_ps(buf + kPanel, a1[i]);
        float* y = p.y + (m0 + i) * p.ldy;
        for (int64_t j = 0; j < 2 * kPanel; ++j) {
            const int64_t row = panel * kPanel + j;  // weight row = output column + w_row0
            if (row < col_lo || row >= col_hi) continue;
            float& out = y[row - p.w_row0];
            out = p.accumulate ? out + buf[j] : buf[j];
        }
    }
}

using TileFn = void (*)(const GemmParams&, const float*, const float*, int64_t, int64_t, int64_t, int64_t);
constexpr TileFn kTiles[kRows + 1] = {nullptr,  tile<1>, tile<2>, tile<3>, tile<4>,  tile<5>, tile<6>,
                                       tile<7>, tile<8>, tile<9>, tile<10>, tile<11>, tile<12>};

}  // namespace
#endif

void cpu_gemm_packed(const GemmParams& p) {
    if (p.w_dtype == DType::BF16) {
        cpu_gemm_packed_bf16(p);
        return;
    }
#if defined(__AVX512F__)
    const auto* packed = static_cast<const float*>(p.w);
    const int64_t first = p.w_row0 / kPanel, last = (p.w_row0 + p.n - 1) / kPanel;  // panels touched
    const int64_t pairs = (last - first) / 2 + 1;
    parallel_for(pairs, [&](int64_t q0, int64_t q1) {
        std::vector<float> zero(static_cast<size_t>(p.k * kPanel), 0.0f);  // stands in past the last panel
        for (int64_t q = q0; q < q1; ++q) {
            const int64_t panel = first + 2 * q;
            const float* w0 = packed + panel * p.k * kPanel;
            const float* w1 = panel + 1 <= last ? w0 + p.k * kPanel : zero.data();
            for (int64_t m0 = 0; m0 < p.m; m0 += kRows) {
                const int64_t mr = std::min(kRows, p.m - m0);
                kTiles[mr](p, w0, w1, m0, panel, p.w_row0, p.w_row0 + p.n);
            }
        }
    }, 4);
#else
    throw InvalidArgument("packed weights need AVX-512");
#endif
}

}  // namespace dynin_rt
