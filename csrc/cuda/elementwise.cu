// Embedding gather, SwiGLU, row copies, CFG combination and activation casts (twins of
// cpu/elementwise.cc).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_ops.h"
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

__global__ void copy_rows_kernel(CopyRowsParams p) {
    const int64_t i = blockIdx.x;
    const int64_t s = p.src_rows ? p.src_rows[i] : i, d = p.dst_rows ? p.dst_rows[i] : i;
    for (int64_t j = threadIdx.x; j < p.width; j += blockDim.x) p.dst[d * p.ld_dst + j] = p.src[s * p.ld_src + j];
}

__global__ void cfg_kernel(const float* u, const float* c, float* out, int64_t n, float alpha, float beta, bool llada) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = llada ? u[i] + alpha * (c[i] - u[i]) : alpha * c[i] - beta * u[i];
}

__device__ inline void store_rounded(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void store_rounded(__half* p, float v) { *p = __float2half_rn(v); }

// out[i, :k] = round(x[i, :k]) to 16 bits, packed (leading dim k)   grid: m rows
template <typename T>
__global__ void cast_kernel(const float* x, int64_t ldx, int64_t k, T* out) {
    const int64_t i = blockIdx.x;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) store_rounded(out + i * k + j, x[i * ldx + j]);
}

}  // namespace

void embed(const EmbedParams& p, cudaStream_t s) {
    if (p.m == 0) return;
    embed_kernel<<<static_cast<unsigned>(p.m), kThreads, 0, s>>>(p);
    check(cudaGetLastError(), "embed");
}

void swiglu(const SwigluParams& p, cudaStream_t s) {
    if (p.m == 0) return;
    swiglu_kernel<<<static_cast<unsigned>(p.m), kThreads, 0, s>>>(p);
    check(cudaGetLastError(), "swiglu");
}

void copy_rows(const CopyRowsParams& p, cudaStream_t s) {
    if (p.m == 0) return;
    copy_rows_kernel<<<static_cast<unsigned>(p.m), kThreads, 0, s>>>(p);
    check(cudaGetLastError(), "copy_rows");
}

void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                 Backend::CfgForm form, cudaStream_t s) {
    if (n == 0) return;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
    cfg_kernel<<<blocks, kThreads, 0, s>>>(uncond, cond, out, n, alpha, beta, form == Backend::CfgForm::kLlada);
    check(cudaGetLastError(), "cfg_combine");
}

void cast_rows(const float* x, int64_t ldx, int64_t m, int64_t k, DType to, void* out, cudaStream_t s) {
    if (m == 0) return;
    if (to == DType::BF16)
        cast_kernel<__nv_bfloat16><<<static_cast<unsigned>(m), kThreads, 0, s>>>(x, ldx, k, static_cast<__nv_bfloat16*>(out));
    else
        cast_kernel<__half><<<static_cast<unsigned>(m), kThreads, 0, s>>>(x, ldx, k, static_cast<__half*>(out));
    check(cudaGetLastError(), "cast_rows");
}

}  // namespace cuda
}  // namespace dynin_rt
