// The MaskGIT image sampler (docs/samplers.md) in C++: text-to-image and image editing.
//
// Per step one forward over the cond stream and, for CFG, the uncond stream
// uncond[:, :resolution+1] + cond[:, resolution+1:] as a batch of two; the LM head only on the
// still-unknown image positions and only over the 8192 image columns; (1+g) c - g u; then
// maskgit_step re-masks the lowest-scored samples. Returns the last step's samples, as the official
// sampler does. The approximate mode (`cache`) reuses the prompt's K/V between refreshes.
#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

namespace {

// The cond rows [B, T] and, for CFG, a second stream of the layout: the unconditional stream, which
// reads the cond canvas except at positions <= resolution, where it has the uncond canvas's tokens
// (`overrides`). The image region of row b is [region[b], region[b] + N).
struct ImageCanvas {
    int64_t B = 0, T = 0, N = 0;
    int32_t mask = 0, offset = 0;
    bool cfg = false;
    std::vector<int64_t> region;           // [B]
    std::vector<int32_t> x, overrides;     // [B, T], [2B, T] with CFG
    std::vector<int32_t> codes, last;      // [B, N] committed code or -1; the last step's sample
    std::unique_ptr<CanvasLayout> layout;

    ImageCanvas(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas, const TokenRows* uncond_rows,
                const MaskgitParams& p);
    int64_t streams() const { return cfg ? 2 : 1; }
    Candidates unknown(const StepRunner& run) const;
    // Each running row's image region and what follows it (<|eoi|>, the rest of the row).
    RowRanges image_and_after(const StepRunner& run) const;
};

ImageCanvas::ImageCanvas(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas, const TokenRows* uncond_rows,
                         const MaskgitParams& p)
    : B(canvas.batch), T(canvas.length), N(p.n_tokens), mask(static_cast<int32_t>(tokens.mask_id)),
      offset(static_cast<int32_t>(tokens.image_offset)), cfg(uncond_rows && p.guidance_scale > 0.0), x(canvas.ids) {
    canvas.validate(engine, "canvas");
    DYNIN_CHECK_ARG(tokens.image_offset >= 0, "this model has no image rows (or no tokenizer to place them)");
    DYNIN_CHECK_ARG(!p.schedule.empty(), "timesteps must be positive");
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.guidance_scale >= 0, "temperature and guidance_scale must be >= 0");
    DYNIN_CHECK_ARG(p.resolution >= 0, "resolution must be >= 0");  // >= T makes the uncond stream the whole uncond canvas
    if (cfg) {
        uncond_rows->validate(engine, "uncond canvas");
        DYNIN_CHECK_ARG(uncond_rows->batch == B && uncond_rows->length == T && uncond_rows->lengths == canvas.lengths,
                        "the unconditional canvas must have the canvas's shape");
        overrides.assign(static_cast<size_t>(2 * B * T), -1);
    }
    std::vector<uint8_t> keep(static_cast<size_t>(streams() * B * T), 0);
    codes.assign(static_cast<size_t>(B * N), -1);
    bool any_unknown = false;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t len = canvas.row_length(b);
        DYNIN_CHECK_ARG(N > 0 && len >= N + 2, "a canvas of ", len, " tokens cannot hold ", N, " image tokens and <|eoi|>");
        region.push_back(len - N - 1);
        for (int64_t t = 0; t < len; ++t) {
            keep[b * T + t] = canvas.kept(b, t);
            if (!cfg) continue;
            keep[(B + b) * T + t] = uncond_rows->kept(b, t);
            if (t <= p.resolution) overrides[(B + b) * T + t] = uncond_rows->at(b, t);
        }
        for (int64_t n = 0; n < N; ++n) {
            const int32_t id = canvas.at(b, region[b] + n);
            DYNIN_CHECK_ARG(id == mask || (id >= offset && id < offset + tokens.image_codebook), "image region holds token ", id,
                            ", neither [MASK] nor an image code");
            codes[b * N + n] = id == mask ? -1 : id - offset;
            any_unknown |= id == mask;
        }
    }
    DYNIN_CHECK_ARG(any_unknown, "the image region has no [MASK] position to generate");
    last = codes;
    layout = std::make_unique<CanvasLayout>(streams() * B, T, keep.data());
}

