// What the emulated device has done since the process started (monotonic), for tests that assert
// "no host wait inside a step, no allocation in the step path" (readable as _C.emulation_counters()).
#pragma once
#include <cstdint>

namespace dynin_rt {
namespace emu {

struct Counters {
    int64_t kernel_launches = 0;  // kernels (and cuBLASLt matmuls) queued outside a capture
    int64_t graph_launches = 0;
    int64_t host_syncs = 0;       // calls where the host waited for the device
    int64_t mallocs = 0;          // cudaMalloc / cudaMallocHost / cudaHostAlloc
    int64_t frees = 0;            // cudaFree / cudaFreeHost
};

Counters counters();

}  // namespace emu
}  // namespace dynin_rt
