// The text-to-speech sampler (model-spec §7.3, t2s_generate_mmu_like) in C++.
//
// The speech region is the [MASK] run of row 0. Logits are restricted to the 4096 speech units plus
// <|eoa|> and EOS (4098 columns) and only computed for the still-masked positions of the current
// block. The unconditional stream (speech region masked, prompt kept) never changes, so its logits
// are computed once per request. Tokens are sampled at every temperature; the per-row top-k by
// sampled probability is committed. Fast mode adds KV reuse and threshold / factor commits.
#include <algorithm>

#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

std::vector<std::vector<int32_t>> t2s_generate(const Engine& engine, const TokenLayout& tokens,
                                               const std::vector<int32_t>& canvas, const std::vector<uint8_t>* keep,
                                               int64_t batch, const T2sParams& p, SamplerStats* stats,
                                               const BlockCallback& on_block) {
    const int64_t T = check_canvas(engine, canvas, batch, "canvas");
    DYNIN_CHECK_ARG(tokens.speech_offset >= 0, "this model has no speech rows (or no tokenizer to place them)");
    DYNIN_CHECK_ARG(p.steps > 0 && p.block_length > 0, "steps and block_length must be positive");
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.cfg_scale >= 0, "temperature and cfg_scale must be >= 0");
    if (keep) DYNIN_CHECK_ARG(keep->size() == canvas.size(), "attention mask must match the canvas");
    const int32_t mask = static_cast<int32_t>(tokens.mask_id);
    std::vector<int64_t> mask_cols;
    for (int64_t t = 0; t < T; ++t)
        if (canvas[t] == mask) mask_cols.push_back(t);
    DYNIN_CHECK_ARG(!mask_cols.empty(), "no [MASK] positions for the speech region");
    for (int64_t b = 1; b < batch; ++b) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; ++t) n += canvas[b * T + t] == mask;
        DYNIN_CHECK_ARG(n == static_cast<int64_t>(mask_cols.size()), "every row must hold the same number of masked positions");
    }
    const int64_t region_len = static_cast<int64_t>(mask_cols.size());
    const int64_t max_new = p.max_new_tokens < 0 ? region_len : std::min(p.max_new_tokens, region_len);
    DYNIN_CHECK_ARG(max_new > 0, "max_new_tokens must be positive");
    const int64_t block = std::max<int64_t>(1, std::min(p.block_length, max_new));
    const int64_t n_blocks = (max_new + block - 1) / block;
    const int64_t inner = std::max<int64_t>(1, p.steps / n_blocks);
    const int64_t units = tokens.speech_codebook;
    const std::vector<ColumnRange> columns{
        {0, tokens.speech_offset, units}, {units, tokens.eoa_id, 1}, {units + 1, tokens.eos_id, 1}};
    const int64_t C = units + 2;
    const bool scheduled = p.select == SelectRule::kTopK;
    Backend* be = engine.backend();
    SamplerStats local;
    StepRunner run(engine, stats ? *stats : local);

    std::vector<int32_t> x(canvas);
    const CanvasLayout layout(batch, T, keep ? keep->data() : nullptr);
    auto slot_of = [&](int64_t b, int64_t t) {
        const int64_t slot = layout.pos_slot[b * T + t];
        DYNIN_CHECK_ARG(slot >= 0, "a speech position is masked out by the attention mask");
        return slot;
    };
    Workspace ws;
    KVCache cache;
    if (p.cache != CacheMode::kNone) engine.ensure_cache(cache, layout.slots());

    // Unconditional logits of every speech position, once: [B * max_new, C].
    DeviceBuffer uncond, gathered, d_rows;
    if (p.cfg_scale > 0.0) {
        std::vector<int64_t> head;
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t i = 0; i < max_new; ++i) head.push_back(slot_of(b, mask_cols[i]));
        ForwardArgs fa;
        fa.tokens = canvas.data();
        fa.layout = &layout;
        fa.head_slots = &head;
        fa.columns = columns;
        const float* logits = run.forward(fa, ws);
        uncond = DeviceBuffer(be, sizeof(float) * batch * max_new * C);
        be->copy_rows({logits, C, nullptr, uncond.as<float>(), C, nullptr, batch * max_new, C});
    }

    for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const int64_t lo = blk * block, hi = std::min((blk + 1) * block, max_new);
        std::vector<std::vector<int64_t>> k_sched(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) {
            int64_t n = 0;
            for (int64_t i = lo; i < hi; ++i) n += x[b * T + mask_cols[i]] == mask;
            k_sched[b] = transfer_schedule(n, inner);
        }
        const int64_t max_steps = scheduled ? inner : hi - lo;
        for (int64_t s = 0; s < max_steps; ++s) {
            std::vector<int32_t> cand_row, cand_pos;
            std::vector<int64_t> head, uncond_rows;
            for (int64_t b = 0; b < batch; ++b)
                for (int64_t i = lo; i < hi; ++i)
                    if (x[b * T + mask_cols[i]] == mask) {
                        cand_row.push_back(static_cast<int32_t>(b));
                        cand_pos.push_back(static_cast<int32_t>(mask_cols[i]));
                        head.push_back(slot_of(b, mask_cols[i]));
                        uncond_rows.push_back(b * max_new + i);
                    }
            const int64_t n_cand = static_cast<int64_t>(cand_row.size());
            if (n_cand == 0) break;
            std::vector<int64_t> active;
            const bool full = p.cache == CacheMode::kNone || s == 0;
            if (!full) {
                // dual: the block's positions; prefix: the block and everything after it
                const int64_t from = mask_cols[lo], to = p.cache == CacheMode::kDual ? mask_cols[hi - 1] + 1 : T;
                for (int64_t b = 0; b < batch; ++b)
                    for (int64_t t = from; t < to; ++t)
                        if (layout.pos_slot[b * T + t] >= 0) active.push_back(layout.pos_slot[b * T + t]);
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
            if (p.cfg_scale > 0.0) {
                d_rows.ensure(be, sizeof(int64_t) * n_cand);
                be->copy_to_device(d_rows.as<void>(), uncond_rows.data(), sizeof(int64_t) * n_cand);
                gathered.ensure(be, sizeof(float) * n_cand * C);
                be->copy_rows({uncond.as<float>(), C, d_rows.as<int64_t>(), gathered.as<float>(), C, nullptr, n_cand, C});
                logits = run.guide(gathered.as<float>(), logits, n_cand * C, static_cast<float>(p.cfg_scale + 1.0), 0.0f,
                                   Backend::CfgForm::kLlada);
            }
            std::vector<int32_t> k(static_cast<size_t>(batch), 0);
            if (scheduled)
                for (int64_t b = 0; b < batch; ++b) k[b] = static_cast<int32_t>(k_sched[b][s]);
            CommitStepParams cp;
            cp.logits = logits;
            cp.ld = C;
            cp.n_cols = C;
            cp.columns = columns.data();
            cp.n_ranges = static_cast<int64_t>(columns.size());
            cp.choice = TokenChoice::kCategorical;
            cp.confidence = ConfidenceKind::kProbability;
            cp.select = p.select;
            cp.temperature = p.temperature;
            cp.threshold = p.threshold;
            cp.factor = p.factor;
            cp.seed = p.seed;
            cp.step = blk * inner + s;
            run.commit(cp, cand_row, cand_pos, k, x, batch, T);
        }
        if (on_block) on_block(blk, x);
    }

    // Per row: the region's relative ids, cut at the first <|eoa|> / EOS / leftover [MASK].
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t i = 0; i < region_len; ++i) {
            const int32_t id = x[b * T + mask_cols[0] + i];
            if (id < tokens.speech_offset || id >= tokens.speech_offset + units) break;
            out[b].push_back(static_cast<int32_t>(id - tokens.speech_offset));
        }
    }
    return out;
}

}  // namespace dynin_rt
