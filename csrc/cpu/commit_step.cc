// The fused step of the LLaDA and text-to-speech loops on the CPU (twin of cuda/commit_step.cu):
// one pass over each candidate's logits row picks the token and its confidence (a softmax in
// double without a materialised copy), then each batch row commits its selection into the canvas.
// Confidences equal the CUDA kernel's bit for bit (det_math.h; compiled with -ffp-contract=off).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu_ops.h"
#include "dynin_rt/common.h"
#include "dynin_rt/counter_rng.h"
#include "row_reductions.h"
#include "thread_pool.h"

namespace dynin_rt {

namespace {

int64_t token_of_column(const CommitStepParams& p, int64_t col) {
    for (int64_t r = 0; r < p.n_ranges; ++r) {
        const ColumnRange& c = p.columns[r];
        if (col >= c.col && col < c.col + c.count) return c.token + (col - c.col);
    }
    throw InvalidArgument(str_cat("commit step: column ", col, " is not mapped to a token"));
}

struct Choice {
    int64_t col;
    double confidence;
};

Choice choose(const CommitStepParams& p, int64_t c, uint64_t step) {
    const int64_t row = p.cand_row[c];
    const uint64_t pos = static_cast<uint64_t>(p.cand_pos[c]);
    const uint64_t seed = row_seed_of(p, row), noise_row = noise_row_of(p, row);
    // T2S divides its logits by the temperature (in fp32, as the reference) and samples at any T.
    LogitsRow r{p.logits + c * p.ld, p.n_cols};
    if (p.choice == TokenChoice::kCategorical && p.temperature > 0.0)
        r.divisor = static_cast<float>(std::max(p.temperature, 1e-5));
    int64_t best;
    if (p.choice == TokenChoice::kArgmax || (p.choice == TokenChoice::kGumbelOfficial && p.temperature == 0.0)) {
        best = row_argmax(r);
    } else {
        // Gumbel-max on the counter noise of (seed, token stream, step, row, position, column):
        // argmax l + T G for LLaDA's exp(l) / (-log u)^T, argmax l / T + G for a categorical draw.
        const double t = p.choice == TokenChoice::kGumbelOfficial ? p.temperature : 1.0;
        best = row_gumbel_argmax(r, t, counter_key(seed, kStreamToken, step, noise_row, pos));
    }
    double confidence;
    if (p.confidence == ConfidenceKind::kRandom) {
        confidence = bits_to_uniform(counter_key(seed, kStreamRemask, step, noise_row, pos));
    } else {
        const double m = row_max(r);
        confidence = det::exp(static_cast<double>(r.at(best)) - m) / row_sum_exp(r, m);
    }
    return {best, confidence};
}

}  // namespace

void cpu_commit_step(const CommitStepParams& p) {
    const int64_t step = p.step_counter ? *p.step_counter : p.step;
    // a fixed candidate list skips the positions committed since it was made
    auto live = [&](int64_t c) { return p.mask_id < 0 || p.canvas[p.cand_row[c] * p.canvas_len + p.cand_pos[c]] == p.mask_id; };
    std::vector<Choice> choices(static_cast<size_t>(p.n_cand));
    std::vector<uint8_t> is_live(static_cast<size_t>(p.n_cand));
    for (int64_t c = 0; c < p.n_cand; ++c) is_live[c] = live(c);
    parallel_for(p.n_cand, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c)
            if (is_live[c]) choices[c] = choose(p, c, static_cast<uint64_t>(step));
    });
    int64_t c = 0, remaining = 0;
    for (int64_t row = 0; row < p.batch; ++row) {
        std::vector<int64_t> order;
        for (; c < p.n_cand && p.cand_row[c] == row; ++c)
            if (is_live[c]) order.push_back(c);
        const int64_t count = static_cast<int64_t>(order.size());
        // Highest confidence first; equal confidences in canvas order, so the choice is deterministic.
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
            return choices[a].confidence > choices[b].confidence;
        });
        int64_t take = 0;
        switch (p.select) {
            case SelectRule::kTopK:
                take = std::min<int64_t>(p.k_table ? p.k_table[step * p.batch + row] : p.k_per_row[row], count);
                break;
            case SelectRule::kThreshold:
                while (take < count && choices[order[take]].confidence >= p.threshold) ++take;
                take = std::max<int64_t>(take, std::min<int64_t>(1, count));
                break;
            case SelectRule::kFactor:
                // the largest n (1-based) whose n-th confidence c_n satisfies (n + 1)(1 - c_n) < factor
                for (int64_t n = count; n >= 1; --n) {
                    if ((n + 1) * (1.0 - choices[order[n - 1]].confidence) < p.factor) {
                        take = n;
                        break;
                    }
                }
                take = std::max<int64_t>(take, std::min<int64_t>(1, count));
                break;
        }
        for (int64_t i = 0; i < take; ++i) {
            const int64_t cand = order[i];
            p.canvas[row * p.canvas_len + p.cand_pos[cand]] = static_cast<int32_t>(token_of_column(p, choices[cand].col));
        }
        if (p.committed_per_row) p.committed_per_row[(p.step_counter ? step * p.batch : 0) + row] = static_cast<int32_t>(take);
        remaining += count - take;
    }
    if (p.remaining) *p.remaining = static_cast<int32_t>(remaining);
    if (p.step_counter) ++*p.step_counter;
}

}  // namespace dynin_rt
