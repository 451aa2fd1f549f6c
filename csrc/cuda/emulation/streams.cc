// Streams, events, stream capture and graphs of the emulated device. Work is queued per stream and
// runs only where the host waits (stream / event / device synchronisation, synchronous copies,
// cudaFree), in queue order; a queued item first runs what it depends on in other streams (events,
// and the legacy default stream's implicit ordering with blocking streams). So a missing
// synchronisation is stale host data, deterministically.
//
// During a capture the stream's work goes into a graph instead; replaying the graph runs the same
// work again (kernel arguments as captured, memory read at replay). Calls that would synchronise or
// allocate while a capture forbids it fail as the real runtime's do and invalidate the capture.
#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime.h"

struct CUgraph_st {
    std::vector<dynin_rt::emu::Work> nodes;
};
struct CUgraphExec_st {
    std::vector<dynin_rt::emu::Work> nodes;
};

struct CUstream_st {
    struct Op {
        uint64_t seq = 0;
        std::vector<std::pair<std::shared_ptr<CUstream_st>, uint64_t>> deps;  // run those queues that far first
        dynin_rt::emu::Work work;
    };
    unsigned flags = 0;
    bool legacy = false;
    std::mutex mu;
    std::deque<Op> pending;
    std::atomic<uint64_t> enqueued{0}, executed{0};
    // capture state (under mu)
    std::unique_ptr<CUgraph_st> capture;
    cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
    std::thread::id capture_thread;
    cudaError_t capture_error = cudaSuccess;
};

struct CUevent_st {
    unsigned flags = 0;
    std::shared_ptr<CUstream_st> stream;  // where it was last recorded (null: never)
    uint64_t seq = 0;
    std::shared_ptr<double> time_ms;      // set when the record runs
    const CUgraph_st* captured_in = nullptr;
};

