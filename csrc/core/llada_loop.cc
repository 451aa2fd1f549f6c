// The LLaDA semi-autoregressive block sampler (docs/samplers.md) in C++.
//
// Exact mode (cache kNone, kTopK) follows the reference step for step: full-canvas forward, the LM
// head on the still-masked positions only (the others' logits are never read), the official CFG
// (prompt masked, no pad bias on either stream), the front-loaded transfer schedule. Fast mode keeps
// K/V of the canvas from each block's first step, or its last refresh (prefix: prompt + finished
// blocks; dual: also the masked suffix) and commits by threshold or factor until the block is full.
#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps) {
    std::vector<int64_t> k(static_cast<size_t>(steps), masked / steps);
    for (int64_t i = 0; i < masked % steps; ++i) ++k[i];
    return k;
}

namespace {

// The canvas of one call: row b is its prompt (P_b tokens), gen_b [MASK]s, then an absent tail up
// to T. With CFG the layout has a second stream, rows B..2B-1: the unconditional stream, which
// reads the same canvas with its prompt masked (`overrides`).
struct TextCanvas {
    int64_t B = 0, T = 0, block_length = 0, n_blocks = 0, steps_per_block = 0;
    bool cfg = false;
    int32_t mask = 0;
    std::vector<int64_t> prompt_len, gen_len;  // [B]
    std::vector<int32_t> x;                    // [B, T] the host copy of the canvas
    std::vector<int32_t> overrides;            // [2B, T] with CFG: the uncond stream's masked prompt, else -1
    std::unique_ptr<CanvasLayout> layout;

    TextCanvas(const Engine& engine, int32_t mask_id, const TokenRows& prompt, const LladaParams& p);
    int64_t streams() const { return cfg ? 2 : 1; }
    bool generates(int64_t b, int64_t blk) const { return blk < gen_len[b] / block_length; }
    // Block `blk` of each running row that has it; from 0 instead of its start when `from_zero`.
    RowRanges block(int64_t blk, const StepRunner& run, bool from_zero) const;
    // Each row's span a cached step recomputes: the block (dual) or the block and what follows (prefix).
    RowRanges recomputed(int64_t blk, const StepRunner& run, CacheMode cache) const;
    // The exact schedule of the call: [n_blocks * stride, B], block blk's steps at blk * stride.
    std::vector<int32_t> k_table(int64_t stride) const;
    ForwardArgs forward_args(const std::vector<int64_t>& active, const std::vector<int64_t>& head,
                             const std::vector<ColumnRange>& columns, KVCache* cache, bool fill) const {
        return {nullptr, B, cfg ? overrides.data() : nullptr, layout.get(), &active, cache, fill, &head, columns};
    }
    std::vector<int32_t> result() const { return x; }
};

TextCanvas::TextCanvas(const Engine& engine, int32_t mask_id, const TokenRows& prompt, const LladaParams& p)
    : B(prompt.batch), block_length(p.block_length), cfg(p.cfg_scale > 0.0), mask(mask_id) {
    prompt.validate(engine, "prompt");
    DYNIN_CHECK_ARG(p.gen_length > 0 && p.block_length > 0 && p.steps > 0, "gen_length, block_length and steps must be positive");
    DYNIN_CHECK_ARG(p.gen_length % p.block_length == 0, "gen_length ", p.gen_length, " is not divisible by block_length ",
                    p.block_length);
    DYNIN_CHECK_ARG(p.steps % (p.gen_length / p.block_length) == 0, "steps ", p.steps, " is not divisible by the number of blocks ",
                    p.gen_length / p.block_length);
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.cfg_scale >= 0, "temperature and cfg_scale must be >= 0");
    DYNIN_CHECK_ARG(p.gen_lengths.empty() || static_cast<int64_t>(p.gen_lengths.size()) == B, "one gen length per row");
    // Every row takes the steps per block of gen_length (a batch shares its step clock).
    steps_per_block = p.steps / (p.gen_length / p.block_length);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t gen = p.gen_lengths.empty() ? p.gen_length : p.gen_lengths[b];
        DYNIN_CHECK_ARG(gen > 0 && gen % p.block_length == 0, "row ", b, ": new tokens ", gen,
                        " is not a positive multiple of block_length ", p.block_length);
        prompt_len.push_back(prompt.row_length(b));
        gen_len.push_back(gen);
        T = std::max(T, prompt_len[b] + gen);
        n_blocks = std::max(n_blocks, gen / p.block_length);
    }
    DYNIN_CHECK_ARG(T <= engine.config().max_seq_len, "a canvas of ", T, " tokens (prompt and new tokens) exceeds the context of ",
                    engine.config().max_seq_len);
    x.assign(static_cast<size_t>(B * T), mask);
    if (cfg) overrides.assign(static_cast<size_t>(2 * B * T), -1);
    // The absent tail is never computed; official pads are dropped only without CFG (the official
    // sampler builds a pad bias only when the mask holds a 0, and never for CFG).
    std::vector<uint8_t> keep(static_cast<size_t>(streams() * B * T), 1);
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < prompt_len[b]; ++t) {
            x[b * T + t] = prompt.at(b, t);
            if (cfg && prompt.at(b, t) != mask) overrides[(B + b) * T + t] = mask;
            if (!cfg && !prompt.kept(b, t)) keep[b * T + t] = 0;
        }
        for (int64_t s = 0; s < streams(); ++s)
            for (int64_t t = prompt_len[b] + gen_len[b]; t < T; ++t) keep[(s * B + b) * T + t] = 0;
    }
    layout = std::make_unique<CanvasLayout>(streams() * B, T, keep.data());
}

