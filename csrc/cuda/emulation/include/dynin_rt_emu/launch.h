// Kernel launches in the emulated build: the arguments are copied into the launch (as the hardware
// copies kernel parameters), the launch is checked against the hardware's limits and queued on its
// stream (runtime.cc); the grid runs when the host waits (executor.cc).
#pragma once
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace dynin_rt {
namespace emu {

// A kernel with its launch arguments: run_thread() runs the kernel body for the current thread.
class KernelBody {
 public:
    virtual ~KernelBody() = default;
    virtual void run_thread() const = 0;
};

// Checks grid, block and dynamic shared memory as the hardware does and queues the grid; the error
// is also the calling thread's last error (cudaGetLastError), as for a real launch.
cudaError_t launch_kernel(const char* name, const void* func, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          std::shared_ptr<const KernelBody> body);

template <typename... P, typename... A>
cudaError_t launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    using Args = std::tuple<std::decay_t<P>...>;
    struct Body final : KernelBody {
        Body(void (*k)(P...), Args a) : kernel(k), args(std::move(a)) {}
        void run_thread() const override { std::apply(kernel, args); }
        void (*kernel)(P...);
        Args args;
    };
    return launch_kernel(name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream,
                         std::make_shared<const Body>(kernel, Args(std::forward<A>(args)...)));
}

}  // namespace emu
}  // namespace dynin_rt
