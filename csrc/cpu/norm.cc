// RMSNorm on the CPU: statistics in double-width accumulation of fp32 squares (the reference's mean
// runs in fp32 with pairwise summation; accumulating in double keeps the error below it).
#include <cmath>

#include "cpu_ops.h"
#include "thread_pool.h"

namespace dynin_rt {

namespace {
inline float weight_at(const void* w, DType t, int64_t j) {
    switch (t) {
        case DType::F32: return static_cast<const float*>(w)[j];
        case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w)[j]);
        case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w)[j]);
    }
    return 0.0f;
}
}  // namespace

void cpu_rms_norm(const RmsNormParams& p) {
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float* x = p.x + i * p.d;
            float* out = p.out + i * p.d;
            double ss = 0.0;
            for (int64_t j = 0; j < p.d; ++j) ss += static_cast<double>(x[j]) * x[j];
            const float inv = 1.0f / std::sqrt(static_cast<float>(ss / p.d) + p.eps);
            if (p.w_dtype == DType::F32) {
                const float* w = static_cast<const float*>(p.w);
                for (int64_t j = 0; j < p.d; ++j) out[j] = w[j] * (x[j] * inv);
            } else {
                for (int64_t j = 0; j < p.d; ++j) out[j] = weight_at(p.w, p.w_dtype, j) * (x[j] * inv);
            }
        }
    }, 8);
}

}  // namespace dynin_rt