namespace dynin_rt {
namespace emu {

namespace {

std::mutex registry_mu;
std::map<CUstream_st*, std::shared_ptr<CUstream_st>> streams;
std::recursive_mutex exec_mu;  // one queue item at a time, device-wide

const std::shared_ptr<CUstream_st>& legacy_stream() {
    static const std::shared_ptr<CUstream_st> s = [] {
        auto l = std::make_shared<CUstream_st>();
        l->legacy = true;
        return l;
    }();
    return s;
}

std::shared_ptr<CUstream_st> resolve(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return legacy_stream();
    std::lock_guard<std::mutex> lock(registry_mu);
    const auto it = streams.find(s);
    return it == streams.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<CUstream_st>> all_streams() {
    std::vector<std::shared_ptr<CUstream_st>> out{legacy_stream()};
    std::lock_guard<std::mutex> lock(registry_mu);
    for (const auto& kv : streams) out.push_back(kv.second);
    return out;
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

void run(Work& w) {
    if (sticky_error() != cudaSuccess) return;  // a faulted device runs nothing more
    const std::string why = w.run();
    if (!why.empty()) set_sticky_error(w.failure, why);
}

// Runs s's queue through position `upto`.
void drain(const std::shared_ptr<CUstream_st>& s, uint64_t upto) {
    std::lock_guard<std::recursive_mutex> exec(exec_mu);
    while (s->executed.load() < upto) {
        CUstream_st::Op op;
        {
            std::lock_guard<std::mutex> lock(s->mu);
            if (s->pending.empty()) return;
            op = std::move(s->pending.front());
            s->pending.pop_front();
        }
        for (auto& dep : op.deps) drain(dep.first, dep.second);
        run(op.work);
        s->executed.store(op.seq);
    }
}

// The implicit ordering of the legacy default stream with blocking streams, as queue positions.
using Deps = std::vector<std::pair<std::shared_ptr<CUstream_st>, uint64_t>>;

Deps implicit_deps(const std::shared_ptr<CUstream_st>& s) {
    Deps deps;
    if (s->legacy) {
        std::lock_guard<std::mutex> lock(registry_mu);
        for (const auto& kv : streams)
            if (!(kv.second->flags & cudaStreamNonBlocking)) deps.emplace_back(kv.second, kv.second->enqueued.load());
    } else if (!(s->flags & cudaStreamNonBlocking)) {
        deps.emplace_back(legacy_stream(), legacy_stream()->enqueued.load());
    }
    return deps;
}

cudaError_t enqueue_op(const std::shared_ptr<CUstream_st>& s, Work work, Deps deps, uint64_t* seq) {
    if (sticky_error() != cudaSuccess) return fail_call(sticky_error());
    auto implicit = implicit_deps(s);
    deps.insert(deps.end(), implicit.begin(), implicit.end());
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->capture) {
        if (s->capture_error == cudaSuccess) s->capture->nodes.push_back(std::move(work));
        if (seq) *seq = 0;
        return cudaSuccess;
    }
    if (work.is_launch) count(Count::kLaunch);
    CUstream_st::Op op;
    op.seq = s->enqueued.load() + 1;
    op.deps = std::move(deps);
    op.work = std::move(work);
    s->pending.push_back(std::move(op));
    s->enqueued.store(s->pending.back().seq);
    if (seq) *seq = s->pending.back().seq;
    return cudaSuccess;
}

}  // namespace

cudaError_t enqueue(cudaStream_t stream, Work work, uint64_t* seq) {
    const auto s = resolve(stream);
    if (!s) return fail_call(cudaErrorInvalidResourceHandle, "not a live stream");
    return enqueue_op(s, std::move(work), {}, seq);
}

bool capturing(cudaStream_t stream) {
    const auto s = resolve(stream);
    if (!s) return false;
    std::lock_guard<std::mutex> lock(s->mu);
    return s->capture != nullptr;
}

cudaError_t invalidate_capture(cudaStream_t stream, cudaError_t err, const std::string& detail) {
    const auto s = resolve(stream);
    if (s) {
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->capture && s->capture_error == cudaSuccess) s->capture_error = err;
    }
    return fail_call(err, detail);
}

cudaError_t check_unsafe_call(const char* what) {
    const std::thread::id me = std::this_thread::get_id();
    for (const auto& s : all_streams()) {
        std::lock_guard<std::mutex> lock(s->mu);
        if (!s->capture || s->capture_mode == cudaStreamCaptureModeRelaxed) continue;
        if (s->capture_mode == cudaStreamCaptureModeGlobal || s->capture_thread == me) {
            if (s->capture_error == cudaSuccess) s->capture_error = cudaErrorStreamCaptureUnsupported;
            return fail_call(cudaErrorStreamCaptureUnsupported, std::string(what) + " while a stream is capturing");
        }
    }
    return cudaSuccess;
}

cudaError_t wait_stream(cudaStream_t stream) {
    const auto s = resolve(stream);
    if (!s) return fail_call(cudaErrorInvalidResourceHandle, "not a live stream");
    if (capturing(stream))
        return invalidate_capture(stream, cudaErrorStreamCaptureUnsupported, "synchronising a capturing stream");
    count(Count::kHostSync);
    drain(s, s->enqueued.load());
    return sticky_error() != cudaSuccess ? fail_call(sticky_error()) : cudaSuccess;
}

void drain_all() {
    for (const auto& s : all_streams()) drain(s, s->enqueued.load());
}

void discard_all() {
    std::lock_guard<std::recursive_mutex> exec(exec_mu);
    for (const auto& s : all_streams()) {
        std::lock_guard<std::mutex> lock(s->mu);
        s->pending.clear();
        s->executed.store(s->enqueued.load());
        s->capture.reset();
    }
}

}  // namespace emu
}  // namespace dynin_rt

using namespace dynin_rt::emu;

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
    if (flags & ~static_cast<unsigned>(cudaStreamNonBlocking)) return fail_call(cudaErrorInvalidValue);
    auto s = std::make_shared<CUstream_st>();
    s->flags = flags;
    std::lock_guard<std::mutex> lock(registry_mu);
    streams[s.get()] = s;
    *stream = s.get();
    return cudaSuccess;
}

// Work still queued runs now (the real runtime finishes it after the call returns).
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    const auto s = resolve(stream);
    if (!s || s->legacy) return fail_call(cudaErrorInvalidResourceHandle);
    drain(s, s->enqueued.load());
    std::lock_guard<std::mutex> lock(registry_mu);
    streams.erase(s.get());
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) { return wait_stream(stream); }

cudaError_t cudaDeviceSynchronize() {
    if (const cudaError_t e = check_unsafe_call("cudaDeviceSynchronize")) return e;
    count(Count::kHostSync);
    drain_all();
    return sticky_error() != cudaSuccess ? fail_call(sticky_error()) : cudaSuccess;
}

