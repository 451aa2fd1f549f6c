#include "dynin_rt/engine.h"

#include <cmath>

#include "dynin_rt/common.h"

namespace dynin_rt {

CanvasLayout::CanvasLayout(int64_t batch_, int64_t length_, const uint8_t* keep) : batch(batch_), length(length_) {
    row_start.push_back(0);
    pos_slot.assign(static_cast<size_t>(batch * length), -1);
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t t = 0; t < length; ++t) {
            if (keep && !keep[b * length + t]) continue;
            pos_slot[b * length + t] = static_cast<int64_t>(slot_pos.size());
            slot_pos.push_back(static_cast<int32_t>(t));
        }
        row_start.push_back(static_cast<int64_t>(slot_pos.size()));
    }
}

int64_t CanvasLayout::row_of_slot(int64_t slot) const {
    int64_t b = 0;
    while (row_start[b + 1] <= slot) ++b;
    return b;
}

void rope_tables(int64_t max_pos, int64_t head_dim, double theta, std::vector<float>* sin, std::vector<float>* cos) {
    // The reference builds the angles in fp32 (inv_freq = 1 / theta^(2j/D), angle = pos * inv_freq,
    // each rounded to fp32); the rounding of large angles dominates its error, so it is reproduced
    // here. sin and cos of the fp32 angle are then taken in double and rounded once.
    const int64_t half = head_dim / 2;
    sin->assign(static_cast<size_t>(max_pos * half), 0.0f);
    cos->assign(static_cast<size_t>(max_pos * half), 0.0f);
    for (int64_t j = 0; j < half; ++j) {
        const float exponent = static_cast<float>(2 * j) / static_cast<float>(head_dim);
        const float base = static_cast<float>(std::pow(static_cast<double>(static_cast<float>(theta)), static_cast<double>(exponent)));
        const float inv_freq = 1.0f / base;
        for (int64_t pos = 0; pos < max_pos; ++pos) {
            const float angle = static_cast<float>(pos) * inv_freq;
            (*sin)[pos * half + j] = static_cast<float>(std::sin(static_cast<double>(angle)));
            (*cos)[pos * half + j] = static_cast<float>(std::cos(static_cast<double>(angle)));
        }
    }
}

namespace {

// fp32 packed copies beat sgemm up to about this many activation rows (bf16 ones always win).
constexpr int64_t kPackedRows = 64;

template <typename T>
T* ensure(DeviceBuffer& buf, Backend* backend, int64_t count) {
    buf.ensure(backend, sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1)));
    return buf.as<T>();
}

}  // namespace

Engine::Engine(const ModelConfig& cfg, std::shared_ptr<const ModelWeights> weights, std::unique_ptr<Backend> backend)
    : cfg_(cfg), weights_(std::move(weights)), backend_(std::move(backend)) {
    cfg_.validate();
    w_ = weights_->place(backend_.get(), &storage_);
    // Packed copies: the layout the backend's GEMM streams fastest (CPU: 16-row panels).
    const int64_t d = cfg_.d_model, h = cfg_.mlp_hidden;
    auto pack = [&](const void* w, int64_t n, int64_t k) { return backend_->pack_weights(w, w_.dtype, n, k, &storage_); };
    packed_.dtype = w_.dtype;
    packed_.layers.resize(w_.layers.size());
    for (size_t l = 0; l < w_.layers.size(); ++l) {
        const LayerWeights& src = w_.layers[l];
        LayerWeights& dst = packed_.layers[l];
        dst.wqkv = pack(src.wqkv, 3 * d, d);
        dst.wo = pack(src.wo, d, d);
        dst.w_gate_up = pack(src.w_gate_up, 2 * h, d);
        dst.w_down = pack(src.w_down, d, h);
    }
    packed_.lm_head = pack(w_.lm_head, cfg_.vocab_size, d);
    std::vector<float> s, c;
    rope_tables(cfg_.max_seq_len, cfg_.head_dim(), cfg_.rope_theta, &s, &c);
    rope_sin_ = DeviceBuffer(backend_.get(), sizeof(float) * s.size());
    rope_cos_ = DeviceBuffer(backend_.get(), sizeof(float) * c.size());
    backend_->copy_to_device(rope_sin_.as<void>(), s.data(), sizeof(float) * s.size());
    backend_->copy_to_device(rope_cos_.as<void>(), c.data(), sizeof(float) * c.size());
}

void Engine::matmul(const float* x, int64_t ldx, const void* w, const void* packed, int64_t n, int64_t k, float* y,
                    int64_t ldy, int64_t m, bool accumulate, int64_t row0) const {
    GemmParams g{x, ldx, w, w_.dtype, k, y, ldy, m, n, k, accumulate};
    if (packed && (w_.dtype != DType::F32 || m <= kPackedRows)) {
        g.w = packed;
        g.w_packed = true;
        g.w_row0 = row0;
    } else {
        g.w = static_cast<const char*>(w) + dtype_size(w_.dtype) * row0 * k;
    }
    backend_->gemm(g);
}