RowRanges TextCanvas::block(int64_t blk, const StepRunner& run, bool from_zero) const {
    RowRanges r(B);
    for (int64_t b = 0; b < B; ++b) {
        if (!run.running(b) || !generates(b, blk)) continue;
        r.end[b] = prompt_len[b] + (blk + 1) * block_length;
        r.begin[b] = from_zero ? 0 : r.end[b] - block_length;
    }
    return r;
}

RowRanges TextCanvas::recomputed(int64_t blk, const StepRunner& run, CacheMode cache) const {
    RowRanges r = block(blk, run, false);
    if (cache == CacheMode::kPrefix)
        for (int64_t b = 0; b < B; ++b)
            if (!r.empty(b)) r.end[b] = prompt_len[b] + gen_len[b];
    return r;
}

std::vector<int32_t> TextCanvas::k_table(int64_t stride) const {
    std::vector<int32_t> k(static_cast<size_t>(n_blocks * stride * B), 0);
    for (int64_t blk = 0; blk < n_blocks; ++blk)
        for (int64_t b = 0; b < B; ++b) {
            if (!generates(b, blk)) continue;
            const int64_t s = prompt_len[b] + blk * block_length;
            int64_t n = 0;
            for (int64_t t = s; t < s + block_length; ++t) n += x[b * T + t] == mask;
            const std::vector<int64_t> sched = transfer_schedule(n, steps_per_block);
            for (int64_t i = 0; i < steps_per_block; ++i) k[((blk * stride) + i) * B + b] = static_cast<int32_t>(sched[i]);
        }
    return k;
}

}  // namespace

std::vector<int32_t> llada_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& prompt,
                                    const LladaParams& p, LoopControl& control, SamplerStats* stats) {
    TextCanvas c(engine, static_cast<int32_t>(tokens.mask_id), prompt, p);
    StepRunner run(engine, control, stats, c.B, p.seed, p.rows);
    const int64_t V = engine.config().vocab_size;
    const std::vector<ColumnRange> columns{{0, 0, V}};
    StepSpec spec;  // the official CFG: u + (s + 1)(c - u); the commit rule
    spec.columns = &columns;
    spec.C = V;
    spec.cfg = c.cfg;
    spec.alpha = static_cast<float>(p.cfg_scale + 1.0);
    spec.rule = {p.temperature > 0 ? TokenChoice::kGumbelOfficial : TokenChoice::kArgmax,
                 p.random_remasking ? ConfidenceKind::kRandom : ConfidenceKind::kProbability, p.select, p.temperature,
                 p.threshold, p.factor};
    // kTopK follows the transfer schedule; threshold and factor rules step until the block is full,
    // committing at least one token per row and step.
    const bool scheduled = p.select == SelectRule::kTopK, cached = p.cache != CacheMode::kNone;
    const int64_t max_steps = scheduled ? c.steps_per_block : p.block_length;
    run.load_canvas(c.x, c.T, c.mask);
    run.load_steps(c.n_blocks * max_steps, scheduled ? c.k_table(max_steps) : std::vector<int32_t>{});
    KVCache cache;
    if (cached) engine.ensure_cache(cache, c.layout->slots());
    const CacheRefills refills(p.cache, p.refresh_every);
    StepPlan full, partial;
    for (int64_t blk = 0; blk < c.n_blocks && !run.running_rows().empty(); ++blk) {
        run.start_block(blk * max_steps);
        for (int64_t i = 0; i < max_steps; ++i) {
            if (!run.begin_step()) {
                run.finish(c.x);
                return c.result();
            }
            if (!run.plans_per_block() || i == 0) {
                if (i > 0) run.pull_canvas(c.x);
                // Candidates: masked positions before the block end (later ones have -inf confidence in
                // the reference); with a KV cache only the block is recomputed, so only it can commit.
                Candidates cand = collect_masked(c.x, c.T, c.mask, c.block(blk, run, !cached));
                if (!scheduled && cand.empty()) break;
                const std::vector<int64_t> head = head_slots(*c.layout, cand, c.B, c.streams());
                // per-block plans are made once for both kinds of step
                if (refills(i) || run.plans_per_block()) {
                    const std::vector<int64_t> rows = row_slots(*c.layout, run.running_rows(), c.B, c.streams());
                    run.prepare(full, cand, c.forward_args(rows, head, columns, cached ? &cache : nullptr, cached), V);
                }
                if (cached && (!refills(i) || run.plans_per_block())) {
                    const std::vector<int64_t> span = slots_in(*c.layout, c.recomputed(blk, run, p.cache), c.streams());
                    run.prepare(partial, cand, c.forward_args(span, head, columns, &cache, false), V);
                }
            }
            run.step(refills(i) ? full : partial, spec);
            if (!scheduled && run.plans_per_block() && run.remaining() == 0) break;
        }
        for (int64_t b = 0; b < c.B; ++b)
            if (!c.generates(b, blk + 1)) run.finish_row(b);
        run.block_done(blk, c.x);
    }
    return c.result();
}

}  // namespace dynin_rt
