// One MaskGIT step on the GPU (twin of cpu/maskgit_step.cc): kernel 1, one block per unknown image
// position, draws a code (Gumbel-max on the counter noise) and scores it log p + T * Gumbel; kernel
// 2, one block per batch row, keeps the keep_masked[row] lowest scores masked (a score stays masked
// when at most keep_masked scores, itself included, are <= it: the reference's `< sorted[k]`).
// Samples and scores equal the CPU twin's bit for bit (det_math.h, --fmad=false).
#include <cfloat>
#include <vector>

#include "block_reduce.cuh"
#include "dynin_rt/counter_rng.h"
#include "launch.cuh"

namespace dynin_rt {
namespace cuda {

namespace {

constexpr int kThreads = kReduceThreads;

__device__ inline int64_t step_of(const MaskgitStepParams& p) { return p.step_counter ? *p.step_counter : p.step; }

// grid: n_cand. Writes sample[c], score[c]; sample -1 for a candidate whose code is already known
// (a fixed list of every image position skips them).
__global__ void sample_kernel(MaskgitStepParams p, int32_t* sample, double* score) {
    const int64_t c = blockIdx.x;
    const float* l = p.logits + c * p.ld;
    const int64_t row = p.cand_row[c];
    if (p.codes[row * p.n_tokens + p.cand_index[c]] >= 0) {
        if (threadIdx.x == 0) sample[c] = -1;
        return;
    }
    const int64_t step_index = step_of(p);
    const double temperature = p.temperatures ? p.temperatures[step_index] : p.temperature;
    const uint64_t index = static_cast<uint64_t>(p.cand_index[c]), step = static_cast<uint64_t>(step_index);
    const uint64_t seed = row_seed_of(p, row), noise_row = noise_row_of(p, row);
    const uint64_t key = counter_key(seed, kStreamToken, step, noise_row, index);
    Pick best{-DBL_MAX, 0}, top{-DBL_MAX, 0};
    for (int64_t j = threadIdx.x; j < p.n_codes; j += blockDim.x) {
        top = better(top, Pick{l[j], j});
        const double g = det::gumbel(bits_to_uniform(counter_at(key, static_cast<uint64_t>(j))));
        best = better(best, Pick{det::add(static_cast<double>(l[j]), g), j});
    }
    best = block_best(best);
    top = block_best(top);
    double sum = 0.0;  // partial threadIdx.x of det_math.h's order
    for (int64_t j = threadIdx.x; j < p.n_codes; j += blockDim.x) sum = det::add(sum, det::exp(static_cast<double>(l[j]) - top.value));
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
        const float prob = static_cast<float>(det::exp(static_cast<double>(l[best.index]) - top.value) / sum);
        const double u = bits_to_uniform(counter_key(seed, kStreamRemask, step, noise_row, index));
        const float log_p = static_cast<float>(det::log(static_cast<double>(fmaxf(prob, 1e-20f))));  // fp32, as the reference
        score[c] = det::add(static_cast<double>(log_p), det::mul(temperature, det::gumbel(u)));
        sample[c] = static_cast<int32_t>(best.index);
    }
}

// grid: batch rows. Candidates of a row are contiguous. keep_masked: host-given, or from the schedule.
__global__ void remask_kernel(MaskgitStepParams p, const int64_t* keep_masked, const int32_t* sample, const double* score) {
    __shared__ int64_t range[2];
    __shared__ int unknown, still_masked;
    const int32_t row = static_cast<int32_t>(blockIdx.x);
    if (threadIdx.x == 0) {
        row_range(p.cand_row, p.n_cand, row, &range[0], &range[1]);
        unknown = 0;
        still_masked = 0;
    }
    __syncthreads();
    for (int64_t c = range[0] + threadIdx.x; c < range[1]; c += blockDim.x)
        if (sample[c] >= 0) atomicAdd(&unknown, 1);
    __syncthreads();
    int64_t keep = 0;
    if (p.schedule) {
        const int64_t scheduled = p.schedule[step_of(p)];
        keep = unknown - 1 < scheduled ? unknown - 1 : scheduled;
        keep = keep > 1 ? keep : 1;
    } else {
        keep = keep_masked[row];
    }
    for (int64_t c = range[0] + threadIdx.x; c < range[1]; c += blockDim.x) {
        if (sample[c] < 0) continue;
        int64_t at_or_below = 0;
        for (int64_t o = range[0]; o < range[1]; ++o) at_or_below += sample[o] >= 0 && score[o] <= score[c];
        const int64_t slot = row * p.n_tokens + p.cand_index[c];
        p.last_sample[slot] = sample[c];
        p.codes[slot] = at_or_below <= keep ? -1 : sample[c];
        if (at_or_below <= keep) atomicAdd(&still_masked, 1);
    }
    __syncthreads();
    if (p.masked_log && threadIdx.x == 0) p.masked_log[step_of(p) * p.batch + row] = still_masked;
    if (!p.canvas) return;
    for (int64_t n = threadIdx.x; n < p.n_tokens; n += blockDim.x) {
        const int32_t code = p.codes[row * p.n_tokens + n];
        p.canvas[row * p.canvas_len + p.region_start[row] + n] = code < 0 ? p.mask_id : p.token_offset + code;
    }
}

__global__ void advance_step_kernel(int64_t* counter) { ++*counter; }

}  // namespace

void maskgit_step(const MaskgitStepParams& p, Context& c) {
    if (p.n_cand > 0) {
        const size_t bytes = static_cast<size_t>(p.n_cand) * (sizeof(double) + sizeof(int32_t)) + sizeof(int64_t) * p.batch;
        auto* scratch = static_cast<char*>(c.sampler.ensure(bytes, c));
        auto* score = reinterpret_cast<double*>(scratch);
        auto* keep = reinterpret_cast<int64_t*>(scratch + sizeof(double) * p.n_cand);
        auto* sample = reinterpret_cast<int32_t*>(scratch + sizeof(double) * p.n_cand + sizeof(int64_t) * p.batch);
        // keep_masked is host memory (plans per step): staged through pinned memory, no host wait
        if (!p.schedule) upload(keep, p.keep_masked, sizeof(int64_t) * p.batch, c);
        MaskgitStepParams dp = p;
        dp.keep_masked = nullptr;
        DYNIN_RT_LAUNCH(c, sample_kernel, static_cast<unsigned>(p.n_cand), kThreads, 0, dp, sample, score);
        DYNIN_RT_LAUNCH(c, remask_kernel, static_cast<unsigned>(p.batch), kThreads, 0, dp, keep, sample, score);
    }
    if (p.step_counter) DYNIN_RT_LAUNCH(c, advance_step_kernel, 1, 1, 0, p.step_counter);
}

}  // namespace cuda
}  // namespace dynin_rt
