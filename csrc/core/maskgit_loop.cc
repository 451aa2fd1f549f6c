// The MaskGIT image sampler (docs/samplers.md) in C++: text-to-image and image editing.
//
// Per step one forward over the cond stream and, for CFG, the uncond stream
// uncond[:, :resolution+1] + cond[:, resolution+1:] as a batch of two; the LM head only on the
// still-unknown image positions and only over the 8192 image columns; (1+g) c - g u; then
// maskgit_step re-masks the lowest-scored samples. Returns the last step's samples, as the official
// sampler does.
#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

namespace {

// Cond rows, then for CFG the uncond stream; the image region of row b is [region[b], region[b] + N).
struct ImageCanvas {
    int64_t B = 0, T = 0, N = 0, resolution = 0;
    int32_t mask = 0, offset = 0;
    bool cfg = false;
    std::vector<int64_t> region;           // [B]
    std::vector<int32_t> x, uncond;        // [streams * B, T], [B, T]
    std::vector<int32_t> codes, last;      // [B, N] committed code or -1; this step's sample
    std::unique_ptr<CanvasLayout> layout;

    ImageCanvas(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas, const TokenRows* uncond_rows,
                const MaskgitParams& p);
    int64_t streams() const { return cfg ? 2 : 1; }
    void build_uncond_stream();
    Candidates unknown(const StepRunner& run) const;
    void write_codes();
};

ImageCanvas::ImageCanvas(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas, const TokenRows* uncond_rows,
                         const MaskgitParams& p)
    : B(canvas.batch), T(canvas.length), N(p.n_tokens), resolution(p.resolution), mask(static_cast<int32_t>(tokens.mask_id)),
      offset(static_cast<int32_t>(tokens.image_offset)), cfg(uncond_rows && p.guidance_scale > 0.0) {
    canvas.validate(engine, "canvas");
    DYNIN_CHECK_ARG(tokens.image_offset >= 0, "this model has no image rows (or no tokenizer to place them)");
    DYNIN_CHECK_ARG(!p.schedule.empty(), "timesteps must be positive");
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.guidance_scale >= 0, "temperature and guidance_scale must be >= 0");
    DYNIN_CHECK_ARG(p.resolution >= 0, "resolution must be >= 0");  // >= T makes the uncond stream the whole uncond canvas
    if (cfg) {
        uncond_rows->validate(engine, "uncond canvas");
        DYNIN_CHECK_ARG(uncond_rows->batch == B && uncond_rows->length == T && uncond_rows->lengths == canvas.lengths,
                        "the unconditional canvas must have the canvas's shape");
        uncond = uncond_rows->ids;
    }
    x.assign(static_cast<size_t>(streams() * B * T), mask);
    std::copy(canvas.ids.begin(), canvas.ids.end(), x.begin());
    std::vector<uint8_t> keep(static_cast<size_t>(streams() * B * T), 0);
    codes.assign(static_cast<size_t>(B * N), -1);
    bool any_unknown = false;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t len = canvas.row_length(b);
        DYNIN_CHECK_ARG(N > 0 && len >= N + 2, "a canvas of ", len, " tokens cannot hold ", N, " image tokens and <|eoi|>");
        region.push_back(len - N - 1);
        for (int64_t t = 0; t < len; ++t) {
            keep[b * T + t] = canvas.kept(b, t);
            if (cfg) keep[(B + b) * T + t] = uncond_rows->kept(b, t);
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

void ImageCanvas::build_uncond_stream() {
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t) x[(B + b) * T + t] = t <= resolution ? uncond[b * T + t] : x[b * T + t];
}

Candidates ImageCanvas::unknown(const StepRunner& run) const {
    Candidates c;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N && run.running(b); ++n)
            if (codes[b * N + n] < 0) c.add(b, n);
    return c;
}

void ImageCanvas::write_codes() {
    for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N; ++n) x[b * T + region[b] + n] = codes[b * N + n] < 0 ? mask : offset + codes[b * N + n];
}

}  // namespace

std::vector<int32_t> maskgit_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas,
                                      const TokenRows* uncond, const MaskgitParams& p, LoopControl& control,
                                      SamplerStats* stats) {
    ImageCanvas c(engine, tokens, canvas, uncond, p);
    StepRunner run(engine, control, stats, c.B, p.seed, p.rows);
    const int64_t codebook = tokens.image_codebook, steps = static_cast<int64_t>(p.schedule.size());
    const std::vector<ColumnRange> columns{{0, tokens.image_offset, codebook}};
    double temperature = p.temperature;
    for (int64_t step = 0; step < steps; ++step) {
        if (!run.begin_step()) break;
        if (c.cfg) c.build_uncond_stream();
        const Candidates cand = c.unknown(run);
        std::vector<int64_t> keep_masked(static_cast<size_t>(c.B), 0);
        for (int64_t i = 0; i < cand.size(); ++i) ++keep_masked[cand.row[i]];  // unknown per row
        for (int64_t& k : keep_masked) k = std::max<int64_t>(1, std::min<int64_t>(k - 1, p.schedule[step]));
        // head rows: each candidate's region position (rows' regions differ in a ragged batch)
        Candidates at_canvas = cand;
        for (int64_t i = 0; i < cand.size(); ++i) at_canvas.pos[i] += static_cast<int32_t>(c.region[cand.row[i]]);
        const std::vector<int64_t> active = row_slots(*c.layout, run.running_rows(), c.B, c.streams());
        const std::vector<int64_t> head = head_slots(*c.layout, at_canvas, c.B, c.streams());
        const float* logits = run.forward({c.x.data(), c.layout.get(), &active, nullptr, false, &head, columns});
        if (c.cfg)
            logits = run.guide(logits + cand.size() * codebook, logits, cand.size() * codebook,
                               static_cast<float>(1.0 + p.guidance_scale), static_cast<float>(p.guidance_scale),
                               Backend::CfgForm::kMaskgit);
        const double ratio = static_cast<double>(step + 1) / static_cast<double>(steps);
        temperature = temperature * (1.0 - ratio);  // compounds across steps, as the official sampler
        run.maskgit({logits, codebook, &columns}, cand, keep_masked, temperature, step, c.codes, c.last, c.N);
        c.write_codes();
    }
    return c.last;
}

}  // namespace dynin_rt
