// Memory of the emulated device: cudaMalloc returns exact-size, 256-byte-aligned host heap blocks
// (so AddressSanitizer sees overruns and use after free) filled with 0xff bytes (NaN as floats, -1
// as integers), so a kernel that reads memory nobody wrote fails loudly. Pinned host memory is
// tracked too. Copies are checked against the registry: a "device" pointer that is not inside a
// live allocation is cudaErrorInvalidValue, as is an allocation overrun.
//
// Timing follows the real runtime: a host->device copy from pageable memory is staged at the call
// (the source may be reused at once); from pinned memory it reads the source when it runs; a
// device->pageable-host copy waits for its stream; cudaMemcpy is synchronous; cudaFree waits for
// the whole device.
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime.h"

namespace dynin_rt {
namespace emu {

namespace {

enum class Kind { kDevice, kPinned, kRegistered };
struct Range {
    size_t bytes;
    Kind kind;
};

std::mutex mu;
std::map<uintptr_t, Range> ranges;

// The registered range containing address p, or null.
const std::pair<const uintptr_t, Range>* containing(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = ranges.upper_bound(a);
    if (it == ranges.begin()) return nullptr;
    --it;
    return a < it->first + std::max<size_t>(it->second.bytes, 1) ? &*it : nullptr;
}

enum class Where { kDevice, kPinned, kPageable, kOverrun };

Where classify(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    const auto* r = containing(p);
    if (!r) return Where::kPageable;
    if (reinterpret_cast<uintptr_t>(p) + bytes > r->first + r->second.bytes) return Where::kOverrun;
    return r->second.kind == Kind::kDevice ? Where::kDevice : Where::kPinned;
}

bool host(Where w) { return w == Where::kPinned || w == Where::kPageable; }

const char* kind_name(cudaMemcpyKind k) {
    switch (k) {
        case cudaMemcpyHostToHost: return "host-to-host";
        case cudaMemcpyHostToDevice: return "host-to-device";
        case cudaMemcpyDeviceToHost: return "device-to-host";
        case cudaMemcpyDeviceToDevice: return "device-to-device";
        default: return "default-direction";
    }
}

// Why this copy is invalid, or "".
std::string check_copy(Where dst, Where src, cudaMemcpyKind kind) {
    if (dst == Where::kOverrun || src == Where::kOverrun)
        return std::string(kind_name(kind)) + " copy runs past the end of an allocation";
    const bool want_dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) return {};
    if (want_dst_device != (dst == Where::kDevice))
        return std::string(kind_name(kind)) + " copy whose destination is " +
               (want_dst_device ? "not device memory" : "device memory");
    if (want_src_device != (src == Where::kDevice))
        return std::string(kind_name(kind)) + " copy whose source is " + (want_src_device ? "not device memory" : "device memory");
    return {};
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream, bool async) {
    if (sticky_error() != cudaSuccess) return fail_call(sticky_error());
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return fail_call(cudaErrorInvalidMemcpyDirection);
    if (!async)
        if (const cudaError_t e = check_unsafe_call("cudaMemcpy")) return e;
    if (bytes == 0) return cudaSuccess;
    const Where d = classify(dst, bytes), s = classify(src, bytes);
    const std::string why = check_copy(d, s, kind);
    if (!why.empty()) return fail_call(cudaErrorInvalidValue, why);
    if ((d == Where::kPageable || s == Where::kPageable) && capturing(stream))
        return invalidate_capture(stream, cudaErrorStreamCaptureUnsupported, "a copy to or from pageable host memory in a capture");
    Work work;
    if (s == Where::kPageable) {  // staged now
        auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
        work.run = [dst, staged] {
            std::memcpy(dst, staged->data(), staged->size());
            return std::string();
        };
    } else {
        work.run = [dst, src, bytes] {
            std::memcpy(dst, src, bytes);
            return std::string();
        };
    }
    if (const cudaError_t e = enqueue(async ? stream : nullptr, std::move(work))) return e;
    if (!async || (d == Where::kPageable && !host(s))) return wait_stream(async ? stream : nullptr);
    return cudaSuccess;
}

cudaError_t fill(void* ptr, int value, size_t bytes, cudaStream_t stream) {
    if (sticky_error() != cudaSuccess) return fail_call(sticky_error());
    if (bytes == 0) return cudaSuccess;
    if (classify(ptr, bytes) != Where::kDevice)
        return fail_call(cudaErrorInvalidValue, "cudaMemset of memory that is not a device allocation");
    Work work;
    work.run = [ptr, value, bytes] {
        std::memset(ptr, value, bytes);
        return std::string();
    };
    return enqueue(stream, std::move(work));
}

cudaError_t allocate(void** ptr, size_t bytes, Kind kind, size_t alignment) {
    *ptr = nullptr;
    if (const cudaError_t e = check_unsafe_call("allocation")) return e;
    if (sticky_error() != cudaSuccess) return fail_call(sticky_error());
    if (bytes == 0) return cudaSuccess;
    if (posix_memalign(ptr, alignment, bytes) != 0) return fail_call(cudaErrorMemoryAllocation);
    if (kind == Kind::kDevice) std::memset(*ptr, 0xff, bytes);
    {
        std::lock_guard<std::mutex> lock(mu);
        ranges[reinterpret_cast<uintptr_t>(*ptr)] = Range{bytes, kind};
    }
    count(Count::kMalloc);
    return cudaSuccess;
}

cudaError_t release(void* ptr, Kind kind, const char* what) {
    if (!ptr) return cudaSuccess;
    if (const cudaError_t e = check_unsafe_call(what)) return e;
    count(Count::kHostSync);
    drain_all();
    {
        std::lock_guard<std::mutex> lock(mu);
        const auto it = ranges.find(reinterpret_cast<uintptr_t>(ptr));
        if (it == ranges.end() || it->second.kind != kind)
            return fail_call(cudaErrorInvalidValue, std::string(what) + " of an address its allocator did not return");
        ranges.erase(it);
    }
    std::free(ptr);
    count(Count::kFree);
    return sticky_error() != cudaSuccess ? fail_call(sticky_error()) : cudaSuccess;
}

}  // namespace

bool is_device_range(const void* p, size_t bytes) { return classify(p, bytes) == Where::kDevice; }
bool is_pinned_range(const void* p, size_t bytes) { return classify(p, bytes) == Where::kPinned; }

}  // namespace emu
}  // namespace dynin_rt

