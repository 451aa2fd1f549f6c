// Kernel launches and dynamic shared memory, the two places where the CUDA build and the emulated
// build (DYNIN_RT_CUDA=EMULATE, csrc/cuda/emulation) differ in kernel code. Every kernel of the
// backend is launched through DYNIN_RT_LAUNCH: counted in the context's BackendCounters, then
// `<<<>>>` under nvcc or queued on the emulated device; a launch error throws.
#pragma once
#include <utility>

#include "cuda_ops.h"

namespace dynin_rt {
namespace cuda {

template <typename... P, typename... A>
void launch(Context& c, const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
    c.count_launch();
#if DYNIN_RT_CUDA_EMULATED
    emu::launch(name, kernel, grid, block, smem, c.stream, std::forward<A>(args)...);
#else
    kernel<<<grid, block, smem, c.stream>>>(std::forward<A>(args)...);
#endif
    check(cudaGetLastError(), name);
}

}  // namespace cuda
}  // namespace dynin_rt

// DYNIN_RT_LAUNCH(context, kernel, grid, block, dynamic smem bytes, kernel arguments...)
#define DYNIN_RT_LAUNCH(ctx, kernel, grid, block, smem, ...) \
    ::dynin_rt::cuda::launch(ctx, #kernel, kernel, grid, block, smem, __VA_ARGS__)

// The kernel's dynamic shared memory as `T* name` (an exact-size heap block per block when emulated).
#if DYNIN_RT_CUDA_EMULATED
#define DYNIN_RT_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::dynin_rt::emu::dynamic_shared_memory())
#else
#define DYNIN_RT_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Unrolls the next loop under nvcc (a loop over a compile-time count whose array indices must be
// constants to stay in registers); the host compiler of the emulated build does not know the pragma.
#if DYNIN_RT_CUDA_EMULATED
#define DYNIN_RT_UNROLL
#else
#define DYNIN_RT_UNROLL _Pragma("unroll")
#endif
