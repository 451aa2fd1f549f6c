// The text-to-speech sampler (docs/samplers.md, t2s_generate_mmu_like) in C++.
//
// Each row's speech region is its [MASK] run. Logits are restricted to the 4096 speech units plus
// <|eoa|> and EOS (4098 columns) and only computed for the still-masked positions of the current
// block. The unconditional stream (speech region masked, prompt kept) never changes, so its logits
// are computed once per request. Tokens are sampled at every temperature; the per-row top-k by
// sampled probability is committed. Fast mode adds KV reuse and threshold / factor commits.
#include <algorithm>

#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

namespace {

struct SpeechCanvas {
    int64_t B = 0, T = 0, max_new = 0, block = 0, n_blocks = 0, inner = 0;
    int32_t mask = 0;
    int64_t unit_offset = 0, n_units = 0;      // speech unit u is token unit_offset + u
    std::vector<std::vector<int64_t>> region;  // [B][n] the canvas positions of each row's [MASK] run
    std::vector<int32_t> x;                    // [B, T]
    std::unique_ptr<CanvasLayout> layout;

    SpeechCanvas(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas, const T2sParams& p);
    // Region indices [lo, hi) of block blk.
    int64_t lo(int64_t blk) const { return blk * block; }
    int64_t hi(int64_t blk) const { return std::min((blk + 1) * block, max_new); }
    Candidates candidates(int64_t blk, const StepRunner& run) const;
    int64_t masked_in_block(int64_t b, int64_t blk) const;
    // The exact schedule of the call: [n_blocks * stride, B], block blk's steps at blk * stride.
    std::vector<int32_t> k_table(int64_t stride) const;
    RowRanges recomputed(int64_t blk, const StepRunner& run, CacheMode cache) const;
    // Per row: the region's relative ids, cut at the first <|eoa|> / EOS / leftover [MASK].
    std::vector<std::vector<int32_t>> units() const;
};

SpeechCanvas::SpeechCanvas(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas, const T2sParams& p)
    : B(canvas.batch), T(canvas.length), mask(static_cast<int32_t>(tokens.mask_id)), unit_offset(tokens.speech_offset),
      n_units(tokens.speech_codebook), x(canvas.ids) {
    canvas.validate(engine, "canvas");
    DYNIN_CHECK_ARG(tokens.speech_offset >= 0, "this model has no speech rows (or no tokenizer to place them)");
    DYNIN_CHECK_ARG(p.steps > 0 && p.block_length > 0, "steps and block_length must be positive");
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.cfg_scale >= 0, "temperature and cfg_scale must be >= 0");
    std::vector<uint8_t> keep(static_cast<size_t>(B * T), 0);
    region.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < canvas.row_length(b); ++t) {
            keep[b * T + t] = canvas.kept(b, t);
            if (canvas.at(b, t) == mask) region[b].push_back(t);
        }
        DYNIN_CHECK_ARG(!region[b].empty(), "no [MASK] positions for the speech region");
        DYNIN_CHECK_ARG(region[b].size() == region[0].size(), "every row must hold the same number of masked positions");
    }
    layout = std::make_unique<CanvasLayout>(B, T, keep.data());
    const int64_t n = static_cast<int64_t>(region[0].size());
    max_new = p.max_new_tokens < 0 ? n : std::min(p.max_new_tokens, n);
    DYNIN_CHECK_ARG(max_new > 0, "max_new_tokens must be positive");
    block = std::max<int64_t>(1, std::min(p.block_length, max_new));
    n_blocks = (max_new + block - 1) / block;
    inner = std::max<int64_t>(1, p.steps / n_blocks);
}

Candidates SpeechCanvas::candidates(int64_t blk, const StepRunner& run) const {
    Candidates c;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = lo(blk); i < hi(blk) && run.running(b); ++i)
            if (x[b * T + region[b][i]] == mask) c.add(b, region[b][i]);
    return c;
}

