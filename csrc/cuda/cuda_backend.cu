// The CUDA backend: device memory, one stream, and the kernels of this folder behind backend.h.
// Every op is enqueued on the backend's stream; uploads go through pinned staging (no wait); only
// copies to the host, synchronize() and freeing memory wait. Recorded steps are CUDA graphs
// (run_recorded). A mutex serialises ops from concurrent callers, because they share the stream's
// scratch memory. Launches, graph replays, host waits and allocations are counted (Backend::counters).
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "cuda_ops.h"
#include "dynin_rt/common.h"

namespace dynin_rt {

namespace cuda {

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw std::runtime_error(str_cat("CUDA error in ", what, ": ", cudaGetErrorString(err)));
}

void* Scratch::ensure(size_t bytes, Context& c) {
    if (ptr_ && bytes <= bytes_) return ptr_;
    if (c.capturing) throw std::logic_error("scratch memory grew inside a recorded step (its eager run sizes it)");
    release(c);
    const size_t grown = std::max<size_t>({bytes, 2 * bytes_, 256});  // doubling: a few growths per run at most
    check(cudaMalloc(&ptr_, grown), "scratch");
    ++c.counters.allocations;
    ++c.scratch_generation;
    bytes_ = grown;
    return ptr_;
}

void Scratch::release(Context& c) {
    if (!ptr_) return;
    check(cudaFree(ptr_), "scratch free");  // waits for the work that used it
    ++c.counters.frees;
    ++c.counters.host_syncs;
    ++c.scratch_generation;
    ptr_ = nullptr;
    bytes_ = 0;
}

namespace {
constexpr size_t kMaxInFlight = 256;  // uploads tracked at most (each holds an event)
}  // namespace

// Waits for (and forgets) every upload in flight up to the last one whose ring region overlaps
// [begin, end): one stream, so the earlier ones are complete too.
void Staging::reclaim(size_t begin, size_t end, Context& c) {
    size_t last = in_flight_.size();
    for (size_t i = 0; i < in_flight_.size(); ++i)
        if (in_flight_[i].begin < end && begin < in_flight_[i].end) last = i;
    if (last == in_flight_.size() && in_flight_.size() >= kMaxInFlight) last = 0;  // bounds the list
    if (last == in_flight_.size()) return;
    const cudaError_t ready = cudaEventQuery(in_flight_[last].done);
    if (ready == cudaErrorNotReady) {
        cudaGetLastError();  // not an error: the copy is still running
        check(cudaEventSynchronize(in_flight_[last].done), "staging wait");
        ++c.counters.host_syncs;
    } else {
        check(ready, "staging query");
    }
    for (size_t i = 0; i <= last; ++i) spare_.push_back(in_flight_[i].done);
    in_flight_.erase(in_flight_.begin(), in_flight_.begin() + static_cast<std::ptrdiff_t>(last) + 1);
}

bool Staging::upload(void* dst, const void* src, size_t bytes, Context& c) {
    if (bytes > kMaxUpload) return false;
    if (bytes == 0) return true;
    if (c.capturing) throw std::logic_error("an upload inside a recorded step");
    if (!ring_) {
        check(cudaMallocHost(reinterpret_cast<void**>(&ring_), kRingBytes), "staging ring");
        ++c.counters.allocations;
    }
    const size_t size = (bytes + 255) & ~size_t(255);  // 256-byte aligned regions
    if (head_ + size > kRingBytes) head_ = 0;
    reclaim(head_, head_ + size, c);
    std::memcpy(ring_ + head_, src, bytes);
    check(cudaMemcpyAsync(dst, ring_ + head_, bytes, cudaMemcpyHostToDevice, c.stream), "upload");
    cudaEvent_t done = nullptr;
    if (spare_.empty()) {
        check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "staging event");
    } else {
        done = spare_.back();
        spare_.pop_back();
    }
    check(cudaEventRecord(done, c.stream), "staging event");
    in_flight_.push_back({head_, head_ + size, done});
    head_ += size;
    return true;
}

void Staging::release(Context& c) {
    if (!in_flight_.empty()) reclaim(0, kRingBytes, c);
    for (cudaEvent_t e : spare_) cudaEventDestroy(e);
    spare_.clear();
    if (ring_) {
        cudaFreeHost(ring_);
        ++c.counters.frees;
    }
    ring_ = nullptr;
    head_ = 0;
}

