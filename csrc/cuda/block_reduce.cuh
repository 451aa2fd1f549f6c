// Block-wide reductions shared by the fused sampler steps (blocks of kReduceThreads threads).
// block_sum adds in det_math.h's fixed order (the CPU twins' det::sum_tree), so a sum of 256 strided
// partials equals the CPU's bit for bit.
#pragma once
#include <cstdint>

#include "dynin_rt/det_math.h"

namespace dynin_rt {
namespace cuda {

constexpr int kReduceThreads = det::kSumLanes;

// A candidate value and its column; ties go to the smaller column (the CPU twins' first maximum).
struct Pick {
    double value;
    int64_t index;
};

__device__ inline Pick better(Pick a, Pick b) {
    return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

// The block's best Pick, returned to every thread.
__device__ inline Pick block_best(Pick mine) {
    __shared__ Pick warp_best[kReduceThreads / 32];
    for (int off = 16; off > 0; off /= 2) {
        Pick other{__shfl_xor_sync(0xffffffffu, mine.value, off), __shfl_xor_sync(0xffffffffu, mine.index, off)};
        mine = better(mine, other);
    }
    if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kReduceThreads / 32; ++w) mine = better(mine, warp_best[w]);
        warp_best[0] = mine;
    }
    __syncthreads();
    const Pick out = warp_best[0];
    __syncthreads();
    return out;
}

// The block's sum, returned to every thread: the xor butterfly within each warp, then warp 0's total
// plus warps 1, 2, ... in order (det::sum_tree).
__device__ inline double block_sum(double mine) {
    __shared__ double partial[kReduceThreads / 32];
    for (int off = 16; off > 0; off /= 2) mine += __shfl_xor_sync(0xffffffffu, mine, off);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kReduceThreads / 32; ++w) mine += partial[w];
        partial[0] = mine;
    }
    __syncthreads();
    const double out = partial[0];
    __syncthreads();
    return out;
}

// The rows of candidates [begin, end) that belong to batch row `row` (candidates are grouped by row).
__device__ inline void row_range(const int32_t* cand_row, int64_t n_cand, int32_t row, int64_t* begin, int64_t* end) {
    int64_t b = 0;
    while (b < n_cand && cand_row[b] < row) ++b;
    int64_t e = b;
    while (e < n_cand && cand_row[e] == row) ++e;
    *begin = b;
    *end = e;
}

}  // namespace cuda
}  // namespace dynin_rt
