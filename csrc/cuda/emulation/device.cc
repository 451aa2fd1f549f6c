// The emulated device: one H100-like GPU, its error state (per-thread last error; a sticky error
// after a fault, which every later call reports), function attributes, counters, and the launch
// checks the hardware applies before a grid is queued.
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>

#include "counters.h"
#include "executor.h"
#include "runtime.h"

namespace dynin_rt {
namespace emu {

namespace {

constexpr int kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockZ = 64, kMaxGridYZ = 65535, kMaxGridX = 0x7fffffffu;
constexpr int kDefaultSmem = 48 << 10;  // without the opt-in attribute
constexpr int kOptinSmem = 227 << 10;   // sharedMemPerBlockOptin of an H100

struct LastError {
    cudaError_t code = cudaSuccess;
    cudaError_t detail_code = cudaSuccess;  // the error `detail` explains
    std::string detail;
    std::string message;  // cudaGetErrorString's storage
};
thread_local LastError tl_error;

std::mutex sticky_mu;
std::atomic<cudaError_t> sticky{cudaSuccess};
std::string sticky_detail;

std::mutex attr_mu;
std::map<const void*, int> max_dynamic_smem;

std::atomic<int64_t> counts[5];

const char* base_message(cudaError_t err) {
    switch (err) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
        case cudaErrorNotReady: return "device not ready";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
        case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
        default: return "unknown error";
    }
}

std::string dims(dim3 d) { return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")"; }

// Why the hardware would refuse this launch configuration, or "".
std::string check_config(const char* name, const void* func, dim3 grid, dim3 block, size_t smem, cudaError_t* err) {
    const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
    *err = cudaErrorInvalidConfiguration;
    if (threads == 0 || threads > kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > kMaxBlockZ)
        return std::string(name) + ": block " + dims(block) + " (at most 1024 threads, z <= 64)";
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > kMaxGridX || grid.y > kMaxGridYZ || grid.z > kMaxGridYZ)
        return std::string(name) + ": grid " + dims(grid) + " (x < 2^31, y and z <= 65535, none 0)";
    int limit = kDefaultSmem;
    {
        std::lock_guard<std::mutex> lock(attr_mu);
        const auto it = max_dynamic_smem.find(func);
        if (it != max_dynamic_smem.end()) limit = it->second;
    }
    *err = cudaErrorInvalidValue;
    if (smem > static_cast<size_t>(limit))
        return std::string(name) + ": " + std::to_string(smem) + " bytes of dynamic shared memory > the kernel's limit of " +
               std::to_string(limit) + " (raise it with cudaFuncSetAttribute)";
    return {};
}

}  // namespace

cudaError_t fail_call(cudaError_t err, const std::string& detail) {
    tl_error.code = err;
    tl_error.detail_code = err;
    tl_error.detail = detail;
    return err;
}

cudaError_t sticky_error() { return sticky.load(); }

void set_sticky_error(cudaError_t err, const std::string& detail) {
    std::lock_guard<std::mutex> lock(sticky_mu);
    if (sticky.load() != cudaSuccess) return;
    sticky_detail = detail;
    sticky.store(err);
}

void clear_sticky_error() {
    std::lock_guard<std::mutex> lock(sticky_mu);
    sticky.store(cudaSuccess);
    sticky_detail.clear();
}

void count(Count what) { counts[static_cast<int>(what)].fetch_add(1, std::memory_order_relaxed); }

Counters counters() {
    Counters c;
    c.kernel_launches = counts[static_cast<int>(Count::kLaunch)].load();
    c.graph_launches = counts[static_cast<int>(Count::kGraphLaunch)].load();
    c.host_syncs = counts[static_cast<int>(Count::kHostSync)].load();
    c.mallocs = counts[static_cast<int>(Count::kMalloc)].load();
    c.frees = counts[static_cast<int>(Count::kFree)].load();
    return c;
}

cudaError_t launch_kernel(const char* name, const void* func, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          std::shared_ptr<const KernelBody> body) {
    if (sticky_error() != cudaSuccess) return fail_call(sticky_error());
    cudaError_t err = cudaSuccess;
    const std::string why = check_config(name, func, grid, block, smem, &err);
    if (!why.empty()) {
        if (capturing(stream)) invalidate_capture(stream, err, why);
        return fail_call(err, why);
    }
    auto launch = std::make_shared<GridLaunch>();
    launch->name = name;
    launch->grid = grid;
    launch->block = block;
    launch->smem = smem;
    launch->body = std::move(body);
    Work work;
    work.run = [launch] { return run_grid(*launch); };
    work.is_launch = true;
    return enqueue(stream, std::move(work));
}

}  // namespace emu
}  // namespace dynin_rt

using namespace dynin_rt::emu;

cudaError_t cudaGetLastError() {
    const cudaError_t s = sticky_error();
    if (s != cudaSuccess) return s;
    const cudaError_t e = tl_error.code;
    tl_error.code = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError() {
    const cudaError_t s = sticky_error();
    return s != cudaSuccess ? s : tl_error.code;
}

const char* cudaGetErrorString(cudaError_t err) {
    std::string& m = tl_error.message;
    m = base_message(err);
    if (err != cudaSuccess && err == sticky_error()) {
        std::lock_guard<std::mutex> lock(sticky_mu);
        m += " [emulated device: " + sticky_detail + "]";
    } else if (err != cudaSuccess && err == tl_error.detail_code && !tl_error.detail.empty()) {
        m += " [emulated device: " + tl_error.detail + "]";
    }
    return m.c_str();
}

const char* cudaGetErrorName(cudaError_t err) {
    switch (err) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
        case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
        default: return "cudaErrorUnknown";
    }
}

cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail_call(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (device != 0) return fail_call(cudaErrorInvalidDevice);
    std::memset(p, 0, sizeof(*p));
    std::strcpy(p->name, "dynin_rt emulated GPU (H100-like limits)");
    p->totalGlobalMem = 80ull << 30;
    p->sharedMemPerBlock = kDefaultSmem;
    p->sharedMemPerBlockOptin = kOptinSmem;
    p->sharedMemPerMultiprocessor = 228 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = kMaxThreadsPerBlock;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = kMaxBlockZ;
    p->maxGridSize[0] = static_cast<int>(kMaxGridX);
    p->maxGridSize[1] = p->maxGridSize[2] = kMaxGridYZ;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return cudaErrorInvalidDevice;
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
        case cudaDevAttrWarpSize: *value = p.warpSize; break;
        case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
        case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
        case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
        default: return fail_call(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

// The emulation's reset: queued work is dropped and a sticky error cleared (allocations stay).
cudaError_t cudaDeviceReset() {
    discard_all();
    clear_sticky_error();
    tl_error = LastError{};
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
    if (sticky_error() != cudaSuccess) return fail_call(sticky_error());
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || value > kOptinSmem)
            return fail_call(cudaErrorInvalidValue, "MaxDynamicSharedMemorySize " + std::to_string(value) + " > " +
                                                        std::to_string(kOptinSmem) + " (sharedMemPerBlockOptin)");
        std::lock_guard<std::mutex> lock(attr_mu);
        max_dynamic_smem[func] = value;
        return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout && value >= -1 && value <= 100) return cudaSuccess;
    return fail_call(cudaErrorInvalidValue);
}
