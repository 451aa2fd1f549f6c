// A small persistent pool for the CPU kernels (OpenBLAS threads the GEMMs itself). Workers sleep
// on a condition variable instead of spinning, so they do not steal cycles from OpenBLAS's threads
// between ops. A parallel_for issued while the pool is busy (another Python thread's call) runs
// inline in the caller, which keeps concurrent generate calls correct.
#pragma once
#include <cstdint>
#include <functional>

namespace dynin_rt {

int cpu_num_threads();
void cpu_set_num_threads(int n);  // n <= 0: one per hardware thread

// Calls fn(begin, end) over a partition of [0, n) into contiguous chunks, in parallel.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

}  // namespace dynin_rt