// The emulated device makes progress when asked: a query runs the queue (it is not a host wait).
cudaError_t cudaStreamQuery(cudaStream_t stream) {
    const auto s = resolve(stream);
    if (!s) return fail_call(cudaErrorInvalidResourceHandle);
    if (capturing(stream)) return invalidate_capture(stream, cudaErrorStreamCaptureUnsupported, "querying a capturing stream");
    drain(s, s->enqueued.load());
    return sticky_error() != cudaSuccess ? fail_call(sticky_error()) : cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
    const auto s = resolve(stream);
    if (!s || !event) return fail_call(cudaErrorInvalidResourceHandle);
    if (capturing(stream)) {
        std::lock_guard<std::mutex> lock(s->mu);
        if (event->captured_in == s->capture.get()) return cudaSuccess;  // ordered inside the graph already
        if (s->capture_error == cudaSuccess) s->capture_error = cudaErrorStreamCaptureIsolation;
        return fail_call(cudaErrorStreamCaptureIsolation, "waiting on an event recorded outside the capture");
    }
    if (!event->stream) return cudaSuccess;
    Work nothing;
    nothing.run = [] { return std::string(); };
    return enqueue_op(s, std::move(nothing), {{event->stream, event->seq}}, nullptr);
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
    *event = new CUevent_st;
    (*event)->flags = flags;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    if (!event) return fail_call(cudaErrorInvalidResourceHandle);
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    const auto s = resolve(stream);
    if (!s || !event) return fail_call(cudaErrorInvalidResourceHandle);
    if (capturing(stream)) {
        std::lock_guard<std::mutex> lock(s->mu);
        event->captured_in = s->capture.get();
        return cudaSuccess;
    }
    auto slot = std::make_shared<double>(NAN);
    Work record;
    record.run = [slot] {
        *slot = now_ms();
        return std::string();
    };
    uint64_t seq = 0;
    if (const cudaError_t e = enqueue_op(s, std::move(record), {}, &seq)) return e;
    event->stream = s;
    event->seq = seq;
    event->time_ms = slot;
    event->captured_in = nullptr;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (!event) return fail_call(cudaErrorInvalidResourceHandle);
    if (event->captured_in) return fail_call(cudaErrorCapturedEvent);
    count(Count::kHostSync);
    if (event->stream) drain(event->stream, event->seq);
    return sticky_error() != cudaSuccess ? fail_call(sticky_error()) : cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
    if (!event) return fail_call(cudaErrorInvalidResourceHandle);
    if (event->captured_in) return fail_call(cudaErrorCapturedEvent);
    if (event->stream) drain(event->stream, event->seq);
    return sticky_error() != cudaSuccess ? fail_call(sticky_error()) : cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start || !end || (start->flags & cudaEventDisableTiming) || (end->flags & cudaEventDisableTiming))
        return fail_call(cudaErrorInvalidResourceHandle);
    if (!start->time_ms || !end->time_ms) return fail_call(cudaErrorInvalidResourceHandle, "event never recorded");
    if (std::isnan(*start->time_ms) || std::isnan(*end->time_ms)) return fail_call(cudaErrorNotReady);
    *ms = static_cast<float>(*end->time_ms - *start->time_ms);
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
    const auto s = resolve(stream);
    if (!s) return fail_call(cudaErrorInvalidResourceHandle);
    if (s->legacy) return fail_call(cudaErrorStreamCaptureUnsupported, "capturing the legacy default stream");
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->capture) return fail_call(cudaErrorIllegalState, "the stream is already capturing");
    s->capture = std::make_unique<CUgraph_st>();
    s->capture_mode = mode;
    s->capture_thread = std::this_thread::get_id();
    s->capture_error = cudaSuccess;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
    const auto s = resolve(stream);
    if (!s) return fail_call(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->capture) return fail_call(cudaErrorIllegalState, "the stream is not capturing");
    std::unique_ptr<CUgraph_st> g = std::move(s->capture);
    *graph = nullptr;
    if (s->capture_error != cudaSuccess) return fail_call(cudaErrorStreamCaptureInvalidated);
    *graph = g.release();
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
    const auto s = resolve(stream);
    if (!s) return fail_call(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> lock(s->mu);
    *status = !s->capture ? cudaStreamCaptureStatusNone
              : s->capture_error == cudaSuccess ? cudaStreamCaptureStatusActive
                                                : cudaStreamCaptureStatusInvalidated;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
    if (!graph) return fail_call(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st{graph->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    if (!exec) return fail_call(cudaErrorInvalidValue);
    const auto nodes = std::make_shared<std::vector<Work>>(exec->nodes);
    Work replay;
    replay.run = [nodes] {
        for (Work& w : *nodes) {
            const std::string why = w.run();
            if (!why.empty()) return why;
        }
        return std::string();
    };
    const cudaError_t e = enqueue(stream, std::move(replay));
    if (e == cudaSuccess && !capturing(stream)) count(Count::kGraphLaunch);
    return e;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}
