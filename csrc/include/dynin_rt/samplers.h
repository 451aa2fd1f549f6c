// The three denoising loops in C++ (docs/samplers.md), one call per request batch, no per-step Python.
// Exact mode reproduces dynin_rt.reference with CounterNoise(seed) token for token; fast mode
// (KV reuse + threshold / factor decoding) is opt-in and approximate.
//
// A batch is B token rows. Rows may have different lengths (a ragged batch, as a server builds from
// independent requests): a row's tail past its length is absent, never computed or attended, so each
// row keeps the positions it would have alone. Each row may carry its own seed and noise row, its
// own cancel token and (text) its own number of new tokens, and finishes on its own.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dynin_rt/engine.h"

namespace dynin_rt {

// KV reuse across the steps of a block (fast mode; docs/fast-mode.md). kPrefix: a cached step
// recomputes the block and what follows it; kDual: the block only (images: the positions that were
// masked at the last refresh). Everything else keeps the K/V of the block's first step, or of the
// last refresh: with `refresh_every` = N > 0 every N-th step of a block is a full forward again.
enum class CacheMode : uint8_t { kNone, kPrefix, kDual };

// Token rows handed to a loop.
struct TokenRows {
    int64_t batch = 0, length = 0;
    std::vector<int32_t> ids;      // [B, T]
    std::vector<uint8_t> keep;     // [B, T] official keep-mask (0 = [iPAD]) or empty
    std::vector<int64_t> lengths;  // [B] real length of each row, or empty: every row is T long

    int64_t row_length(int64_t b) const { return lengths.empty() ? length : lengths[b]; }
    int32_t at(int64_t b, int64_t t) const { return ids[b * length + t]; }
    bool kept(int64_t b, int64_t t) const { return keep.empty() || keep[b * length + t]; }
    // Checks shape, lengths and every id of the row prefixes against the model; `name` labels errors.
    void validate(const Engine& engine, const char* name) const;
};

// Whose noise a row draws: counter noise keyed by (seed, stream, step, noise row, position, column).
// Empty vectors: every row uses the call's seed and row b noise row b (the reference's layout). A
// server gives each request its own seed and noise row 0, so that a request's tokens do not depend
// on what it was batched with.
struct RowNoise {
    std::vector<uint64_t> seed;       // [B] or empty
    std::vector<int64_t> noise_row;   // [B] or empty
};

// A flag another thread sets to stop work; copies share the flag.
class CancelToken {
 public:
    CancelToken() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
    void cancel() const { flag_->store(true, std::memory_order_relaxed); }
    bool cancelled() const { return flag_->load(std::memory_order_relaxed); }

 private:
    std::shared_ptr<std::atomic<bool>> flag_;
};

// Called after each finished block with the canvas (host [B, T]); for streaming.
using BlockCallback = std::function<void(int64_t block, const std::vector<int32_t>& canvas)>;

// Where a loop's plans come from (loop_support.h): kAuto makes them every step on a host-memory
// backend and once per block (device-resident steps) elsewhere; the others force one (tests).
enum class PlanMode : uint8_t { kAuto, kPerStep, kPerBlock };

// How the caller steers a running loop. Checked before every step, so a stop takes at most one step
// (with per-block plans a cancelled row stops at the end of the block; the call stops at the next step).
struct LoopControl {
    CancelToken all;               // stops the call: the loop throws Cancelled
    std::vector<CancelToken> rows;  // [B] or empty: a cancelled row stops; the others go on
    std::function<void()> poll;    // e.g. a Ctrl-C check; may throw to abort the call
    BlockCallback on_block;
    PlanMode plans = PlanMode::kAuto;
    bool graphs = true;  // record and replay device-resident steps where the backend can (CUDA graphs)
};

struct SamplerStats {
    int64_t forwards = 0;  // engine calls (a CFG pair counts once)
    int64_t positions = 0;  // canvas positions the forwards computed (a cached step computes fewer)
    int64_t steps = 0;
    std::vector<int32_t> committed_per_step;  // summed over the batch
    std::vector<uint8_t> cancelled_rows;      // [B]: 1 where a row's cancel token stopped it
    double seconds_forward = 0.0;             // engine forward (the LM head included); with per-block
                                              // plans the whole of each block (the device runs on)
    double seconds_sample = 0.0;              // guidance, choice, selection, commit (per-step plans)
    BackendCounters device;                   // what the backend did during the call
};

// Options of the LLaDA block sampler (text chat, image / video understanding, speech recognition).
struct LladaParams {
    int64_t gen_length = 128, steps = 128, block_length = 128;
    std::vector<int64_t> gen_lengths;  // [B] per-row new tokens (multiples of block_length) or empty
    double temperature = 0.0, cfg_scale = 0.0;
    bool random_remasking = false;
    SelectRule select = SelectRule::kTopK;  // kTopK: the exact schedule; others: fast decoding
    double threshold = 0.95, factor = 1.0;  // runtime.FAST_THRESHOLD
    CacheMode cache = CacheMode::kNone;
    int64_t refresh_every = 0;  // with a cache: a full forward every N-th step of a block (0: block starts only)
    uint64_t seed = 0;
    RowNoise rows;
};

// prompt rows [B, P] -> canvas [B, max(P_b + gen_b)]: row b's prompt, its new tokens, then its absent tail.
std::vector<int32_t> llada_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& prompt,
                                    const LladaParams& params, LoopControl& control, SamplerStats* stats);

// Options of the MaskGIT image sampler (text to image, image editing).
struct MaskgitParams {
    int64_t n_tokens = 1024;        // N: the image region is canvas[:, T-N-1 : T-1]
    std::vector<int64_t> schedule;  // [steps] floor(N * cos(pi/2 (s+1)/steps)) as the reference computes it
    double temperature = 1.0, guidance_scale = 0.0;
    int64_t resolution = 512;       // the uncond stream is uncond[:, :resolution+1] + cond[:, resolution+1:]
    // The approximate mode: the call is one block, its step 0 (and every refresh_every-th) fills the
    // cache, the steps between recompute the image region (kPrefix) or only the positions masked at
    // the last fill (kDual) against the cached prompt.
    CacheMode cache = CacheMode::kNone;
    int64_t refresh_every = 0;
    uint64_t seed = 0;
    RowNoise rows;
};

// canvas [B, T] with its keep-mask; uncond canvas [B, T] or null (no CFG) -> codes [B, N]
std::vector<int32_t> maskgit_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas,
                                      const TokenRows* uncond, const MaskgitParams& params, LoopControl& control,
                                      SamplerStats* stats);

// Options of the text-to-speech sampler.
struct T2sParams {
    int64_t max_new_tokens = -1;  // -1: the whole masked region
    int64_t steps = 256, block_length = 128;
    double temperature = 0.0, cfg_scale = 0.0;
    SelectRule select = SelectRule::kTopK;
    double threshold = 0.95, factor = 1.0;  // runtime.FAST_THRESHOLD
    CacheMode cache = CacheMode::kNone;
    int64_t refresh_every = 0;  // as LladaParams
    uint64_t seed = 0;
    RowNoise rows;
};

// canvas [B, T] (each row with the same number of [MASK] positions: its speech region) -> per row
// the speech units, cut at the first end token
std::vector<std::vector<int32_t>> t2s_generate(const Engine& engine, const TokenLayout& tokens, const TokenRows& canvas,
                                               const T2sParams& params, LoopControl& control, SamplerStats* stats);

// How many masked tokens each step commits: n // steps each, the first n % steps steps one more.
std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps);

}  // namespace dynin_rt
