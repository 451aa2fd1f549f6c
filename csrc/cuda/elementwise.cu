// Embedding gather, SwiGLU, row copies, CFG combination and the GEMMs' activation casts (twins of
// cpu/elementwise.cc).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "launch.cuh"
#include "weights.cuh"

namespace dynin_rt {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// out[i, :] = table[ids[i], :]   grid: m rows
__global__ void embed_kernel(EmbedParams p) {
    const int64_t i = blockIdx.x;
    const int64_t row = p.canvas && p.canvas_index[i] >= 0 ? p.canvas[p.canvas_index[i]] : p.ids[i];
    for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) p.out[i * p.d + j] = weight_at(p.table, p.dtype, row * p.d + j);
}

// out[i, j] = silu(gate[i, j]) * up[i, j]   grid: m rows
__global__ void swiglu_kernel(SwigluParams p) {
    const int64_t i = blockIdx.x;
    const float* gate = p.gate_up + i * p.ld;
    for (int64_t j = threadIdx.x; j < p.h; j += blockDim.x) {
        const float g = gate[j];
        p.out[i * p.h + j] = g / (1.0f + expf(-g)) * gate[p.h + j];
    }
}

// dst[dst_rows[i], :width] = src[src_rows[i], :width]   grid: m rows
__global__ void copy_rows_kernel(CopyRowsParams p) {
    const int64_t i = blockIdx.x;
    const int64_t s = p.src_rows ? p.src_rows[i] : i, d = p.dst_rows ? p.dst_rows[i] : i;
    for (int64_t j = threadIdx.x; j < p.width; j += blockDim.x) p.dst[d * p.ld_dst + j] = p.src[s * p.ld_src + j];
}

// out [n] from u, c [n]   grid-stride
__global__ void cfg_kernel(const float* u, const float* c, float* out, int64_t n, float alpha, float beta, bool llada) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = llada ? u[i] + alpha * (c[i] - u[i]) : alpha * c[i] - beta * u[i];
}

// out[i, :k] = bf16(x[i, :k]), packed (leading dim k)   grid: m rows
__global__ void cast_bf16_kernel(const float* x, int64_t ldx, int64_t k, __nv_bfloat16* out) {
    const int64_t i = blockIdx.x;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) out[i * k + j] = __float2bfloat16_rn(x[i * ldx + j]);
}

// out[i, :k] = fp16(x[i, :k] / scales[i]) with scales[i] = 2^e, the least e >= 0 that keeps the
// row's largest magnitude below 2^15 (SwiGLU outputs exceed fp16's 65504; the power of two is exact)
// grid: m rows, block: kThreads
__global__ void cast_f16_kernel(const float* x, int64_t ldx, int64_t k, __half* out, float* scales) {
    __shared__ float warp_max[kThreads / 32];
    const int64_t i = blockIdx.x;
    float m = 0.0f;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, fabsf(x[i * ldx + j]));
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = m;
    __syncthreads();
    for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    int e = 0;
    if (m < INFINITY) {  // an inf or NaN row stays as it is
        frexpf(m, &e);   // m < 2^e
        e = e > 15 ? e - 15 : 0;
    }
    const float down = ldexpf(1.0f, -e);
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) out[i * k + j] = __float2half_rn(x[i * ldx + j] * down);
    if (threadIdx.x == 0) scales[i] = ldexpf(1.0f, e);
}

// y[i, :n] = (accumulate ? y[i, :n] : 0) + scales[i] * t[i, :n]   grid: m rows
__global__ void scale_rows_add_kernel(const float* t, const float* scales, int64_t n, float* y, int64_t ldy, bool accumulate) {
    const int64_t i = blockIdx.x;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float v = scales[i] * t[i * n + j];
        y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
    }
}

}  // namespace

void embed(const EmbedParams& p, Context& c) {
    if (p.m == 0) return;
    DYNIN_RT_LAUNCH(c, embed_kernel, static_cast<unsigned>(p.m), kThreads, 0, p);
}

void swiglu(const SwigluParams& p, Context& c) {
    if (p.m == 0) return;
    DYNIN_RT_LAUNCH(c, swiglu_kernel, static_cast<unsigned>(p.m), kThreads, 0, p);
}

void copy_rows(const CopyRowsParams& p, Context& c) {
    if (p.m == 0) return;
    DYNIN_RT_LAUNCH(c, copy_rows_kernel, static_cast<unsigned>(p.m), kThreads, 0, p);
}

void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta, Backend::CfgForm form,
                 Context& c) {
    if (n == 0) return;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
    DYNIN_RT_LAUNCH(c, cfg_kernel, blocks, kThreads, 0, uncond, cond, out, n, alpha, beta, form == Backend::CfgForm::kLlada);
}

void cast_rows(const float* x, int64_t ldx, int64_t m, int64_t k, DType to, void* out, float* scales, Context& c) {
    if (m == 0) return;
    if (to == DType::BF16)
        DYNIN_RT_LAUNCH(c, cast_bf16_kernel, static_cast<unsigned>(m), kThreads, 0, x, ldx, k, static_cast<__nv_bfloat16*>(out));
    else
        DYNIN_RT_LAUNCH(c, cast_f16_kernel, static_cast<unsigned>(m), kThreads, 0, x, ldx, k, static_cast<__half*>(out), scales);
}

void scale_rows_add(const float* t, const float* scales, int64_t m, int64_t n, float* y, int64_t ldy, bool accumulate, Context& c) {
    if (m == 0) return;
    DYNIN_RT_LAUNCH(c, scale_rows_add_kernel, static_cast<unsigned>(m), kThreads, 0, t, scales, n, y, ldy, accumulate);
}

}  // namespace cuda
}  // namespace dynin_rt
