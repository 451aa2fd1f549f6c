// One MaskGIT step on the CPU (twin of cuda/maskgit_step.cu), model-spec §7.2: every unknown image
// position draws a code from softmax(logits) (Gumbel-max on counter noise), scores it by
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
    std::vector<double> confidence(static_cast<size_t>(p.n_cand));
    std::vector<int32_t> sample(static_cast<size_t>(p.n_cand));
    parallel_for(p.n_cand, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            const LogitsRow r{p.logits + c * p.ld, p.n_codes};
            const uint64_t row = static_cast<uint64_t>(p.cand_row[c]), index = static_cast<uint64_t>(p.cand_index[c]);
            const int64_t best = row_gumbel_argmax(
                r, 1.0, counter_key(p.seed, kStreamToken, static_cast<uint64_t>(p.step), row, index));
            // softmax probability of the sample, rounded to fp32 as the reference's probs tensor
            const double m = row_max(r);
            const float prob = static_cast<float>(det::exp(static_cast<double>(r.at(best)) - m) / row_sum_exp(r, m));
            const double u = bits_to_uniform(counter_key(p.seed, kStreamRemask, static_cast<uint64_t>(p.step), row, index));
            // log p in fp32 (the reference's tensor), then + T * Gumbel in double
            const float log_p = static_cast<float>(det::log(static_cast<double>(std::max(prob, 1e-20f))));
            confidence[c] = det::add(static_cast<double>(log_p), det::mul(p.temperature, det::gumbel(u)));
            sample[c] = static_cast<int32_t>(best);
        }
    });
    int64_t c = 0;
    for (int64_t row = 0; row < p.batch; ++row) {
        const int64_t begin = c;
        while (c < p.n_cand && p.cand_row[c] == row) ++c;
        const int64_t count = c - begin;
        if (count == 0) continue;
        // cutoff = the keep_masked-th smallest score over the region; known positions score above
        // every unknown one (log of float max), so when keep_masked >= count all unknowns stay masked.
        const int64_t cut = std::max<int64_t>(p.keep_masked[row], 0);
        double cutoff = INFINITY;
        if (cut < count) {
            std::vector<double> sorted(confidence.begin() + begin, confidence.begin() + c);
            std::nth_element(sorted.begin(), sorted.begin() + cut, sorted.end());
            cutoff = sorted[cut];
        }
        for (int64_t i = begin; i < c; ++i) {
            const int64_t slot = row * p.n_tokens + p.cand_index[i];
            p.last_sample[slot] = sample[i];
            p.codes[slot] = confidence[i] < cutoff ? -1 : sample[i];
        }
    }
}

}  // namespace dynin_rt
