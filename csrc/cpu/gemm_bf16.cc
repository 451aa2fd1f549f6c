// y = x . w^T with bf16 weights on the CPU. With AVX512-BF16 (Zen 4, Sapphire Rapids) the inner
// products run on vdpbf16ps over bf16-rounded activations with fp32 accumulation, reading each
// weight byte once per call; otherwise weight panels are widened to fp32 and handed to sgemm.
// This file is compiled with -mavx512f -mavx512bf16 -mavx512bw -mavx512vl when the compiler
// supports them; the AVX512 path only runs after a CPUID check.
#include <cblas.h>

#include <algorithm>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "cpu_ops.h"
#include "dynin_rt/common.h"
#include "thread_pool.h"

namespace dynin_rt {

bool cpu_has_avx512_bf16() {
#if defined(__AVX512BF16__)
    static const bool supported = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
    return supported;
#else
    return false;
#endif
}

namespace {

// Weight rows per task: a panel of 4 x k bf16 stays in L1 while all activation rows pass over it.
constexpr int64_t kRowsPerPanel = 4;

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
            // one thread per chunk already: keep OpenBLAS single-threaded here
            scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(p.m), static_cast<blasint>(rows),
                              static_cast<blasint>(p.k), 1.0f, p.x, static_cast<blasint>(p.ldx), panel.data(),
                              static_cast<blasint>(p.k), p.accumulate ? 1.0f : 0.0f, p.y + n0, static_cast<blasint>(p.ldy));
        }
    });
}

#if defined(__AVX512BF16__)
void gemm_bf16_avx512(const GemmParams& p) {
    const int64_t k = p.k, k_pad = (k + 31) / 32 * 32;
    // Activations rounded to bf16 once per call (round-to-nearest-even, as torch), zero padded.
    std::vector<uint16_t> xb(static_cast<size_t>(p.m * k_pad), 0);
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = 0; j < k; ++j) xb[i * k_pad + j] = f32_to_bf16(p.x[i * p.ldx + j]);
    });
    const auto* w = static_cast<const uint16_t*>(p.w);
    const int64_t panels = (p.n + kRowsPerPanel - 1) / kRowsPerPanel;
    const __mmask32 tail_mask = (k % 32) ? static_cast<__mmask32>((1ull << (k % 32)) - 1) : static_cast<__mmask32>(~0u);
    parallel_for(panels, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t n0 = b * kRowsPerPanel, nr = std::min(kRowsPerPanel, p.n - n0);
            const uint16_t* wr[kRowsPerPanel];
            for (int64_t r = 0; r < kRowsPerPanel; ++r) wr[r] = w + (n0 + std::min(r, nr - 1)) * p.ldw;
            for (int64_t i0 = 0; i0 < p.m; i0 += 4) {
                const int64_t mr = std::min<int64_t>(4, p.m - i0);
                const uint16_t* xr[4];
                for (int64_t r = 0; r < 4; ++r) xr[r] = xb.data() + (i0 + std::min(r, mr - 1)) * k_pad;
                __m512 acc[4][kRowsPerPanel];
                for (auto& row : acc)
                    for (auto& a : row) a = _mm512_setzero_ps();
                for (int64_t kk = 0; kk < k_pad; kk += 32) {
                    const __mmask32 mask = (kk + 32 <= k) ? static_cast<__mmask32>(~0u) : tail_mask;
                    __m512bh wv[kRowsPerPanel];
                    for (int64_t r = 0; r < kRowsPerPanel; ++r)
                        wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(mask, wr[r] + kk);
                    for (int64_t a = 0; a < 4; ++a) {
                        const __m512bh xv = (__m512bh)_mm512_loadu_si512(xr[a] + kk);
                        for (int64_t r = 0; r < kRowsPerPanel; ++r) acc[a][r] = _mm512_dpbf16_ps(acc[a][r], xv, wv[r]);
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
    }, 8);
}
#endif

}  // namespace

void cpu_gemm_bf16(const GemmParams& p) {
    if (p.m == 0 || p.n == 0) return;
#if defined(__AVX512BF16__)
    if (cpu_has_avx512_bf16()) {
        gemm_bf16_avx512(p);
        return;
    }
#endif
    gemm_bf16_widen(p);
}

}  // namespace dynin_rt