void upload(void* dst, const void* src, size_t bytes, Context& c) {
    if (c.staging.upload(dst, src, bytes, c)) return;
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.stream), "copy to device");
    check(cudaStreamSynchronize(c.stream), "copy to device");  // src may be freed on return
    ++c.counters.host_syncs;
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
        for (auto& kv : recordings_)
            if (kv.second.exec) cudaGraphExecDestroy(kv.second.exec);
        gemm_.reset();
        try {
            ctx_.sampler.release(ctx_);
            ctx_.attention.release(ctx_);
            ctx_.staging.release(ctx_);
        } catch (const std::exception&) {  // a faulted device: nothing more to release
        }
        if (ctx_.stream) cudaStreamDestroy(ctx_.stream);
    }

    std::string name() const override { return "cuda"; }
    BackendCaps caps() const override { return {/*host_memory=*/false, /*computes_f16=*/true}; }
    BackendCounters counters() const override {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        return ctx_.counters;
    }

    void* alloc(size_t bytes) override {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        cuda::check(cudaSetDevice(ctx_.device), "set device");
        void* p = nullptr;
        cuda::check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
        ++ctx_.counters.allocations;
        return p;
    }
    // Called from destructors: a failure here (a faulted device) was reported by the op that faulted.
    void release(void* ptr) override {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        cudaFree(ptr);  // waits for the device
        ++ctx_.counters.frees;
        ++ctx_.counters.host_syncs;
    }
    void copy_to_device(void* dst, const void* src, size_t bytes) override {
        locked([&] { cuda::upload(dst, src, bytes, ctx_); });
    }
    void copy_to_host(void* dst, const void* src, size_t bytes) override {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream), "copy to host");
        cuda::check(cudaStreamSynchronize(ctx_.stream), "copy to host");
        ++ctx_.counters.host_syncs;
    }
    void synchronize() override {
        std::lock_guard<std::recursive_mutex> lock(mu_);
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

    // A step graph per key: the first call runs eagerly (sizing the scratch memory), the second
    // captures and instantiates it, every call from then on launches it. The lock is held across the
    // capture, so no other caller's work lands in the graph (the ops re-enter it on this thread). A
    // graph whose scratch memory has moved since its capture is captured again.
    void run_recorded(uint64_t key, const std::function<void()>& enqueue) override {
        locked([&] {
            Recording& r = recordings_[key];
            if (r.exec && r.generation != ctx_.scratch_generation) {
                cudaGraphExecDestroy(r.exec);
                r.exec = nullptr;
            }
            if (!r.exec && !r.ran_eagerly) {
                enqueue();
                r.ran_eagerly = true;
                return;
            }
            if (!r.exec) r.exec = capture(enqueue);
            r.generation = ctx_.scratch_generation;
            cuda::check(cudaGraphLaunch(r.exec, ctx_.stream), "graph launch");
            ++ctx_.counters.graph_replays;
        });
    }
    void drop_recording(uint64_t key) override {
        locked([&] {
            const auto it = recordings_.find(key);
            if (it == recordings_.end()) return;
            if (it->second.exec) cudaGraphExecDestroy(it->second.exec);
            recordings_.erase(it);
        });
    }

 private:
    struct Recording {
        bool ran_eagerly = false;
        cudaGraphExec_t exec = nullptr;
        uint64_t generation = 0;  // ctx_.scratch_generation at capture
    };

    template <typename F>
    void locked(F&& f) {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        cuda::check(cudaSetDevice(ctx_.device), "set device");
        f();
    }

    // Records `enqueue` into an instantiated graph (thread-local capture mode: a call on this thread
    // that would synchronise or allocate fails the capture instead of hiding in it).
    cudaGraphExec_t capture(const std::function<void()>& enqueue) {
        cuda::check(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeThreadLocal), "begin capture");
        ctx_.capturing = true;
        cudaGraph_t graph = nullptr;
        try {
            enqueue();
        } catch (...) {
            ctx_.capturing = false;
            cudaStreamEndCapture(ctx_.stream, &graph);
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();  // the capture's own error: the exception says what failed
            throw;
        }
        ctx_.capturing = false;
        cuda::check(cudaStreamEndCapture(ctx_.stream, &graph), "end capture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        cuda::check(err, "graph instantiate");
        return exec;
    }

    cuda::Context ctx_;
    std::unique_ptr<cuda::Gemm> gemm_;
    std::map<uint64_t, Recording> recordings_;
    mutable std::recursive_mutex mu_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

int cuda_device_count() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

}  // namespace dynin_rt
