// Half-rotation RoPE (NeoX style) on the CPU, in place, from precomputed fp32 tables:
// x'[j] = x[j] cos - x[j + D/2] sin,  x'[j + D/2] = x[j + D/2] cos + x[j] sin.
#include "cpu_ops.h"
#include "thread_pool.h"

namespace dynin_rt {

void cpu_rope(const RopeParams& p) {
    const int64_t half = p.head_dim / 2;
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float* s = p.sin + static_cast<int64_t>(p.positions[i]) * half;
            const float* c = p.cos + static_cast<int64_t>(p.positions[i]) * half;
            for (float* base : {p.q + i * p.ld, p.k + i * p.ld}) {
                for (int64_t h = 0; h < p.n_heads; ++h) {
                    float* x = base + h * p.head_dim;
                    for (int64_t j = 0; j < half; ++j) {
                        const float a = x[j], b = x[j + half];
                        x[j] = a * c[j] - b * s[j];
                        x[j + half] = b * c[j] + a * s[j];
                    }
                }
            }
        }
    }, 8);
}

}  // namespace dynin_rt