void Engine::ensure_cache(KVCache& cache, int64_t slots) const {
    const size_t bytes = sizeof(float) * static_cast<size_t>(cfg_.n_layers * slots * cfg_.d_model);
    cache.k.ensure(backend_.get(), bytes);
    cache.v.ensure(backend_.get(), bytes);
    cache.slots = slots;
}

// What a forward computes, on the host: the active slots with their ids and positions, and the
// attention segments (per row: its queries among the active slots, its keys in the K/V source).
struct Engine::Plan {
    std::vector<int64_t> active;            // [M] slots, sorted
    std::vector<int32_t> ids, positions;    // [M]
    std::vector<int64_t> q_start, k_start;  // [B + 1]
};

Engine::Plan Engine::plan(const ForwardArgs& a) const {
    const CanvasLayout& lay = *a.layout;
    Plan p;
    if (a.active) {
        p.active = *a.active;
    } else {
        p.active.resize(static_cast<size_t>(lay.slots()));
        for (int64_t i = 0; i < lay.slots(); ++i) p.active[i] = i;
    }
    const int64_t M = static_cast<int64_t>(p.active.size());
    DYNIN_CHECK_ARG(M > 0, "forward: nothing to compute");
    p.ids.resize(static_cast<size_t>(M));
    p.positions.resize(static_cast<size_t>(M));
    p.q_start.assign(static_cast<size_t>(lay.batch + 1), 0);
    int64_t b = 0;
    for (int64_t i = 0; i < M; ++i) {
        const int64_t slot = p.active[i];
        DYNIN_CHECK_ARG(slot >= 0 && slot < lay.slots() && (i == 0 || slot > p.active[i - 1]), "forward: active slots must be sorted");
        while (lay.row_start[b + 1] <= slot) p.q_start[++b] = i;
        p.positions[i] = lay.slot_pos[slot];
        p.ids[i] = a.tokens[b * lay.length + p.positions[i]];
        DYNIN_CHECK_ARG(p.ids[i] >= 0 && p.ids[i] < cfg_.vocab_size, "token id ", p.ids[i], " outside [0, ", cfg_.vocab_size, ")");
    }
    while (b < lay.batch) p.q_start[++b] = M;
    const bool partial_rows = a.cache && !a.fill_cache;
    if (partial_rows) {
        p.k_start = lay.row_start;  // keys: every cached slot of the row
    } else {
        // keys: the row's own computed slots, which must be the whole row
        for (int64_t r = 0; r < lay.batch; ++r) {
            const int64_t n = p.q_start[r + 1] - p.q_start[r];
            DYNIN_CHECK_ARG(n == 0 || n == lay.row_start[r + 1] - lay.row_start[r],
                            "forward: without a cached step, rows are computed whole");
        }
        p.k_start = p.q_start;
    }
    return p;
}

const float* Engine::forward(const ForwardArgs& a, Workspace& ws) const {
    Backend* be = backend_.get();
    const Plan p = plan(a);
    const int64_t M = static_cast<int64_t>(p.active.size()), d = cfg_.d_model, hid = cfg_.mlp_hidden;
    int32_t* d_ids = ensure<int32_t>(ws.ids, be, M);
    be->copy_to_device(d_ids, p.ids.data(), sizeof(int32_t) * M);
    be->copy_to_device(ensure<int32_t>(ws.positions, be, M), p.positions.data(), sizeof(int32_t) * M);
    if (a.cache) be->copy_to_device(ensure<int64_t>(ws.active_rows, be, M), p.active.data(), sizeof(int64_t) * M);
    ensure<float>(ws.h, be, M * d);
    ensure<float>(ws.qkv, be, M * 3 * d);
    ensure<float>(ws.attn, be, M * d);
    ensure<float>(ws.gate_up, be, M * 2 * hid);
    ensure<float>(ws.act, be, M * hid);
    be->embed({w_.embed, w_.dtype, d, d_ids, M, ensure<float>(ws.x, be, M * d)});
    for (int64_t l = 0; l < cfg_.n_layers; ++l) layer(l, p, a, ws);
    return lm_head(p, a, ws);
}

