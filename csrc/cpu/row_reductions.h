// Reductions over one logits row shared by the fused sampler steps (commit_step.cc,
// maskgit_step.cc): max, sum of exp in double, and Gumbel-max on the counter noise. The AVX-512
// paths process 8 doubles at a time (exp and log from simd_math.h) and give the same results as the
// scalar paths up to the last bits of exp/log.
#pragma once
#include <cmath>
#include <cstdint>

#include "dynin_rt/counter_rng.h"
#include "simd_math.h"

namespace dynin_rt {

// A logits row, optionally divided by a temperature in fp32 (as the reference's tensor division).
struct LogitsRow {
    const float* data;
    int64_t n;
    float divisor = 1.0f;  // 1: unscaled
    float at(int64_t j) const { return divisor == 1.0f ? data[j] : data[j] / divisor; }
};

inline float row_max(const LogitsRow& r) {
    float m = -INFINITY;
    for (int64_t j = 0; j < r.n; ++j) m = std::max(m, r.at(j));
    return m;
}

// Index of the first maximum.
inline int64_t row_argmax(const LogitsRow& r) {
    int64_t best = 0;
    float m = r.at(0);
    for (int64_t j = 1; j < r.n; ++j)
        if (r.at(j) > m) { m = r.at(j); best = j; }
    return best;
}

// sum_j exp(value_j - m) in double.
inline double row_sum_exp(const LogitsRow& r, double m) {
    double sum = 0.0;
    int64_t j = 0;
#if DYNIN_RT_SIMD_MATH
    __m512d acc = _mm512_setzero_pd();
    const __m512d vm = _mm512_set1_pd(m);
    const __m256 div = _mm256_set1_ps(r.divisor);
    for (; j + 8 <= r.n; j += 8) {
        __m256 v = _mm256_loadu_ps(r.data + j);
        if (r.divisor != 1.0f) v = _mm256_div_ps(v, div);
        acc = _mm512_add_pd(acc, _ZGVeN8v_exp(_mm512_sub_pd(_mm512_cvtps_pd(v), vm)));
    }
    sum = _mm512_reduce_add_pd(acc);
#endif
    for (; j < r.n; ++j) sum += std::exp(static_cast<double>(r.at(j)) - m);
    return sum;
}

// argmax_j value_j + t * Gumbel(u_j), u_j = U(key, j): the first maximum.
inline int64_t row_gumbel_argmax(const LogitsRow& r, double t, uint64_t key) {
    int64_t best = 0;
    double best_v = -INFINITY;
    int64_t j = 0;
#if DYNIN_RT_SIMD_MATH
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i k_index = _mm512_set1_epi64(static_cast<long long>(0x9E3779B97F4A7C15ull));
    const __m512i m1 = _mm512_set1_epi64(static_cast<long long>(0xBF58476D1CE4E5B9ull));
    const __m512i m2 = _mm512_set1_epi64(static_cast<long long>(0x94D049BB133111EBull));
    const __m512i vkey = _mm512_set1_epi64(static_cast<long long>(key));
    const __m512d tiny = _mm512_set1_pd(1e-20), half = _mm512_set1_pd(0.5), scale = _mm512_set1_pd(1.0 / 9007199254740992.0);
    const __m512d vt = _mm512_set1_pd(t), zero = _mm512_setzero_pd();
    const __m256 div = _mm256_set1_ps(r.divisor);
    __m512d vbest = _mm512_set1_pd(-INFINITY);
    __m512i vidx = _mm512_setzero_si512();
    for (; j + 8 <= r.n; j += 8) {
        const __m512i idx = _mm512_add_epi64(_mm512_set1_epi64(j), lane);
        __m512i z = _mm512_add_epi64(vkey, _mm512_mullo_epi64(idx, k_index));
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 30));
        z = _mm512_mullo_epi64(z, m1);
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 27));
        z = _mm512_mullo_epi64(z, m2);
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
        const __m512d u = _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(z, 11)), half), scale);
        const __m512d inner = _mm512_max_pd(_mm512_sub_pd(zero, _ZGVeN8v_log(_mm512_max_pd(u, tiny))), tiny);
        const __m512d g = _mm512_sub_pd(zero, _ZGVeN8v_log(inner));
        __m256 v = _mm256_loadu_ps(r.data + j);
        if (r.divisor != 1.0f) v = _mm256_div_ps(v, div);
        const __m512d val = _mm512_add_pd(_mm512_cvtps_pd(v), _mm512_mul_pd(vt, g));  // as v + t * g, unfused
        const __mmask8 better = _mm512_cmp_pd_mask(val, vbest, _CMP_GT_OQ);
        vbest = _mm512_mask_mov_pd(vbest, better, val);
        vidx = _mm512_mask_mov_epi64(vidx, better, idx);
    }
    // lanes hold the first maximum of their own indices; pick the best, smallest index on ties
    alignas(64) double bv[8];
    alignas(64) int64_t bi[8];
    _mm512_store_pd(bv, vbest);
    _mm512_store_si512(reinterpret_cast<__m512i*>(bi), vidx);
    for (int l = 0; l < 8; ++l)
        if (bv[l] > best_v || (bv[l] == best_v && bi[l] < best)) { best_v = bv[l]; best = bi[l]; }
#endif
    for (; j < r.n; ++j) {
        const double v = static_cast<double>(r.at(j)) + t * gumbel_from_uniform(bits_to_uniform(counter_at(key, j)));
        if (v > best_v) { best_v = v; best = j; }
    }
    return best;
}

}  // namespace dynin_rt
