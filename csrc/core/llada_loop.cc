// The LLaDA semi-autoregressive block sampler (model-spec §7.1) in C++.
//
// Exact mode (cache kNone, kTopK) follows the reference step for step: full-canvas forward, the LM
// head on the still-masked positions only (the others' logits are never read), the official CFG
// (prompt masked, no pad bias on either stream), the front-loaded transfer schedule. Fast mode keeps
// K/V of the canvas from each block's first step (prefix: prompt + finished blocks; dual: also the
// masked suffix) and commits by threshold or factor until the block is full.
#include <chrono>

#include "dynin_rt/common.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps) {
    std::vector<int64_t> k(static_cast<size_t>(steps), masked / steps);
    for (int64_t i = 0; i < masked % steps; ++i) ++k[i];
    return k;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

std::vector<int32_t> llada_generate(const Engine& engine, const TokenLayout& tokens, const std::vector<int32_t>& prompt,
                                    int64_t batch, const std::vector<uint8_t>* keep, const LladaParams& p,
                                    SamplerStats* stats, const BlockCallback& on_block) {
    DYNIN_CHECK_ARG(batch > 0 && !prompt.empty() && prompt.size() % batch == 0, "prompt must be a non-empty [B, P] array");
    const int64_t P = static_cast<int64_t>(prompt.size()) / batch;
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
    Backend* be = engine.backend();
    SamplerStats local;
    SamplerStats& st = stats ? *stats : local;

    // Canvas and the streams the forward sees: cond, plus uncond (prompt masked) for CFG.
    const bool cfg = p.cfg_scale > 0.0;
    const int64_t rows = cfg ? 2 * batch : batch;
    std::vector<int32_t> x(static_cast<size_t>(rows * T), mask);
    std::vector<uint8_t> prompt_index(static_cast<size_t>(batch * T), 0);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < P; ++t) {
            const int32_t id = prompt[b * P + t];
            DYNIN_CHECK_ARG(id >= 0 && id < engine.config().vocab_size, "token id ", id, " outside [0, ",
                            engine.config().vocab_size, ")");
            x[b * T + t] = id;
            prompt_index[b * T + t] = id != mask;
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
    const std::vector<ColumnRange> columns{{0, 0, engine.config().vocab_size}};
    const int64_t V = engine.config().vocab_size;

    Workspace ws;
    KVCache cache;
    if (p.cache != CacheMode::kNone) engine.ensure_cache(cache, layout.slots());
    DeviceBuffer d_canvas(be, sizeof(int32_t) * batch * T), d_cand_row, d_cand_pos, d_k, d_committed(be, sizeof(int32_t) * batch),
        combined;
    std::vector<int32_t> committed(static_cast<size_t>(batch));

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
            if (cfg) {
                for (int64_t b = 0; b < batch; ++b)
                    for (int64_t t = 0; t < T; ++t) x[(batch + b) * T + t] = prompt_index[b * T + t] ? mask : x[b * T + t];
            }
            std::vector<int64_t> head;
            for (int64_t r = 0; r < (cfg ? 2 : 1); ++r)
                for (int64_t c = 0; c < n_cand; ++c)
                    head.push_back(layout.pos_slot[(r * batch + cand_row[c]) * T + cand_pos[c]]);
            std::vector<int64_t> active;
            const bool full = p.cache == CacheMode::kNone || i == 0;
            if (!full) {
                // dual cache recomputes the block; prefix cache the block and the masked suffix
                const int64_t to = p.cache == CacheMode::kDual ? e : T;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t t = s; t < to; ++t)
                        if (layout.pos_slot[r * T + t] >= 0) active.push_back(layout.pos_slot[r * T + t]);
            }
            // head slots must be sorted for the forward; cond rows precede uncond rows already
            auto t0 = Clock::now();
            ForwardArgs fa;
            fa.tokens = x.data();
            fa.layout = &layout;
            fa.active = full ? nullptr : &active;
            fa.cache = p.cache == CacheMode::kNone ? nullptr : &cache;
            fa.fill_cache = p.cache != CacheMode::kNone && full;
            fa.head_slots = &head;
            fa.columns = columns;
            const float* logits = engine.forward(fa, ws);
            be->synchronize();
            st.seconds_forward += seconds_since(t0);
            ++st.forwards;
            t0 = Clock::now();
            if (cfg) {
                combined.ensure(be, sizeof(float) * std::max<int64_t>(n_cand * V, 1));
                be->cfg_combine(logits + n_cand * V, logits, combined.as<float>(), n_cand * V,
                                static_cast<float>(p.cfg_scale + 1.0), 0.0f, Backend::CfgForm::kLlada);
                logits = combined.as<float>();
            }
            d_cand_row.ensure(be, sizeof(int32_t) * std::max<int64_t>(n_cand, 1));
            d_cand_pos.ensure(be, sizeof(int32_t) * std::max<int64_t>(n_cand, 1));
            d_k.ensure(be, sizeof(int32_t) * batch);
            std::vector<int32_t> k(static_cast<size_t>(batch));
            for (int64_t b = 0; b < batch; ++b) k[b] = static_cast<int32_t>(scheduled ? k_sched[b][i] : 0);
            be->copy_to_device(d_cand_row.as<void>(), cand_row.data(), sizeof(int32_t) * n_cand);
            be->copy_to_device(d_cand_pos.as<void>(), cand_pos.data(), sizeof(int32_t) * n_cand);
            be->copy_to_device(d_k.as<void>(), k.data(), sizeof(int32_t) * batch);
            be->copy_to_device(d_canvas.as<void>(), x.data(), sizeof(int32_t) * batch * T);
            CommitStepParams cp;
            cp.logits = logits;
            cp.ld = V;
            cp.n_cand = n_cand;
            cp.n_cols = V;
            cp.columns = columns.data();
            cp.n_ranges = 1;
            cp.cand_row = d_cand_row.as<int32_t>();
            cp.cand_pos = d_cand_pos.as<int32_t>();
            cp.canvas = d_canvas.as<int32_t>();
            cp.batch = batch;
            cp.canvas_len = T;
            cp.k_per_row = d_k.as<int32_t>();
            cp.choice = p.temperature > 0 ? TokenChoice::kGumbelOfficial : TokenChoice::kArgmax;
            cp.confidence = p.random_remasking ? ConfidenceKind::kRandom : ConfidenceKind::kProbability;
            cp.select = p.select;
            cp.temperature = p.temperature;
            cp.threshold = p.threshold;
            cp.factor = p.factor;
            cp.seed = p.seed;
            cp.step = blk * steps_per_block + i;
            cp.committed_per_row = d_committed.as<int32_t>();
            if (n_cand > 0) be->commit_step(cp);
            be->copy_to_host(x.data(), d_canvas.as<void>(), sizeof(int32_t) * batch * T);
            be->copy_to_host(committed.data(), d_committed.as<void>(), sizeof(int32_t) * batch);
            st.seconds_sample += seconds_since(t0);
            ++st.steps;
            int32_t total = 0;
            for (int64_t b = 0; b < batch && n_cand > 0; ++b) total += committed[b];
            st.committed_per_step.push_back(total);
        }
        if (on_block) on_block(blk, std::vector<int32_t>(x.begin(), x.begin() + batch * T));
    }
    x.resize(static_cast<size_t>(batch * T));
    return x;
}

}  // namespace dynin_rt