// One transformer block over the M active rows of ws.x, in place.
void Engine::layer(int64_t l, const Plan& p, const ForwardArgs& a, Workspace& ws) const {
    Backend* be = backend_.get();
    const int64_t M = static_cast<int64_t>(p.active.size());
    const int64_t d = cfg_.d_model, hid = cfg_.mlp_hidden, nh = cfg_.n_heads, hd = cfg_.head_dim();
    const int64_t S = a.layout->slots();
    const float eps = static_cast<float>(cfg_.rms_eps);
    float *x = ws.x.as<float>(), *h = ws.h.as<float>(), *qkv = ws.qkv.as<float>(), *attn = ws.attn.as<float>();
    float *gate_up = ws.gate_up.as<float>(), *act = ws.act.as<float>();
    const LayerWeights& lw = w_.layers[l];
    const LayerWeights& lp = packed_.layers[l];
    be->rms_norm({x, lw.attn_norm, w_.dtype, h, M, d, eps});
    matmul(h, d, lw.wqkv, lp.wqkv, 3 * d, d, qkv, 3 * d, M, false);
    be->rope({qkv, qkv + d, 3 * d, ws.positions.as<int32_t>(), M, nh, hd, rope_sin_.as<float>(), rope_cos_.as<float>()});
    AttentionParams ap;
    ap.q = qkv;
    ap.ldq = 3 * d;
    ap.out = attn;
    ap.ldo = d;
    ap.q_start = p.q_start.data();
    ap.k_start = p.k_start.data();
    ap.n_seq = a.layout->batch;
    ap.n_heads = nh;
    ap.head_dim = hd;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    if (a.cache) {
        // the computed K/V go to their slots of the cache; attention reads the cache
        float* kc = a.cache->k.as<float>() + l * S * d;
        float* vc = a.cache->v.as<float>() + l * S * d;
        const int64_t* rows = ws.active_rows.as<int64_t>();
        be->copy_rows({qkv + d, 3 * d, nullptr, kc, d, rows, M, d});
        be->copy_rows({qkv + 2 * d, 3 * d, nullptr, vc, d, rows, M, d});
        if (a.fill_cache) {
            ap.k = qkv + d;  // the same values, read where they were computed (segments follow the active rows)
            ap.v = qkv + 2 * d;
            ap.ldkv = 3 * d;
        } else {
            ap.k = kc;
            ap.v = vc;
            ap.ldkv = d;
        }
    } else {
        ap.k = qkv + d;
        ap.v = qkv + 2 * d;
        ap.ldkv = 3 * d;
    }
    be->attention(ap);
    matmul(attn, d, lw.wo, lp.wo, d, d, x, d, M, true);
    be->rms_norm({x, lw.ffn_norm, w_.dtype, h, M, d, eps});
    matmul(h, d, lw.w_gate_up, lp.w_gate_up, 2 * hid, d, gate_up, 2 * hid, M, false);
    be->swiglu({gate_up, 2 * hid, act, M, hid});
    matmul(act, hid, lw.w_down, lp.w_down, d, hid, x, d, M, true);
}

// The LM head: only the requested slots (final norm first) and vocabulary columns.
const float* Engine::lm_head(const Plan& p, const ForwardArgs& a, Workspace& ws) const {
    Backend* be = backend_.get();
    const int64_t M = static_cast<int64_t>(p.active.size()), d = cfg_.d_model;
    const std::vector<int64_t>& head = *a.head_slots;
    const int64_t R = static_cast<int64_t>(head.size());
    int64_t C = 0;
    for (const ColumnRange& c : a.columns) {
        DYNIN_CHECK_ARG(c.col == C && c.count > 0 && c.token >= 0 && c.token + c.count <= cfg_.vocab_size,
                        "forward: bad LM-head column range");
        C += c.count;
    }
    float* logits = ensure<float>(ws.logits, be, R * C);
    if (R == 0) return logits;
    std::vector<int64_t> rows(static_cast<size_t>(R));
    for (int64_t r = 0, i = 0; r < R; ++r) {
        while (i < M && p.active[i] < head[r]) ++i;
        DYNIN_CHECK_ARG(i < M && p.active[i] == head[r], "forward: head slot ", head[r], " is not computed");
        rows[r] = i;
    }
    int64_t* d_rows = ensure<int64_t>(ws.head_rows, be, R);
    be->copy_to_device(d_rows, rows.data(), sizeof(int64_t) * R);
    float* head_in = ensure<float>(ws.head_in, be, 2 * R * d);
    float* head_norm = head_in + R * d;
    be->copy_rows({ws.x.as<float>(), d, d_rows, head_in, d, nullptr, R, d});
    be->rms_norm({head_in, w_.final_norm, w_.dtype, head_norm, R, d, static_cast<float>(cfg_.rms_eps)});
    for (const ColumnRange& c : a.columns)
        matmul(head_norm, d, w_.lm_head, packed_.lm_head, c.count, d, logits + c.col, C, R, false, c.token);
    return logits;
}

}  // namespace dynin_rt
