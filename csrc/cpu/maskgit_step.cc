// One MaskGIT step on the CPU (twin of cuda/maskgit_step.cu), docs/samplers.md (MaskGIT): every
// unknown image position draws a code from softmax(logits) (Gumbel-max on counter noise), scores it by
// log p + T * Gumbel, and the keep_masked[row] lowest scores stay masked. Scores equal the CUDA
// kernel's bit for bit (det_math.h; compiled with -ffp-contract=off).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_ops.h"
#include "dynin_rt/counter_rng.h"
#include "row_reductions.h"
#include "thread_pool.h"

namespace dynin_rt {

void cpu_maskgit_step(const MaskgitStepParams& p) {
    const int64_t step = p.step_counter ? *p.step_counter : p.step;
    const double temperature = p.temperatures ? p.temperatures[step] : p.temperature;
    // a fixed candidate list skips the positions whose code is already known
    auto live = [&](int64_t c) { return p.codes[p.cand_row[c] * p.n_tokens + p.cand_index[c]] < 0; };
    std::vector<double> confidence(static_cast<size_t>(p.n_cand));
    std::vector<int32_t> sample(static_cast<size_t>(p.n_cand));
    parallel_for(p.n_cand, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            if (!live(c)) continue;
            const LogitsRow r{p.logits + c * p.ld, p.n_codes};
            const int64_t row = p.cand_row[c];
            const uint64_t index = static_cast<uint64_t>(p.cand_index[c]);
            const uint64_t seed = row_seed_of(p, row), noise_row = noise_row_of(p, row);
            const uint64_t key_step = static_cast<uint64_t>(step);
            const int64_t best = row_gumbel_argmax(r, 1.0, counter_key(seed, kStreamToken, key_step, noise_row, index));
            // softmax probability of the sample, rounded to fp32 as the reference's probs tensor
            const double m = row_max(r);
            const float prob = static_cast<float>(det::exp(static_cast<double>(r.at(best)) - m) / row_sum_exp(r, m));
            const double u = bits_to_uniform(counter_key(seed, kStreamRemask, key_step, noise_row, index));
            // log p in fp32 (the reference's tensor), then + T * Gumbel in double
            const float log_p = static_cast<float>(det::log(static_cast<double>(std::max(prob, 1e-20f))));
            confidence[c] = det::add(static_cast<double>(log_p), det::mul(temperature, det::gumbel(u)));
            sample[c] = static_cast<int32_t>(best);
        }
    });
    int64_t c = 0;
    for (int64_t row = 0; row < p.batch; ++row) {
        std::vector<int64_t> cands;
        for (; c < p.n_cand && p.cand_row[c] == row; ++c)
            if (live(c)) cands.push_back(c);
        const int64_t count = static_cast<int64_t>(cands.size());
        if (p.masked_log) p.masked_log[step * p.batch + row] = 0;
        if (count == 0) continue;
        const int64_t keep = p.schedule ? std::max<int64_t>(1, std::min<int64_t>(count - 1, p.schedule[step])) : p.keep_masked[row];
        // cutoff = the keep-th smallest score over the region; known positions score above every
        // unknown one (log of float max), so when keep >= count all unknowns stay masked.
        const int64_t cut = std::max<int64_t>(keep, 0);
        double cutoff = INFINITY;
        if (cut < count) {
            std::vector<double> sorted;
            for (int64_t i : cands) sorted.push_back(confidence[i]);
            std::nth_element(sorted.begin(), sorted.begin() + cut, sorted.end());
            cutoff = sorted[cut];
        }
        for (int64_t i : cands) {
            const int64_t slot = row * p.n_tokens + p.cand_index[i];
            p.last_sample[slot] = sample[i];
            p.codes[slot] = confidence[i] < cutoff ? -1 : sample[i];
            if (p.masked_log) p.masked_log[step * p.batch + row] += p.codes[slot] < 0;
        }
    }
    if (p.canvas)
        for (int64_t row = 0; row < p.batch; ++row)
            for (int64_t n = 0; n < p.n_tokens; ++n) {
                const int32_t code = p.codes[row * p.n_tokens + n];
                p.canvas[row * p.canvas_len + p.region_start[row] + n] = code < 0 ? p.mask_id : p.token_offset + code;
            }
    if (p.step_counter) ++*p.step_counter;
}

}  // namespace dynin_rt
