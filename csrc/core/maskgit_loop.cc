// The MaskGIT image sampler (model-spec §7.2) in C++: text-to-image and image editing.
//
// Per step one forward over the cond stream and, for CFG, the uncond stream
// uncond[:, :resolution+1] + cond[:, resolution+1:] as a batch of two; the LM head only on the
// still-unknown image positions and only over the 8192 image columns; (1+g) c - g u; then
// maskgit_step re-masks the lowest-scored samples. Returns the last step's samples, as the official
// sampler does.
#include <chrono>

#include "dynin_rt/common.h"
#include "dynin_rt/loop_support.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

std::vector<int32_t> maskgit_generate(const Engine& engine, const TokenLayout& tokens, const std::vector<int32_t>& canvas,
                                      const std::vector<uint8_t>& keep, const std::vector<int32_t>& uncond_canvas,
                                      const std::vector<uint8_t>& uncond_keep, int64_t batch, const MaskgitParams& p,
                                      SamplerStats* stats) {
    using Clock = std::chrono::steady_clock;
    const int64_t T = check_canvas(engine, canvas, batch, "canvas"), N = p.n_tokens;
    const int64_t steps = static_cast<int64_t>(p.schedule.size());
    DYNIN_CHECK_ARG(tokens.image_offset >= 0, "this model has no image rows (or no tokenizer to place them)");
    DYNIN_CHECK_ARG(N > 0 && T >= N + 2, "canvas of ", T, " tokens cannot hold ", N, " image tokens and <|eoi|>");
    DYNIN_CHECK_ARG(steps > 0, "timesteps must be positive");
    DYNIN_CHECK_ARG(keep.size() == canvas.size(), "attention mask must match the canvas");
    const bool cfg = !uncond_canvas.empty() && p.guidance_scale > 0.0;
    if (cfg) {
        DYNIN_CHECK_ARG(uncond_canvas.size() == canvas.size() && uncond_keep.size() == canvas.size(),
                        "the unconditional canvas and mask must have the canvas's shape");
        check_canvas(engine, uncond_canvas, batch, "uncond canvas");
        // resolution + 1 >= T makes the uncond stream the whole uncond canvas, as slicing does
        DYNIN_CHECK_ARG(p.resolution >= 0, "resolution must be >= 0");
    }
    DYNIN_CHECK_ARG(p.temperature >= 0 && p.guidance_scale >= 0, "temperature and guidance_scale must be >= 0");
    const int32_t mask = static_cast<int32_t>(tokens.mask_id);
    const int64_t region = T - N - 1, offset = tokens.image_offset, codebook = tokens.image_codebook;
    Backend* be = engine.backend();
    SamplerStats local;
    StepRunner run(engine, stats ? *stats : local);
    SamplerStats& st = run.stats();

    const int64_t rows = cfg ? 2 * batch : batch;
    std::vector<int32_t> x(static_cast<size_t>(rows * T));
    std::vector<uint8_t> keep_all(static_cast<size_t>(rows * T));
    std::copy(canvas.begin(), canvas.end(), x.begin());
    std::copy(keep.begin(), keep.end(), keep_all.begin());
    if (cfg) std::copy(uncond_keep.begin(), uncond_keep.end(), keep_all.begin() + batch * T);
    // codes: committed code per image position, -1 while masked
    std::vector<int32_t> codes(static_cast<size_t>(batch * N)), last(static_cast<size_t>(batch * N));
    bool any_unknown = false;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t n = 0; n < N; ++n) {
            const int32_t id = canvas[b * T + region + n];
            DYNIN_CHECK_ARG(id == mask || (id >= offset && id < offset + codebook), "image region holds token ", id,
                            ", neither [MASK] nor an image code");
            codes[b * N + n] = id == mask ? -1 : id - static_cast<int32_t>(offset);
            last[b * N + n] = codes[b * N + n];
            any_unknown |= id == mask;
        }
    DYNIN_CHECK_ARG(any_unknown, "the image region has no [MASK] position to generate");
    const CanvasLayout layout(rows, T, keep_all.data());
    const std::vector<ColumnRange> columns{{0, offset, codebook}};

    Workspace ws;
    DeviceBuffer d_codes(be, sizeof(int32_t) * batch * N), d_last(be, sizeof(int32_t) * batch * N), d_row, d_index;
    double temperature = p.temperature;
    for (int64_t step = 0; step < steps; ++step) {
        if (cfg)
            for (int64_t b = 0; b < batch; ++b)
                for (int64_t t = 0; t < T; ++t)
                    x[(batch + b) * T + t] = t <= p.resolution ? uncond_canvas[b * T + t] : x[b * T + t];
        std::vector<int32_t> cand_row, cand_index;
        std::vector<int64_t> keep_masked(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) {
            int64_t unknown = 0;
            for (int64_t n = 0; n < N; ++n)
                if (codes[b * N + n] < 0) {
                    cand_row.push_back(static_cast<int32_t>(b));
                    cand_index.push_back(static_cast<int32_t>(n));
                    ++unknown;
                }
            keep_masked[b] = std::max<int64_t>(1, std::min<int64_t>(unknown - 1, p.schedule[step]));
        }
        const int64_t n_cand = static_cast<int64_t>(cand_row.size());
        std::vector<int64_t> head;
        for (int64_t r = 0; r < (cfg ? 2 : 1); ++r)
            for (int64_t c = 0; c < n_cand; ++c) {
                const int64_t slot = layout.pos_slot[(r * batch + cand_row[c]) * T + region + cand_index[c]];
                DYNIN_CHECK_ARG(slot >= 0, "an image position is masked out by the attention mask");
                head.push_back(slot);
            }
        ForwardArgs fa;
        fa.tokens = x.data();
        fa.layout = &layout;
        fa.head_slots = &head;
        fa.columns = columns;
        const float* logits = run.forward(fa, ws);
        if (cfg)
            logits = run.guide(logits + n_cand * codebook, logits, n_cand * codebook, static_cast<float>(1.0 + p.guidance_scale),
                               static_cast<float>(p.guidance_scale), Backend::CfgForm::kMaskgit);
        const auto t0 = Clock::now();
        const double ratio = static_cast<double>(step + 1) / static_cast<double>(steps);
        temperature = temperature * (1.0 - ratio);  // compounds across steps, as the official sampler
        d_row.ensure(be, sizeof(int32_t) * std::max<int64_t>(n_cand, 1));
        d_index.ensure(be, sizeof(int32_t) * std::max<int64_t>(n_cand, 1));
        be->copy_to_device(d_row.as<void>(), cand_row.data(), sizeof(int32_t) * n_cand);
        be->copy_to_device(d_index.as<void>(), cand_index.data(), sizeof(int32_t) * n_cand);
        be->copy_to_device(d_codes.as<void>(), codes.data(), sizeof(int32_t) * batch * N);
        be->copy_to_device(d_last.as<void>(), last.data(), sizeof(int32_t) * batch * N);
        MaskgitStepParams mp;
        mp.logits = logits;
        mp.ld = codebook;
        mp.n_cand = n_cand;
        mp.n_codes = codebook;
        mp.cand_row = d_row.as<int32_t>();
        mp.cand_index = d_index.as<int32_t>();
        mp.codes = d_codes.as<int32_t>();
        mp.last_sample = d_last.as<int32_t>();
        mp.batch = batch;
        mp.n_tokens = N;
        mp.keep_masked = keep_masked.data();
        mp.temperature = temperature;
        mp.seed = p.seed;
        mp.step = step;
        be->maskgit_step(mp);
        be->copy_to_host(codes.data(), d_codes.as<void>(), sizeof(int32_t) * batch * N);
        be->copy_to_host(last.data(), d_last.as<void>(), sizeof(int32_t) * batch * N);
        int32_t still_masked = 0;
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t n = 0; n < N; ++n) {
                x[b * T + region + n] = codes[b * N + n] < 0 ? mask : static_cast<int32_t>(offset) + codes[b * N + n];
                still_masked += codes[b * N + n] < 0;
            }
        st.seconds_sample += std::chrono::duration<double>(Clock::now() - t0).count();
        ++st.steps;
        st.committed_per_step.push_back(static_cast<int32_t>(n_cand) - still_masked);  // known positions stay known
    }
    return last;
}

}  // namespace dynin_rt
