// Runs the grid of one kernel launch on the CPU (executor.cc): the blocks on a small pool of worker
// threads (one block per worker at a time), the threads of a block as fibers on that worker.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <string>

namespace dynin_rt {
namespace emu {

struct GridLaunch {
    const char* name = "";  // the kernel's name, for messages
    dim3 grid, block;
    size_t smem = 0;        // dynamic shared memory per block
    std::shared_ptr<const KernelBody> body;
};

// Runs every block; returns an empty string, or why the launch failed (a trap, a barrier no thread
// can pass, a warp collective whose lanes disagree or have exited), naming the kernel and block.
std::string run_grid(const GridLaunch& g);

}  // namespace emu
}  // namespace dynin_rt
