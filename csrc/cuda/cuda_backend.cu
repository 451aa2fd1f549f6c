// The CUDA backend: device memory, one stream, and the kernels of this folder behind backend.h.
// Every op is enqueued on the backend's stream; only the copies, synchronize() and freeing memory
// wait. A mutex serialises ops from concurrent callers, because they share the stream's scratch
// memory. Launches, host waits and allocations are counted (Backend::counters).
#include <algorithm>
#include <memory>
#include <mutex>

#include "cuda_ops.h"
#include "dynin_rt/common.h"

namespace dynin_rt {

namespace cuda {

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw std::runtime_error(str_cat("CUDA error in ", what, ": ", cudaGetErrorString(err)));
}

void* Scratch::ensure(size_t bytes, BackendCounters& counters) {
    if (ptr_ && bytes <= bytes_) return ptr_;
    release(counters);
    const size_t grown = std::max<size_t>({bytes, 2 * bytes_, 256});  // doubling: a few growths per run at most
    check(cudaMalloc(&ptr_, grown), "scratch");
    ++counters.allocations;
    bytes_ = grown;
    return ptr_;
}

void Scratch::release(BackendCounters& counters) {
    if (!ptr_) return;
    check(cudaFree(ptr_), "scratch free");  // waits for the work that used it
    ++counters.frees;
    ++counters.host_syncs;
    ptr_ = nullptr;
    bytes_ = 0;
}

}  // namespace cuda

namespace {

class CudaBackend final : public Backend {
 public:
    explicit CudaBackend(int device) {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
            throw InvalidArgument("no CUDA device is available (driver missing or no GPU); use backend='cpu'");
        DYNIN_CHECK_ARG(device >= 0 && device < count, "CUDA device ", device, " does not exist (", count, " present)");
        ctx_.device = device;
        cuda::check(cudaSetDevice(device), "set device");
        cuda::check(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking), "stream");
        gemm_ = std::make_unique<cuda::Gemm>(ctx_);
    }
    ~CudaBackend() override {
        gemm_.reset();
        try {
            ctx_.sampler.release(ctx_.counters);
        } catch (const std::exception&) {  // a faulted device: nothing more to release
        }
        if (ctx_.stream) cudaStreamDestroy(ctx_.stream);
    }

    std::string name() const override { return "cuda"; }
    BackendCaps caps() const override { return {/*host_memory=*/false, /*computes_f16=*/true}; }
    BackendCounters counters() const override {
        std::lock_guard<std::mutex> lock(mu_);
        return ctx_.counters;
    }

    void* alloc(size_t bytes) override {
        std::lock_guard<std::mutex> lock(mu_);
        cuda::check(cudaSetDevice(ctx_.device), "set device");
        void* p = nullptr;
        cuda::check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
        ++ctx_.counters.allocations;
        return p;
    }
    // Called from destructors: a failure here (a faulted device) was reported by the op that faulted.
    void release(void* ptr) override {
        std::lock_guard<std::mutex> lock(mu_);
        cudaFree(ptr);  // waits for the device
        ++ctx_.counters.frees;
        ++ctx_.counters.host_syncs;
    }
    void copy_to_device(void* dst, const void* src, size_t bytes) override {
        std::lock_guard<std::mutex> lock(mu_);
        cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream), "copy to device");
        cuda::check(cudaStreamSynchronize(ctx_.stream), "copy to device");  // src may be freed on return
        ++ctx_.counters.host_syncs;
    }
    void copy_to_host(void* dst, const void* src, size_t bytes) override {
        std::lock_guard<std::mutex> lock(mu_);
        cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream), "copy to host");
        cuda::check(cudaStreamSynchronize(ctx_.stream), "copy to host");
        ++ctx_.counters.host_syncs;
    }
    void synchronize() override {
        std::lock_guard<std::mutex> lock(mu_);
        cuda::check(cudaStreamSynchronize(ctx_.stream), "synchronize");
        ++ctx_.counters.host_syncs;
    }

    void gemm(const GemmParams& p) override { locked([&] { gemm_->run(p); }); }
    void embed(const EmbedParams& p) override { locked([&] { cuda::embed(p, ctx_); }); }
    void rms_norm(const RmsNormParams& p) override { locked([&] { cuda::rms_norm(p, ctx_); }); }
    void rope(const RopeParams& p) override { locked([&] { cuda::rope(p, ctx_); }); }
    void attention(const AttentionParams& p) override { locked([&] { cuda::attention(p, ctx_); }); }
    void swiglu(const SwigluParams& p) override { locked([&] { cuda::swiglu(p, ctx_); }); }
    void copy_rows(const CopyRowsParams& p) override { locked([&] { cuda::copy_rows(p, ctx_); }); }
    void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                     CfgForm form) override {
        locked([&] { cuda::cfg_combine(uncond, cond, out, n, alpha, beta, form, ctx_); });
    }
    void commit_step(const CommitStepParams& p) override { locked([&] { cuda::commit_step(p, ctx_); }); }
    void maskgit_step(const MaskgitStepParams& p) override { locked([&] { cuda::maskgit_step(p, ctx_); }); }

 private:
    template <typename F>
    void locked(F&& f) {
        std::lock_guard<std::mutex> lock(mu_);
        cuda::check(cudaSetDevice(ctx_.device), "set device");
        f();
    }

    cuda::Context ctx_;
    std::unique_ptr<cuda::Gemm> gemm_;
    mutable std::mutex mu_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

int cuda_device_count() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

}  // namespace dynin_rt
