// The transformer forward over a token canvas, written once against backend.h.
//
// A canvas is [B, T] token ids plus an optional keep-mask. Positions with keep = 0 ([iPAD]) are
// dropped entirely: they are masked keys and their rows are never read, so skipping them is exact,
// while the kept tokens keep their true RoPE positions. The kept positions of all rows form the
// "slots" of a CanvasLayout; a forward computes some slots (all of them, or the active block when
// reusing a KV cache) and the LM head only for the slots and vocabulary columns a sampler reads.
#pragma once
#include <memory>
#include <vector>

#include "dynin_rt/backend.h"
#include "dynin_rt/model_config.h"
#include "dynin_rt/weights.h"

namespace dynin_rt {

// RoPE tables sin, cos [max_pos, head_dim / 2]: angle pos * theta^(-2j / head_dim), computed in
// double and rounded once.
void rope_tables(int64_t max_pos, int64_t head_dim, double theta, std::vector<float>* sin, std::vector<float>* cos);

struct CanvasLayout {
    int64_t batch = 0, length = 0;
    std::vector<int64_t> row_start;  // [B + 1] first slot of each row
    std::vector<int32_t> slot_pos;   // [S] canvas position of each slot
    std::vector<int64_t> pos_slot;   // [B * T] slot of each position, -1 for dropped pads

    // keep: [B, T] (1 real, 0 pad) or null (every position is computed and attended).
    CanvasLayout(int64_t batch, int64_t length, const uint8_t* keep);
    int64_t slots() const { return static_cast<int64_t>(slot_pos.size()); }
    int64_t row_of_slot(int64_t slot) const;
};

// Keys and values of every slot, per layer, kept across the steps of a block (Fast-dLLM prefix and
// dual cache). Filled by a full forward, then partly rewritten by each cached step.
struct KVCache {
    DeviceBuffer k, v;  // [n_layers, S, D] each
    int64_t slots = 0;
};

// Scratch memory of one call's forwards (one per call keeps concurrent calls independent).
struct Workspace {
    DeviceBuffer x, h, qkv, attn, gate_up, act;  // fp32 activations
    DeviceBuffer head_in, logits;                // [R, 2D], [R, C]
};

// One forward: which slots to compute, against which keys, and which logits to return.
//   no cache:               `active` is every slot (null) or whole rows (finished rows left out);
//                           each row attends to its own active slots
//   cache, fill_cache:      the same, and the K/V of the computed slots are stored in the cache
//   cache, not fill_cache:  any sorted subset of slots is recomputed (its K/V rewritten); every row
//                           attends to all its cached slots
// Token ids come from the canvas in backend memory: layout row r reads canvas row r % canvas_rows
// (the unconditional stream of CFG reads the conditional rows), except where `overrides` (host
// [layout rows, T], -1 = none) names another token (the uncond stream's masked prompt or prefix).
struct ForwardArgs {
    const int32_t* canvas = nullptr;          // backend memory [canvas_rows, T]
    int64_t canvas_rows = 0;
    const int32_t* overrides = nullptr;       // host [layout rows, T] or null
    const CanvasLayout* layout = nullptr;
    const std::vector<int64_t>* active = nullptr;  // sorted slots to compute; null = every slot
    KVCache* cache = nullptr;                 // null: no reuse
    bool fill_cache = false;
    const std::vector<int64_t>* head_slots = nullptr;  // sorted slots whose logits are returned, all active
    std::vector<ColumnRange> columns;         // vocabulary columns of the LM head, in output order
};

// A forward's index arrays in backend memory, built once by Engine::prepare and run any number of
// times: the steps of a block reuse one, only the canvas it reads changes. Running needs no host work,
// so a backend can capture it.
struct PreparedForward {
    int64_t M = 0, R = 0, C = 0, batch = 0, slots = 0;  // computed slots, head rows, logit columns
    std::vector<int64_t> q_start, k_start;  // [B + 1] attention segments (kernel parameters)
    std::vector<ColumnRange> columns;
    KVCache* cache = nullptr;
    bool fill_cache = false;
    DeviceBuffer token_index;  // int64 [M] canvas index of each computed slot, or -1: take token_override
    DeviceBuffer token_override, positions;  // int32 [M] each
    DeviceBuffer active_rows, head_rows;     // int64 [M] (cache only), [R]
};

class Engine {
 public:
    Engine(const ModelConfig& cfg, std::shared_ptr<const ModelWeights> weights, std::unique_ptr<Backend> backend);

    const ModelConfig& config() const { return cfg_; }
    Backend* backend() const { return backend_.get(); }

    // Logits [R, C] of the head slots over the requested columns, in backend memory owned by ws.
    const float* forward(const ForwardArgs& args, Workspace& ws) const;
    // The same in two parts: the host work and uploads into f (its buffers grow, never shrink), then
    // the device work (no allocation once the workspace has held a forward of this size: reserve()).
    void prepare(const ForwardArgs& args, PreparedForward& f) const;
    const float* run(const PreparedForward& f, const int32_t* canvas, Workspace& ws) const;
    void reserve(const PreparedForward& f, Workspace& ws) const;
    void ensure_cache(KVCache& cache, int64_t slots) const;

 private:
    ModelConfig cfg_;
    std::shared_ptr<const ModelWeights> weights_;
    std::unique_ptr<Backend> backend_;
    std::vector<DeviceBuffer> storage_;  // weights copied to the backend, when they had to be
    void layer(int64_t l, const PreparedForward& f, Workspace& ws) const;
    const float* lm_head(const PreparedForward& f, Workspace& ws) const;
    // y = x . w^T for one weight matrix: the backend's packed copy when it made one and it pays off
    // for m rows, else the row-major weights. row0: first weight row (the LM head's column ranges).
    void matmul(const float* x, int64_t ldx, const void* w, const void* packed, int64_t n, int64_t k, float* y, int64_t ldy,
                int64_t m, bool accumulate, int64_t row0 = 0) const;

    WeightSet w_;
    WeightSet packed_;  // the backend's packed copies (null pointers where it keeps row-major weights)
    DeviceBuffer rope_sin_, rope_cos_;    // [max_seq_len, head_dim / 2]
};

}  // namespace dynin_rt
