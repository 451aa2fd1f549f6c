// RMSNorm (twin of cpu/norm.cc): one block per row, sum of squares reduced in fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "launch.cuh"
#include "weights.cuh"

namespace dynin_rt {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * w   grid: m rows, block: whole warps, <= kThreads
__global__ void rms_norm_kernel(RmsNormParams p) {
    __shared__ float partial[kThreads / 32];
    const int warps = static_cast<int>(blockDim.x / 32);
    const float* x = p.x + blockIdx.x * p.d;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) ss += x[j] * x[j];
    for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = static_cast<int>(threadIdx.x) < warps ? partial[threadIdx.x] : 0.0f;
        for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
        if (threadIdx.x == 0) partial[0] = ss;
    }
    __syncthreads();
    const float inv = rsqrtf(partial[0] / static_cast<float>(p.d) + p.eps);
    float* out = p.out + blockIdx.x * p.d;
    for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) out[j] = weight_at(p.w, p.w_dtype, j) * (x[j] * inv);
}

}  // namespace

void rms_norm(const RmsNormParams& p, Context& c) {
    if (p.m == 0) return;
    // one thread per element up to kThreads (narrow rows leave no idle warps)
    const unsigned threads = static_cast<unsigned>(std::min<int64_t>(kThreads, (p.d + 31) / 32 * 32));
    DYNIN_RT_LAUNCH(c, rms_norm_kernel, static_cast<unsigned>(p.m), threads, 0, p);
}

}  // namespace cuda
}  // namespace dynin_rt
