// The three denoising loops in C++ (model-spec §7), one call per request, no per-step Python.
// Exact mode reproduces dynin_rt.reference with CounterNoise(seed) token for token; fast mode
// (KV reuse + threshold / factor decoding) is opt-in and approximate.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "dynin_rt/engine.h"

namespace dynin_rt {

enum class CacheMode : uint8_t { kNone, kPrefix, kDual };

struct SamplerStats {
    int64_t forwards = 0;  // engine calls (a CFG pair counts once)
    int64_t steps = 0;
    std::vector<int32_t> committed_per_step;  // summed over the batch
    double seconds_forward = 0.0;             // engine forward (the LM head included)
    double seconds_sample = 0.0;              // choice, selection, commit, CFG combination
};

// Called after each finished block with the canvas (host [B, T]); for streaming.
using BlockCallback = std::function<void(int64_t block, const std::vector<int32_t>& canvas)>;

struct LladaParams {
    int64_t gen_length = 128, steps = 128, block_length = 128;
    double temperature = 0.0, cfg_scale = 0.0;
    bool random_remasking = false;
    SelectRule select = SelectRule::kTopK;  // kTopK: the exact schedule; others: fast decoding
    double threshold = 0.9, factor = 1.0;
    CacheMode cache = CacheMode::kNone;
    uint64_t seed = 0;
};

// prompt [B, P]; keep [B, P] or null -> canvas [B, P + gen_length]
std::vector<int32_t> llada_generate(const Engine& engine, const TokenLayout& tokens, const std::vector<int32_t>& prompt,
                                    int64_t batch, const std::vector<uint8_t>* keep, const LladaParams& params,
                                    SamplerStats* stats, const BlockCallback& on_block);

struct MaskgitParams {
    int64_t n_tokens = 1024;            // N: the image region is canvas[:, T-N-1 : T-1]
    std::vector<int64_t> schedule;      // [steps] floor(N * cos(pi/2 (s+1)/steps)) as the reference computes it
    double temperature = 1.0, guidance_scale = 0.0;
    int64_t resolution = 512;           // the uncond stream is uncond[:, :resolution+1] + cond[:, resolution+1:]
    uint64_t seed = 0;
};

// canvas [B, T] with keep [B, T]; uncond canvas/keep [B, T] or empty (no CFG) -> codes [B, N]
std::vector<int32_t> maskgit_generate(const Engine& engine, const TokenLayout& tokens, const std::vector<int32_t>& canvas,
                                      const std::vector<uint8_t>& keep, const std::vector<int32_t>& uncond_canvas,
                                      const std::vector<uint8_t>& uncond_keep, int64_t batch, const MaskgitParams& params,
                                      SamplerStats* stats);

struct T2sParams {
    int64_t max_new_tokens = -1;  // -1: the whole masked region
    int64_t steps = 256, block_length = 128;
    double temperature = 0.0, cfg_scale = 0.0;
    SelectRule select = SelectRule::kTopK;
    double threshold = 0.9, factor = 1.0;
    CacheMode cache = CacheMode::kNone;
    uint64_t seed = 0;
};

// canvas [B, T] with keep [B, T] or null -> per row the speech units (cut at the first end token)
std::vector<std::vector<int32_t>> t2s_generate(const Engine& engine, const TokenLayout& tokens,
                                               const std::vector<int32_t>& canvas, const std::vector<uint8_t>* keep,
                                               int64_t batch, const T2sParams& params, SamplerStats* stats,
                                               const BlockCallback& on_block);

// How many masked tokens each step commits: n // steps each, the first n % steps steps one more.
std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps);

}  // namespace dynin_rt
