// Half-rotation RoPE in place on q and k (twin of cpu/rope.cc), from the engine's fp32 tables.
#include "launch.cuh"

namespace dynin_rt {
namespace cuda {

namespace {

// grid: m token rows; threads over (head, j < head_dim / 2) pairs of q and k
__global__ void rope_kernel(RopeParams p) {
    const int64_t i = blockIdx.x, half = p.head_dim / 2;
    const float* s = p.sin + static_cast<int64_t>(p.positions[i]) * half;
    const float* c = p.cos + static_cast<int64_t>(p.positions[i]) * half;
    for (int64_t t = threadIdx.x; t < p.n_heads * half; t += blockDim.x) {
        const int64_t h = t / half, j = t % half;
        for (float* base : {p.q + i * p.ld, p.k + i * p.ld}) {
            float* x = base + h * p.head_dim;
            const float a = x[j], b = x[j + half];
            x[j] = a * c[j] - b * s[j];
            x[j + half] = b * c[j] + a * s[j];
        }
    }
}

}  // namespace

void rope(const RopeParams& p, Context& c) {
    if (p.m == 0) return;
    DYNIN_RT_LAUNCH(c, rope_kernel, static_cast<unsigned>(p.m), 256, 0, p);
}

}  // namespace cuda
}  // namespace dynin_rt
