// y = x . w^T on the CPU for fp32 weights.
//
// Two regimes. Most products go to OpenBLAS's sgemm (scipy-openblas32, threaded by OpenBLAS). With
// very few activation rows (the LM head late in a block, when one or two positions are still masked)
// the product is bound by streaming the weights, and a register-tiled AVX-512 kernel that reads every
// weight row exactly once does better than sgemm's packing. bf16 weights go to gemm_bf16.cc; fp16 never reaches here (the
// CPU engine widens it to fp32 at load, which is exact).
#include <cblas.h>

#include <algorithm>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu_ops.h"
#include "dynin_rt/common.h"
#include "thread_pool.h"

namespace dynin_rt {

namespace {

// Below this many activation rows the streaming kernel beats sgemm on this class of CPU (measured on
// Zen 4: 8 rows 0.38 vs 0.52 ms, 16 rows even, 32 rows 1.65 vs 0.87 ms for a 3072 x 512 weight).
constexpr int64_t kSkinnyRows = 15;

#if defined(__AVX512F__)
constexpr int64_t kMr = 4;  // activation rows per tile
constexpr int64_t kNr = 6;  // weight rows per tile: 24 accumulators + 10 operands fit 32 zmm registers

void gemm_f32_streaming(const GemmParams& p) {
    const auto* w = static_cast<const float*>(p.w);
    const int64_t panels = (p.n + kNr - 1) / kNr;
    const __mmask16 tail = (p.k % 16) ? static_cast<__mmask16>((1u << (p.k % 16)) - 1) : static_cast<__mmask16>(0xffff);
    parallel_for(panels, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t n0 = b * kNr, nr = std::min(kNr, p.n - n0);
            const float* wr[kNr];
            for (int64_t r = 0; r < kNr; ++r) wr[r] = w + (n0 + std::min(r, nr - 1)) * p.ldw;
            for (int64_t i0 = 0; i0 < p.m; i0 += kMr) {
                const int64_t mr = std::min(kMr, p.m - i0);
                const float* xr[kMr];
                for (int64_t a = 0; a < kMr; ++a) xr[a] = p.x + (i0 + std::min(a, mr - 1)) * p.ldx;
                __m512 acc[kMr][kNr];
                for (auto& row : acc)
                    for (auto& v : row) v = _mm512_setzero_ps();
                for (int64_t kk = 0; kk < p.k; kk += 16) {
                    const __mmask16 mask = kk + 16 <= p.k ? static_cast<__mmask16>(0xffff) : tail;
                    __m512 wv[kNr];
                    for (int64_t r = 0; r < kNr; ++r) wv[r] = _mm512_maskz_loadu_ps(mask, wr[r] + kk);
                    for (int64_t a = 0; a < kMr; ++a) {
                        const __m512 xv = _mm512_maskz_loadu_ps(mask, xr[a] + kk);
                        for (int64_t r = 0; r < kNr; ++r) acc[a][r] = _mm512_fmadd_ps(xv, wv[r], acc[a][r]);
                    }
                }
                for (int64_t a = 0; a < mr; ++a) {
                    float* y = p.y + (i0 + a) * p.ldy + n0;
                    for (int64_t r = 0; r < nr; ++r) {
                        const float s = _mm512_reduce_add_ps(acc[a][r]);
                        y[r] = p.accumulate ? y[r] + s : s;
                    }
                }
            }
        }
    }, 16);
}
#endif

void gemm_f32_openblas(const GemmParams& p) {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(p.m), static_cast<blasint>(p.n),
                      static_cast<blasint>(p.k), 1.0f, p.x, static_cast<blasint>(p.ldx), static_cast<const float*>(p.w),
                      static_cast<blasint>(p.ldw), p.accumulate ? 1.0f : 0.0f, p.y, static_cast<blasint>(p.ldy));
}

}  // namespace

void cpu_gemm(const GemmParams& p) {
    if (p.m == 0 || p.n == 0) return;
    if (p.w_packed) {
        cpu_gemm_packed(p);
        return;
    }
    switch (p.w_dtype) {
        case DType::F32:
#if defined(__AVX512F__)
            if (p.m <= kSkinnyRows) {
                gemm_f32_streaming(p);
                return;
            }
#endif
            gemm_f32_openblas(p);
            return;
        case DType::BF16:
            cpu_gemm_bf16(p);
            return;
        case DType::F16:
            break;
    }
    throw InvalidArgument(str_cat("cpu gemm: weights of dtype ", dtype_name(p.w_dtype), " are not supported"));
}

}  // namespace dynin_rt