int64_t SpeechCanvas::masked_in_block(int64_t b, int64_t blk) const {
    int64_t n = 0;
    for (int64_t i = lo(blk); i < hi(blk); ++i) n += x[b * T + region[b][i]] == mask;
    return n;
}

std::vector<int32_t> SpeechCanvas::k_table(int64_t stride) const {
    std::vector<int32_t> k(static_cast<size_t>(n_blocks * stride * B), 0);
    for (int64_t blk = 0; blk < n_blocks; ++blk)
        for (int64_t b = 0; b < B; ++b) {
            const std::vector<int64_t> sched = transfer_schedule(masked_in_block(b, blk), inner);
            for (int64_t i = 0; i < inner; ++i) k[((blk * stride) + i) * B + b] = static_cast<int32_t>(sched[i]);
        }
    return k;
}

RowRanges SpeechCanvas::recomputed(int64_t blk, const StepRunner& run, CacheMode cache) const {
    RowRanges r(B);
    for (int64_t b = 0; b < B; ++b) {
        if (!run.running(b)) continue;
        r.begin[b] = region[b][lo(blk)];
        r.end[b] = cache == CacheMode::kDual ? region[b][hi(blk) - 1] + 1 : T;
    }
    return r;
}

std::vector<std::vector<int32_t>> SpeechCanvas::units() const {
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
        const int64_t start = region[b][0], end = std::min(T, start + static_cast<int64_t>(region[b].size()));
        for (int64_t t = start; t < end; ++t) {
            const int32_t id = x[b * T + t];
            if (id < unit_offset || id >= unit_offset + n_units) break;
            out[b].push_back(static_cast<int32_t>(id - unit_offset));
        }
    }
    return out;
}

// Unconditional logits of every speech position [B * max_new, C], computed once; gathered per
// candidate by rows uploaded with each plan's candidates.
class UncondLogits {
 public:
    UncondLogits(StepRunner& run, const SpeechCanvas& c, const std::vector<ColumnRange>& columns);
    void index(const SpeechCanvas& c, const Candidates& cand);  // the gather rows of these candidates
    const float* gather();  // enqueues the gather of the indexed candidates' rows
    uint64_t key() const;   // the buffers a recorded step bakes in

 private:
    Backend* be_;
    int64_t C_ = 0, n_ = 0;
    DeviceBuffer all_, gathered_, rows_;
};

UncondLogits::UncondLogits(StepRunner& run, const SpeechCanvas& c, const std::vector<ColumnRange>& columns)
    : be_(run.engine().backend()) {
    for (const ColumnRange& r : columns) C_ += r.count;
    Candidates every;
    for (int64_t b = 0; b < c.B; ++b)
        for (int64_t i = 0; i < c.max_new; ++i) every.add(b, c.region[b][i]);
    const std::vector<int64_t> head = head_slots(*c.layout, every, c.B, 1);
    StepPlan plan;
    run.prepare(plan, every, {nullptr, c.B, nullptr, c.layout.get(), nullptr, nullptr, false, &head, columns}, C_);
    const float* logits = run.forward(plan);
    all_ = DeviceBuffer(be_, sizeof(float) * c.B * c.max_new * C_);
    be_->copy_rows({logits, C_, nullptr, all_.as<float>(), C_, nullptr, c.B * c.max_new, C_});
    // sized for every position once, so that later steps' gathers never reallocate
    rows_ = DeviceBuffer(be_, sizeof(int64_t) * c.B * c.max_new);
    gathered_ = DeviceBuffer(be_, sizeof(float) * c.B * c.max_new * C_);
}

uint64_t UncondLogits::key() const {
    return reinterpret_cast<uintptr_t>(rows_.as<void>()) * 31 + reinterpret_cast<uintptr_t>(gathered_.as<void>()) * 7 +
           reinterpret_cast<uintptr_t>(all_.as<void>());
}