using namespace dynin_rt::emu;

cudaError_t cudaMalloc(void** ptr, size_t bytes) { return allocate(ptr, bytes, Kind::kDevice, 256); }
cudaError_t cudaFree(void* ptr) { return release(ptr, Kind::kDevice, "cudaFree"); }
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return allocate(ptr, bytes, Kind::kPinned, 4096); }
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) { return allocate(ptr, bytes, Kind::kPinned, 4096); }
cudaError_t cudaFreeHost(void* ptr) { return release(ptr, Kind::kPinned, "cudaFreeHost"); }

cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned int) {
    if (!ptr || bytes == 0) return fail_call(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(mu);
    const uintptr_t a = reinterpret_cast<uintptr_t>(ptr);
    const auto next = ranges.lower_bound(a);
    if (containing(ptr) || (next != ranges.end() && next->first < a + bytes)) return fail_call(cudaErrorHostMemoryAlreadyRegistered);
    ranges[a] = Range{bytes, Kind::kRegistered};
    return cudaSuccess;
}

cudaError_t cudaHostUnregister(void* ptr) {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = ranges.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == ranges.end() || it->second.kind != Kind::kRegistered) return fail_call(cudaErrorHostMemoryNotRegistered);
    ranges.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    return copy(dst, src, bytes, kind, nullptr, false);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    return copy(dst, src, bytes, kind, stream, true);
}
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) { return fill(ptr, value, bytes, nullptr); }
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) { return fill(ptr, value, bytes, stream); }
