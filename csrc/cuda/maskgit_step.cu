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

// grid: n_cand. Writes sample[c], score[c].
__global__ void sample_kernel(MaskgitStepParams p, int32_t* sample, double* score) {
    const int64_t c = blockIdx.x;
    const float* l = p.logits + c * p.ld;
    const uint64_t row = static_cast<uint64_t>(p.cand_row[c]), index = static_cast<uint64_t>(p.cand_index[c]);
    const uint64_t key = counter_key(p.seed, kStreamToken, static_cast<uint64_t>(p.step), row, index);
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
        const double u = bits_to_uniform(counter_key(p.seed, kStreamRemask, static_cast<uint64_t>(p.step), row, index));
        const float log_p = static_cast<float>(det::log(static_cast<double>(fmaxf(prob, 1e-20f))));  // fp32, as the reference
        score[c] = det::add(static_cast<double>(log_p), det::mul(p.temperature, det::gumbel(u)));
        sample[c] = static_cast<int32_t>(best.index);
    }
}

// grid: batch rows. Candidates of a row are contiguous.
__global__ void remask_kernel(MaskgitStepParams p, const int64_t* keep_masked, const int32_t* sample, const double* score) {
    __shared__ int64_t range[2];
    const int32_t row = static_cast<int32_t>(blockIdx.x);
    if (threadIdx.x == 0) {
        row_range(p.cand_row, p.n_cand, row, &range[0], &range[1]);
    }
    __syncthreads();
    const int64_t keep = keep_masked[row];
    for (int64_t c = range[0] + threadIdx.x; c < range[1]; c += blockDim.x) {
        int64_t at_or_below = 0;
        for (int64_t o = range[0]; o < range[1]; ++o) at_or_below += score[o] <= score[c];
        const int64_t slot = row * p.n_tokens + p.cand_index[c];
        p.last_sample[slot] = sample[c];
        p.codes[slot] = at_or_below <= keep ? -1 : sample[c];
    }
}

}  // namespace

void maskgit_step(const MaskgitStepParams& p, Context& c) {
    if (p.n_cand == 0) return;
    const size_t bytes = static_cast<size_t>(p.n_cand) * (sizeof(double) + sizeof(int32_t)) + sizeof(int64_t) * p.batch;
    auto* scratch = static_cast<char*>(c.sampler.ensure(bytes, c.counters));
    auto* score = reinterpret_cast<double*>(scratch);
    auto* keep = reinterpret_cast<int64_t*>(scratch + sizeof(double) * p.n_cand);
    auto* sample = reinterpret_cast<int32_t*>(scratch + sizeof(double) * p.n_cand + sizeof(int64_t) * p.batch);
    // keep_masked is host memory; a pageable upload is staged before the call returns
    check(cudaMemcpyAsync(keep, p.keep_masked, sizeof(int64_t) * p.batch, cudaMemcpyHostToDevice, c.stream), "maskgit keep");
    MaskgitStepParams dp = p;
    dp.keep_masked = nullptr;
    DYNIN_RT_LAUNCH(c, sample_kernel, static_cast<unsigned>(p.n_cand), kThreads, 0, dp, sample, score);
    DYNIN_RT_LAUNCH(c, remask_kernel, static_cast<unsigned>(p.batch), kThreads, 0, dp, keep, sample, score);
}

}  // namespace cuda
}  // namespace dynin_rt
