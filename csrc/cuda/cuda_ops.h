// The CUDA backend's launchers, one family per .cu file; each is the twin of the CPU kernel of the
// same name in cpu/ and is tested against it (tests/test_ops_cuda.py). All run on `stream`, take
// device pointers (except where a params struct says host memory) and never synchronise.
#pragma once
#include <cuda_runtime.h>

#include "dynin_rt/backend.h"

namespace dynin_rt {
namespace cuda {

void check(cudaError_t err, const char* what);  // throws with the CUDA error string

// Per-backend state the launchers share: the stream and reusable device scratch.
struct Context {
    int device = 0;
    cudaStream_t stream = nullptr;
    void* scratch = nullptr;  // grows on demand (scratch_bytes)
    size_t scratch_bytes = 0;
    void* ensure_scratch(size_t bytes);
};

void embed(const EmbedParams& p, cudaStream_t s);          // elementwise.cu
void swiglu(const SwigluParams& p, cudaStream_t s);        // elementwise.cu
void copy_rows(const CopyRowsParams& p, cudaStream_t s);   // elementwise.cu
void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                 Backend::CfgForm form, cudaStream_t s);   // elementwise.cu
void cast_rows(const float* x, int64_t ldx, int64_t m, int64_t k, DType to, void* out, cudaStream_t s);  // elementwise.cu
void rms_norm(const RmsNormParams& p, cudaStream_t s);     // norm.cu
void rope(const RopeParams& p, cudaStream_t s);            // rope.cu
void attention(const AttentionParams& p, Context& c);      // attention.cu (uploads the segment offsets)
void commit_step(const CommitStepParams& p, Context& c);   // commit_step.cu
void maskgit_step(const MaskgitStepParams& p, Context& c); // maskgit_step.cu

// cuBLASLt, loaded at run time (cublaslt.cu), so that _C imports on machines without CUDA.
class Gemm {
 public:
    explicit Gemm(Context& c);
    ~Gemm();
    void run(const GemmParams& p);

 private:
    Context& ctx_;
    void* handle_ = nullptr;
    void* workspace_ = nullptr;
    size_t workspace_bytes_ = 0;
};

}  // namespace cuda
}  // namespace dynin_rt
