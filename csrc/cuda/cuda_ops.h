// The CUDA backend's launchers, one family per .cu file; each is the twin of the CPU kernel of the
// same name in cpu/ and is tested against it (tests/test_ops.py). All run on the context's stream,
// take device pointers (except where a params struct says host memory) and never synchronise.
// Kernels are launched through launch.cuh, which also builds them for the emulated device.
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <tuple>
#include <vector>

#include "dynin_rt/backend.h"

namespace dynin_rt {
namespace cuda {

void check(cudaError_t err, const char* what);  // throws with the CUDA error string

struct Context;

// Device memory reused across calls: grows to the largest request and never shrinks. Growing frees
// the old block (cudaFree waits for the device), so it happens in a run's first steps; each growth
// is counted in the backend's counters and bumps the context's scratch generation, because a
// recorded step graph bakes in the old address (cuda_backend.cu re-records it). Growing while a step
// is being captured is an error: the eager run before a capture sizes every scratch it uses.
class Scratch {
 public:
    void* ensure(size_t bytes, Context& c);
    void release(Context& c);

 private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// Host-to-device uploads through a ring of pinned host memory: the source is copied into the ring
// and the copy is enqueued asynchronously, so an upload returns without waiting for the device (a
// pageable cudaMemcpyAsync would block the host). A ring region is reused once the copy that read it
// has completed (an event per upload; the host waits only when the ring has wrapped onto a copy
// still in flight, counted as a host wait).
class Staging {
 public:
    static constexpr size_t kRingBytes = size_t(4) << 20;
    static constexpr size_t kMaxUpload = kRingBytes / 4;  // larger uploads (weights) copy synchronously

    // Enqueues dst[0, bytes) = src[0, bytes) on the context's stream; src may be reused at once.
    // False when bytes > kMaxUpload (nothing is done).
    bool upload(void* dst, const void* src, size_t bytes, Context& c);
    void release(Context& c);  // waits for the uploads in flight

 private:
    struct InFlight {
        size_t begin = 0, end = 0;
        cudaEvent_t done = nullptr;
    };
    void reclaim(size_t begin, size_t end, Context& c);

    char* ring_ = nullptr;  // [kRingBytes] pinned
    size_t head_ = 0;
    std::vector<InFlight> in_flight_;  // oldest first (one stream: they complete in this order)
    std::vector<cudaEvent_t> spare_;
};

// Per-backend state the launchers share.
struct Context {
    int device = 0;
    cudaStream_t stream = nullptr;
    BackendCounters counters;        // launches, host waits, allocations (Backend::counters)
    Scratch sampler;                 // the fused steps' per-candidate values
    Staging staging;                 // pinned uploads (copy_to_device, the MaskGIT keep counts)
    Scratch attention;               // split-KV partial results (attention.cu)
    unsigned attention_smem_set = 0;  // bit kCols: cudaFuncSetAttribute done for that kernel (attention.cu)
    int sm_count = 0;                // multiprocessors, read at the first attention
    bool capturing = false;          // a step is being recorded: its kernels are launched by the graph
    uint64_t scratch_generation = 0;  // bumped when any Scratch moves (recorded graphs hold its address)

    // A kernel or library call enqueued: counted as a launch unless it is being recorded (the
    // recording's launches are counted as graph replays).
    void count_launch() {
        if (!capturing) ++counters.kernel_launches;
    }
};

// dst[0, bytes) (device) = src[0, bytes) (host, reusable on return): through the staging ring, or for
// an upload larger than the ring a synchronous copy (a counted host wait; cuda_backend.cu)
void upload(void* dst, const void* src, size_t bytes, Context& c);

void embed(const EmbedParams& p, Context& c);          // elementwise.cu
void swiglu(const SwigluParams& p, Context& c);        // elementwise.cu
void copy_rows(const CopyRowsParams& p, Context& c);   // elementwise.cu
void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                 Backend::CfgForm form, Context& c);   // elementwise.cu
// out[i, :k] = x[i, :k] rounded to bf16 (scales null), or to fp16 after dividing row i by a power of
// two scales[i] chosen so that the row's largest value fits fp16 (elementwise.cu)
void cast_rows(const float* x, int64_t ldx, int64_t m, int64_t k, DType to, void* out, float* scales, Context& c);
// y[i, :n] = (accumulate ? y[i, :n] : 0) + scales[i] * t[i, :n]   (t [m, n] packed; elementwise.cu)
void scale_rows_add(const float* t, const float* scales, int64_t m, int64_t n, float* y, int64_t ldy, bool accumulate, Context& c);
void rms_norm(const RmsNormParams& p, Context& c);     // norm.cu
void rope(const RopeParams& p, Context& c);            // rope.cu
void attention(const AttentionParams& p, Context& c);  // attention.cu
void commit_step(const CommitStepParams& p, Context& c);   // commit_step.cu
void maskgit_step(const MaskgitStepParams& p, Context& c); // maskgit_step.cu

// GEMMs through cuBLASLt, loaded at run time (cublaslt.cu), so that _C imports without CUDA. The
// matmul descriptors, layouts and the chosen algorithm are built once per shape and alignment.
class Gemm {
 public:
    explicit Gemm(Context& c);
    ~Gemm();
    void run(const GemmParams& p);

 private:
    struct Plan;
    // (weight dtype, m, n, k, ldw, ldx, ldy, alignment of w, x, y)
    using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t, uint32_t, uint32_t>;
    const Plan& plan(const Key& key);

    Context& ctx_;
    std::map<Key, Plan*> plans_;
    void* handle_ = nullptr;
    void* workspace_ = nullptr;
    size_t workspace_bytes_ = 0;
    Scratch cast_, scales_, product_;
};

}  // namespace cuda
}  // namespace dynin_rt
