// What the emulated runtime's parts share: errors and counters (device.cc), queues (streams.cc)
// and the allocation registry (memory.cc). Internal to csrc/cuda/emulation.
#pragma once
#include <cuda_runtime.h>

#include <functional>
#include <string>

#include "counters.h"

namespace dynin_rt {
namespace emu {

// A unit of queued device work, run when its stream drains; it returns "" or why it failed, which
// becomes the device's sticky error (`failure`), as a fault on the GPU would.
struct Work {
    std::function<std::string()> run;
    cudaError_t failure = cudaErrorLaunchFailure;
    bool is_launch = false;  // a kernel or library call (counted as a launch outside a capture)
};

// --- errors: every failing call records its error as the calling thread's last error ---------
cudaError_t fail_call(cudaError_t err, const std::string& detail = "");
cudaError_t sticky_error();  // cudaSuccess while the device is usable
void set_sticky_error(cudaError_t err, const std::string& detail);
void clear_sticky_error();

enum class Count { kLaunch, kGraphLaunch, kHostSync, kMalloc, kFree };
void count(Count what);

// --- streams ------------------------------------------------------------------------------------
// Queues work on `stream`, or appends it to the stream's capture. *seq (when given) is the queue
// position, 0 when captured. The error is the call's (bad handle, sticky error).
cudaError_t enqueue(cudaStream_t stream, Work work, uint64_t* seq = nullptr);
bool capturing(cudaStream_t stream);
// The stream's capture fails with `err` (EndCapture then reports it invalidated); returns err.
cudaError_t invalidate_capture(cudaStream_t stream, cudaError_t err, const std::string& detail);
// cudaErrorStreamCaptureUnsupported when an active capture forbids calls that may synchronise or
// allocate on this thread (global mode: any thread's; thread-local: this thread's), else cudaSuccess.
cudaError_t check_unsafe_call(const char* what);
// Runs the stream's queue through its last queued work (the host waits: counted).
cudaError_t wait_stream(cudaStream_t stream);
// Runs every stream's queue (cudaDeviceSynchronize, cudaFree).
void drain_all();
void discard_all();  // cudaDeviceReset

// --- memory -------------------------------------------------------------------------------------
// Whether [p, p + bytes) lies inside one live cudaMalloc allocation / pinned host range.
bool is_device_range(const void* p, size_t bytes);
bool is_pinned_range(const void* p, size_t bytes);

}  // namespace emu
}  // namespace dynin_rt