void UncondLogits::index(const SpeechCanvas& c, const Candidates& cand) {
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < cand.size(); ++i) {
        const auto& reg = c.region[cand.row[i]];
        rows.push_back(cand.row[i] * c.max_new + (std::lower_bound(reg.begin(), reg.end(), cand.pos[i]) - reg.begin()));
    }
    n_ = cand.size();
    if (!rows.empty()) be_->copy_to_device(rows_.as<void>(), rows.data(), sizeof(int64_t) * rows.size());
}

const float* UncondLogits::gather() {
    be_->copy_rows({all_.as<float>(), C_, rows_.as<int64_t>(), gathered_.as<float>(), C_, nullptr, n_, C_});
    return gathered_.as<float>();
}

}  // namespace

std::vector<std::vector<int32_t>> t2s_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas,
                                               const T2sParams& p, LoopControl& control, SamplerStats* stats) {
    SpeechCanvas c(engine, tokens, canvas, p);
    StepRunner run(engine, control, stats, c.B, p.seed, p.rows);
    const int64_t units = tokens.speech_codebook, C = units + 2;
    const std::vector<ColumnRange> columns{{0, tokens.speech_offset, units}, {units, tokens.eoa_id, 1}, {units + 1, tokens.eos_id, 1}};
    const bool scheduled = p.select == SelectRule::kTopK, cached = p.cache != CacheMode::kNone, cfg = p.cfg_scale > 0.0;
    const int64_t max_steps = scheduled ? c.inner : c.block;
    run.load_canvas(c.x, c.T, c.mask);
    run.load_steps(c.n_blocks * max_steps, scheduled ? c.k_table(max_steps) : std::vector<int32_t>{});
    KVCache cache;
    if (cached) engine.ensure_cache(cache, c.layout->slots());
    const CacheRefills refills(p.cache, p.refresh_every);
    std::unique_ptr<UncondLogits> uncond;
    if (cfg) uncond = std::make_unique<UncondLogits>(run, c, columns);
    StepSpec spec;  // CFG against the uncond logits computed once: u + (s + 1)(c - u); sampled commits
    spec.columns = &columns;
    spec.C = C;
    spec.cfg = cfg;
    spec.alpha = static_cast<float>(p.cfg_scale + 1.0);
    if (cfg) {
        spec.uncond = [&] { return uncond->gather(); };
        spec.key = uncond->key();
    }
    spec.rule = {TokenChoice::kCategorical, ConfidenceKind::kProbability, p.select, p.temperature, p.threshold, p.factor};
    StepPlan full, partial;
    for (int64_t blk = 0; blk < c.n_blocks && !run.running_rows().empty(); ++blk) {
        run.start_block(blk * max_steps);
        for (int64_t s = 0; s < (scheduled ? c.inner : c.hi(blk) - c.lo(blk)); ++s) {
            if (!run.begin_step()) {
                run.finish(c.x);
                return c.units();
            }
            if (!run.plans_per_block() || s == 0) {
                if (s > 0) run.pull_canvas(c.x);
                Candidates cand = c.candidates(blk, run);
                if (cand.empty()) break;
                const std::vector<int64_t> head = head_slots(*c.layout, cand, c.B, 1);
                if (refills(s) || run.plans_per_block()) {
                    const std::vector<int64_t> rows = row_slots(*c.layout, run.running_rows(), c.B, 1);
                    run.prepare(full, cand, {nullptr, c.B, nullptr, c.layout.get(), &rows, cached ? &cache : nullptr, cached, &head, columns}, C);
                }
                if (cached && (!refills(s) || run.plans_per_block())) {
                    const std::vector<int64_t> span = slots_in(*c.layout, c.recomputed(blk, run, p.cache), 1);
                    run.prepare(partial, cand, {nullptr, c.B, nullptr, c.layout.get(), &span, &cache, false, &head, columns}, C);
                }
                if (cfg) uncond->index(c, cand);
            }
            run.step(refills(s) ? full : partial, spec);
            if (!scheduled && run.plans_per_block() && run.remaining() == 0) break;
        }
        run.block_done(blk, c.x);
    }
    return c.units();
}

}  // namespace dynin_rt
