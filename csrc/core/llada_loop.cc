// The LLaDA semi-autoregressive block sampler (model-spec §7.1) in C++.
//
// Exact mode (cache kNone, kTopK) follows the reference step for step: full-canvas forward, the LM
// head on the still-masked positions only (the others' logits are never read), the official CFG
// (prompt masked, no pad bias on either stream), the front-loaded transfer schedule. Fast mode keeps
// K/V of the canvas from each block's first step (prefix: prompt + finished blocks; dual: also the
// masked suffix) and commits by threshold or factor until the block is full.
#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps) {
    std::vector<int64_t> k(static_cast<size_t>(steps), masked / steps);
    for (int64_t i = 0; i < masked % steps; ++i) ++k[i];
    return k;
}

std::vector<int32_t> llada_generate(const Engine& engine, const TokenLayout& tokens, const std::vector<int32_t>& prompt,
                                    int64_t batch, const std::vector<uint8_t>* keep, const LladaParams& p,
                                    SamplerStats* stats, const BlockCallback& on_block) {
    const int64_t P = check_canvas(engine, prompt, batch, "prompt");
    DYNIN_CHECK_ARG(p.gen_length > 0 && p.block_length > 0 && p.steps > 0, "gen_length, block_length and steps must be positive");
    DYNIN_CHECK_ARG(p.gen_length % p.block_length == 0, "gen_length ", p.gen_length, " is not divisible by block_length ",
                    p.block_length);
    const int64_t n_blocks = p.gen_length / p.block_length;
    DYNIN_CHECK_ARG(p.steps % n_blocks == 0, "steps ", p.steps, " is not divisible by the number of blocks ", n_blocks);
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.cfg_scale >= 0, "temperature and cfg_scale must be >= 0");
    const int64_t T = P + p.gen_length;
    DYNIN_CHECK_ARG(T <= engine.config().max_seq_len, "prompt of ", P, " + ", p.gen_length, " new tokens exceeds the context of ",
                    engine.config().max_seq_len);
    // kTopK follows the transfer schedule (steps per block); threshold and factor rules instead
    // step until the block is full, committing at least one token per step.
    const bool scheduled = p.select == SelectRule::kTopK;
    const int64_t steps_per_block = p.steps / n_blocks;
    const int32_t mask = static_cast<int32_t>(tokens.mask_id);
    SamplerStats local;
    StepRunner run(engine, stats ? *stats : local);

    // Canvas and the streams the forward sees: cond, plus uncond (prompt masked) for CFG.
    const bool cfg = p.cfg_scale > 0.0;
    const int64_t rows = cfg ? 2 * batch : batch;
    std::vector<int32_t> x(static_cast<size_t>(rows * T), mask);
    std::vector<uint8_t> prompt_index(static_cast<size_t>(batch * T), 0);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < P; ++t) {
            x[b * T + t] = prompt[b * P + t];
            prompt_index[b * T + t] = prompt[b * P + t] != mask;
        }
    // The official sampler builds a pad bias only when the mask holds a 0, and never for CFG.
    std::vector<uint8_t> keep_full;
    if (keep && !cfg) {
        DYNIN_CHECK_ARG(static_cast<int64_t>(keep->size()) == batch * P, "attention mask must be [B, P]");
        bool any_pad = false;
        keep_full.assign(static_cast<size_t>(batch * T), 1);
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t t = 0; t < P; ++t) {
                keep_full[b * T + t] = (*keep)[b * P + t] != 0;
                any_pad |= !keep_full[b * T + t];
            }
        if (!any_pad) keep_full.clear();
    }
    const CanvasLayout layout(rows, T, keep_full.empty() ? nullptr : keep_full.data());
    const int64_t V = engine.config().vocab_size;
    const std::vector<ColumnRange> columns{{0, 0, V}};

    Workspace ws;
    KVCache cache;
    if (p.cache != CacheMode::kNone) engine.ensure_cache(cache, layout.slots());
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const int64_t s = P + blk * p.block_length, e = s + p.block_length;
        std::vector<std::vector<int64_t>> k_sched(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) {
            int64_t n = 0;
            for (int64_t t = s; t < e; ++t) n += x[b * T + t] == mask;
            k_sched[b] = transfer_schedule(n, steps_per_block);
        }
        const int64_t max_steps = scheduled ? steps_per_block : p.block_length;
        for (int64_t i = 0; i < max_steps; ++i) {
            // Candidates: masked positions before the block end (later ones have -inf confidence in
            // the reference). With a KV cache only the block's own positions are recomputed, so only
            // they can be candidates.
            const int64_t first = p.cache == CacheMode::kNone ? 0 : s;
            std::vector<int32_t> cand_row, cand_pos;
            for (int64_t b = 0; b < batch; ++b)
                for (int64_t t = first; t < e; ++t)
                    if (x[b * T + t] == mask) {
                        cand_row.push_back(static_cast<int32_t>(b));
                        cand_pos.push_back(static_cast<int32_t>(t));
                    }
            if (!scheduled && cand_row.empty()) break;
            const int64_t n_cand = static_cast<int64_t>(cand_row.size());
            if (cfg)
                for (int64_t b = 0; b < batch; ++b)
                    for (int64_t t = 0; t < T; ++t) x[(batch + b) * T + t] = prompt_index[b * T + t] ? mask : x[b * T + t];
            // cond rows precede uncond rows, so the head slots come out sorted
            std::vector<int64_t> head;
            for (int64_t r = 0; r < (cfg ? 2 : 1); ++r)
                for (int64_t c = 0; c < n_cand; ++c) head.push_back(layout.pos_slot[(r * batch + cand_row[c]) * T + cand_pos[c]]);
            std::vector<int64_t> active;
            const bool full = p.cache == CacheMode::kNone || i == 0;
            if (!full) {
                // dual cache recomputes the block; prefix cache the block and the masked suffix
                const int64_t to = p.cache == CacheMode::kDual ? e : T;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t t = s; t < to; ++t)
                        if (layout.pos_slot[r * T + t] >= 0) active.push_back(layout.pos_slot[r * T + t]);
            }
            ForwardArgs fa;
            fa.tokens = x.data();
            fa.layout = &layout;
            fa.active = full ? nullptr : &active;
            fa.cache = p.cache == CacheMode::kNone ? nullptr : &cache;
            fa.fill_cache = p.cache != CacheMode::kNone && full;
            fa.head_slots = &head;
            fa.columns = columns;
            const float* logits = run.forward(fa, ws);
            if (cfg)
                logits = run.guide(logits + n_cand * V, logits, n_cand * V, static_cast<float>(p.cfg_scale + 1.0), 0.0f,
                                   Backend::CfgForm::kLlada);
            std::vector<int32_t> k(static_cast<size_t>(batch), 0);
            if (scheduled)
                for (int64_t b = 0; b < batch; ++b) k[b] = static_cast<int32_t>(k_sched[b][i]);
            CommitStepParams cp;
            cp.logits = logits;
            cp.ld = V;
            cp.n_cols = V;
            cp.columns = columns.data();
            cp.n_ranges = 1;
            cp.choice = p.temperature > 0 ? TokenChoice::kGumbelOfficial : TokenChoice::kArgmax;
            cp.confidence = p.random_remasking ? ConfidenceKind::kRandom : ConfidenceKind::kProbability;
            cp.select = p.select;
            cp.temperature = p.temperature;
            cp.threshold = p.threshold;
            cp.factor = p.factor;
            cp.seed = p.seed;
            cp.step = blk * steps_per_block + i;
            run.commit(cp, cand_row, cand_pos, k, x, batch, T);
        }
        if (on_block) on_block(blk, std::vector<int32_t>(x.begin(), x.begin() + batch * T));
    }
    x.resize(static_cast<size_t>(batch * T));
    return x;
}

}  // namespace dynin_rt
