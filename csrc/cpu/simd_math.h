// glibc's libmvec vector expf (AVX-512: 16 floats; <= 4 ulp) for the attention softmax, declared here
// because math.h only exposes it under -ffast-math. DYNIN_RT_SIMD_MATH tells whether it is linked.
// (The sampler steps use det_math.h instead: their values must equal the CUDA kernels' bit for bit.)
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(DYNIN_RT_HAVE_MVEC)
#include <immintrin.h>
extern "C" __m512 _ZGVeN16v_expf(__m512);
#define DYNIN_RT_SIMD_MATH 1
#endif

namespace dynin_rt {

// x[j] = exp(x[j] - shift) for j < n; returns the sum of the results.
inline float exp_shifted_sum(float* x, int64_t n, float shift) {
    float sum = 0.0f;
    int64_t j = 0;
#if DYNIN_RT_SIMD_MATH
    const __m512 s = _mm512_set1_ps(shift);
    __m512 acc = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) {
        const __m512 e = _ZGVeN16v_expf(_mm512_sub_ps(_mm512_loadu_ps(x + j), s));
        _mm512_storeu_ps(x + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    sum = _mm512_reduce_add_ps(acc);
#endif
    for (; j < n; ++j) sum += (x[j] = std::exp(x[j] - shift));
    return sum;
}

}  // namespace dynin_rt