Candidates ImageCanvas::unknown(const StepRunner& run) const {
    Candidates c;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N && run.running(b); ++n)
            if (codes[b * N + n] < 0) c.add(b, n);
    return c;
}

RowRanges ImageCanvas::image_and_after(const StepRunner& run) const {
    RowRanges r(B);
    for (int64_t b = 0; b < B; ++b) {
        if (!run.running(b)) continue;
        r.begin[b] = region[b];
        r.end[b] = T;  // an absent tail has no slots
    }
    return r;
}

// The temperature of every step: annealed by (1 - (s + 1) / steps), compounding as the official sampler.
std::vector<double> annealed(double temperature, int64_t steps) {
    std::vector<double> t;
    for (int64_t s = 0; s < steps; ++s) {
        temperature = temperature * (1.0 - static_cast<double>(s + 1) / static_cast<double>(steps));
        t.push_back(temperature);
    }
    return t;
}

}  // namespace

std::vector<int32_t> maskgit_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas,
                                      const TokenRows* uncond, const MaskgitParams& p, LoopControl& control,
                                      SamplerStats* stats) {
    ImageCanvas c(engine, tokens, canvas, uncond, p);
    StepRunner run(engine, control, stats, c.B, p.seed, p.rows);
    const int64_t codebook = tokens.image_codebook, steps = static_cast<int64_t>(p.schedule.size());
    const std::vector<ColumnRange> columns{{0, tokens.image_offset, codebook}};
    run.load_canvas(c.x, c.T, c.mask);
    run.load_maskgit(c.codes, c.N, c.region, c.offset, p.schedule, annealed(p.temperature, steps));
    run.start_block(0);
    StepSpec spec;  // MaskGIT's CFG: (1 + g) c - g u; the MaskGIT step
    spec.columns = &columns;
    spec.C = codebook;
    spec.cfg = c.cfg;
    spec.alpha = static_cast<float>(1.0 + p.guidance_scale);
    spec.beta = static_cast<float>(p.guidance_scale);
    spec.form = Backend::CfgForm::kMaskgit;
    spec.maskgit = true;
    const bool cached = p.cache != CacheMode::kNone;
    KVCache cache;
    if (cached) engine.ensure_cache(cache, c.layout->slots());
    const CacheRefills refills(p.cache, p.refresh_every);
    const int32_t* overrides = c.cfg ? c.overrides.data() : nullptr;
    // kDual recomputes the positions masked at the last fill: the candidates then (the ones committed
    // since changed their input, the rest still need logits), as canvas positions
    Candidates filled_unknown;
    StepPlan full, partial;
    for (int64_t step = 0; step < steps && run.begin_step(); ++step) {
        // per-block plans are made at each fill (with a cache, the span a cached step recomputes
        // follows the codes then); per-step plans every step
        if (!run.plans_per_block() || step == 0 || (cached && refills(step))) {
            if (step > 0) run.pull_codes(c.codes, c.last);
            const Candidates cand = c.unknown(run);
            // head rows: each candidate's region position (the rows' regions differ in a ragged batch)
            Candidates at_canvas = cand;
            for (int64_t i = 0; i < cand.size(); ++i) at_canvas.pos[i] += static_cast<int32_t>(c.region[cand.row[i]]);
            const std::vector<int64_t> head = head_slots(*c.layout, at_canvas, c.B, c.streams());
            if (refills(step) || run.plans_per_block()) {
                const std::vector<int64_t> rows = row_slots(*c.layout, run.running_rows(), c.B, c.streams());
                run.prepare(full, cand, {nullptr, c.B, overrides, c.layout.get(), &rows, cached ? &cache : nullptr, cached, &head,
                                         columns}, codebook);
                filled_unknown = at_canvas;
            }
            if (cached && (!refills(step) || run.plans_per_block())) {
                const std::vector<int64_t> span = p.cache == CacheMode::kDual
                                                      ? head_slots(*c.layout, filled_unknown, c.B, c.streams())
                                                      : slots_in(*c.layout, c.image_and_after(run), c.streams());
                run.prepare(partial, cand, {nullptr, c.B, overrides, c.layout.get(), &span, &cache, false, &head, columns},
                            codebook);
            }
        }
        run.step(refills(step) ? full : partial, spec);
    }
    run.pull_codes(c.codes, c.last);
    run.finish(c.x);
    return c.last;
}

}  // namespace dynin_rt
