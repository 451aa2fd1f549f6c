// The fused step of the LLaDA and text-to-speech loops on the GPU (twin of cpu/commit_step.cc).
// Kernel 1, one block per candidate: token choice (argmax or Gumbel-max on the counter noise) and
// its confidence (softmax probability in double, or the counter uniform). Kernel 2, one block per
// batch row: each candidate's rank (confidence descending, canvas order on ties), the selection rule,
// the commit into the canvas. No host synchronisation. Tokens and confidences equal the CPU twin's
// bit for bit: det_math.h's exp / log / Gumbel and summation order, no FMA contraction (--fmad=false).
#include <cfloat>
#include <cstdio>

#include "block_reduce.cuh"
#include "dynin_rt/common.h"
#include "dynin_rt/counter_rng.h"
#include "launch.cuh"

namespace dynin_rt {
namespace cuda {

namespace {

constexpr int kThreads = kReduceThreads;

constexpr int kMaxRanges = 4;

struct Columns {
    ColumnRange r[kMaxRanges];
    int n;
};

__device__ inline int64_t step_of(const CommitStepParams& p) { return p.step_counter ? *p.step_counter : p.step; }

// A fixed candidate list skips the positions committed since it was made.
__device__ inline bool is_live(const CommitStepParams& p, int64_t c) {
    return p.mask_id < 0 || p.canvas[p.cand_row[c] * p.canvas_len + p.cand_pos[c]] == p.mask_id;
}

// grid: n_cand candidates. Writes col[c], confidence[c] (-inf for a skipped candidate).
__global__ void choose_kernel(CommitStepParams p, int32_t* col, double* confidence) {
    const int64_t c = blockIdx.x;
    if (!is_live(p, c)) {
        if (threadIdx.x == 0) confidence[c] = -INFINITY;
        return;
    }
    const float* l = p.logits + c * p.ld;
    const int64_t row = p.cand_row[c];
    const uint64_t pos = static_cast<uint64_t>(p.cand_pos[c]), step = static_cast<uint64_t>(step_of(p));
    const uint64_t seed = row_seed_of(p, row), noise_row = noise_row_of(p, row);
    const bool scaled = p.choice == TokenChoice::kCategorical && p.temperature > 0.0;
    const float divisor = scaled ? static_cast<float>(fmax(p.temperature, 1e-5)) : 1.0f;
    auto value = [&](int64_t j) { return scaled ? l[j] / divisor : l[j]; };

    Pick best{-DBL_MAX, 0};
    const bool greedy = p.choice == TokenChoice::kArgmax || (p.choice == TokenChoice::kGumbelOfficial && p.temperature == 0.0);
    const double t = p.choice == TokenChoice::kGumbelOfficial ? p.temperature : 1.0;
    const uint64_t key = counter_key(seed, kStreamToken, step, noise_row, pos);
    Pick top{-DBL_MAX, 0};  // the largest value, for the softmax shift
    for (int64_t j = threadIdx.x; j < p.n_cols; j += blockDim.x) {
        const double v = value(j);
        top = better(top, Pick{v, j});
        const double g = greedy ? 0.0 : det::gumbel(bits_to_uniform(counter_at(key, static_cast<uint64_t>(j))));
        const double noisy = greedy ? v : det::add(v, det::mul(t, g));
        best = better(best, Pick{noisy, j});
    }
    best = block_best(best);
    top = block_best(top);
    double conf;
    if (p.confidence == ConfidenceKind::kRandom) {
        conf = bits_to_uniform(counter_key(seed, kStreamRemask, step, noise_row, pos));
    } else {
        double sum = 0.0;  // partial threadIdx.x of det_math.h's order
        for (int64_t j = threadIdx.x; j < p.n_cols; j += blockDim.x)
            sum = det::add(sum, det::exp(static_cast<double>(value(j)) - top.value));
        sum = block_sum(sum);
        conf = det::exp(static_cast<double>(value(best.index)) - top.value) / sum;
    }
    if (threadIdx.x == 0) {
        col[c] = static_cast<int32_t>(best.index);
        confidence[c] = conf;
    }
}

// The token of a logit column; an unmapped column fails the launch, as the CPU twin throws.
__device__ int32_t token_of(const Columns& cols, int32_t col) {
    for (int r = 0; r < cols.n; ++r)
        if (col >= cols.r[r].col && col < cols.r[r].col + cols.r[r].count) return static_cast<int32_t>(cols.r[r].token + (col - cols.r[r].col));
    printf("dynin_rt commit_step: column %d is not mapped to a token\n", static_cast<int>(col));
    __trap();
    return -1;
}

// grid: batch rows; block: kThreads. Candidates of a row are contiguous.
__global__ void select_kernel(CommitStepParams p, Columns cols, const int32_t* col, const double* confidence) {
    __shared__ int64_t range[2];
    __shared__ int take, live;
    const int32_t row = static_cast<int32_t>(blockIdx.x);
    if (threadIdx.x == 0) {
        row_range(p.cand_row, p.n_cand, row, &range[0], &range[1]);
        take = 0;
        live = 0;
    }
    __syncthreads();
    const int64_t begin = range[0], count = range[1] - range[0];
    // rank: confidence descending, canvas order on ties (the CPU twin's stable sort); skipped
    // candidates (-inf) rank after every live one and never pass a rule
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        const int64_t c = begin + i;
        if (confidence[c] != -INFINITY) atomicAdd(&live, 1);
        int64_t rank = 0;
        for (int64_t o = begin; o < begin + count; ++o)
            rank += confidence[o] > confidence[c] || (confidence[o] == confidence[c] && o < c);
        if (p.select == SelectRule::kThreshold && confidence[c] >= p.threshold) atomicAdd(&take, 1);
        if (p.select == SelectRule::kFactor && (rank + 2) * (1.0 - confidence[c]) < p.factor)
            atomicMax(&take, static_cast<int>(rank + 1));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        if (p.select == SelectRule::kTopK) {
            const int k = p.k_table ? p.k_table[step_of(p) * p.batch + row] : p.k_per_row[row];
            take = k < live ? k : live;
        } else if (live > 0 && take < 1) {
            take = 1;
        }
        if (p.committed_per_row) p.committed_per_row[(p.step_counter ? step_of(p) * p.batch : 0) + row] = take;
        if (p.remaining) atomicAdd(p.remaining, live - take);
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        const int64_t c = begin + i;
        int64_t rank = 0;
        for (int64_t o = begin; o < begin + count; ++o)
            rank += confidence[o] > confidence[c] || (confidence[o] == confidence[c] && o < c);
        if (rank < take) p.canvas[row * p.canvas_len + p.cand_pos[c]] = token_of(cols, col[c]);
    }
}

__global__ void advance_step_kernel(int64_t* counter) { ++*counter; }

}  // namespace

void commit_step(const CommitStepParams& p, Context& c) {
    DYNIN_CHECK_ARG(p.n_ranges >= 1 && p.n_ranges <= kMaxRanges, "cuda commit_step: 1 to ", kMaxRanges, " column ranges");
    if (p.remaining) check(cudaMemsetAsync(p.remaining, 0, sizeof(int32_t), c.stream), "commit_step remaining");
    if (p.n_cand > 0) {
        Columns cols{};
        cols.n = static_cast<int>(p.n_ranges);
        for (int64_t r = 0; r < p.n_ranges; ++r) cols.r[r] = p.columns[r];
        CommitStepParams dp = p;
        dp.columns = nullptr;  // host memory: travels in `cols`
        const size_t bytes = static_cast<size_t>(p.n_cand) * (sizeof(double) + sizeof(int32_t));
        auto* scratch = static_cast<char*>(c.sampler.ensure(bytes, c));
        auto* conf = reinterpret_cast<double*>(scratch);
        auto* col = reinterpret_cast<int32_t*>(scratch + sizeof(double) * p.n_cand);
        DYNIN_RT_LAUNCH(c, choose_kernel, static_cast<unsigned>(p.n_cand), kThreads, 0, dp, col, conf);
        DYNIN_RT_LAUNCH(c, select_kernel, static_cast<unsigned>(p.batch), kThreads, 0, dp, cols, col, conf);
    }
    if (p.step_counter) DYNIN_RT_LAUNCH(c, advance_step_kernel, 1, 1, 0, p.step_counter);
}

}  // namespace cuda
}  // namespace dynin_rt
