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

// The host work of a forward: which slots run (their token source and position), the attention
// segments (per row: its queries among the computed slots, its keys in the K/V source) and the head
// rows; the index arrays go to backend memory.
void Engine::prepare(const ForwardArgs& a, PreparedForward& f) const {
    Backend* be = backend_.get();
    const CanvasLayout& lay = *a.layout;
    DYNIN_CHECK_ARG(a.canvas && a.canvas_rows > 0 && lay.batch % a.canvas_rows == 0, "forward: no canvas for the layout");
    std::vector<int64_t> active;
    if (a.active) {
        active = *a.active;
    } else {
        active.resize(static_cast<size_t>(lay.slots()));
        for (int64_t i = 0; i < lay.slots(); ++i) active[i] = i;
    }
    f.M = static_cast<int64_t>(active.size());
    f.batch = lay.batch;
    f.slots = lay.slots();
    f.cache = a.cache;
    f.fill_cache = a.fill_cache;
    DYNIN_CHECK_ARG(f.M > 0, "forward: nothing to compute");
    std::vector<int64_t> index(static_cast<size_t>(f.M));
    std::vector<int32_t> override_id(static_cast<size_t>(f.M), -1), positions(static_cast<size_t>(f.M));
    f.q_start.assign(static_cast<size_t>(lay.batch + 1), 0);
    f.C = 0;
    int64_t b = 0;
    for (int64_t i = 0; i < f.M; ++i) {
        const int64_t slot = active[i];
        DYNIN_CHECK_ARG(slot >= 0 && slot < lay.slots() && (i == 0 || slot > active[i - 1]), "forward: active slots must be sorted");
        while (lay.row_start[b + 1] <= slot) f.q_start[++b] = i;
        const int64_t t = lay.slot_pos[slot];
        positions[i] = static_cast<int32_t>(t);
        index[i] = (b % a.canvas_rows) * lay.length + t;
        if (a.overrides && a.overrides[b * lay.length + t] >= 0) {
            override_id[i] = a.overrides[b * lay.length + t];
            DYNIN_CHECK_ARG(override_id[i] < cfg_.vocab_size, "token id ", override_id[i], " outside [0, ", cfg_.vocab_size, ")");
            index[i] = -1;
        }
    }
    while (b < lay.batch) f.q_start[++b] = f.M;
    if (a.cache && !a.fill_cache) {
        f.k_start = lay.row_start;  // keys: every cached slot of the row
    } else {
        // keys: the row's own computed slots, which must be the whole row
        for (int64_t r = 0; r < lay.batch; ++r) {
            const int64_t n = f.q_start[r + 1] - f.q_start[r];
            DYNIN_CHECK_ARG(n == 0 || n == lay.row_start[r + 1] - lay.row_start[r],
                            "forward: without a cached step, rows are computed whole");
        }
        f.k_start = f.q_start;
    }
    for (const ColumnRange& c : a.columns) {
        DYNIN_CHECK_ARG(c.col == f.C && c.count > 0 && c.token >= 0 && c.token + c.count <= cfg_.vocab_size,
                        "forward: bad LM-head column range");
        f.C += c.count;
    }
    f.columns = a.columns;
    const std::vector<int64_t>& head = *a.head_slots;
    f.R = static_cast<int64_t>(head.size());
    std::vector<int64_t> rows(static_cast<size_t>(f.R));
    for (int64_t r = 0, i = 0; r < f.R; ++r) {
        while (i < f.M && active[i] < head[r]) ++i;
        DYNIN_CHECK_ARG(i < f.M && active[i] == head[r], "forward: head slot ", head[r], " is not computed");
        rows[r] = i;
    }
    be->copy_to_device(ensure<int64_t>(f.token_index, be, f.M), index.data(), sizeof(int64_t) * f.M);
    be->copy_to_device(ensure<int32_t>(f.token_override, be, f.M), override_id.data(), sizeof(int32_t) * f.M);
    be->copy_to_device(ensure<int32_t>(f.positions, be, f.M), positions.data(), sizeof(int32_t) * f.M);
    if (a.cache) be->copy_to_device(ensure<int64_t>(f.active_rows, be, f.M), active.data(), sizeof(int64_t) * f.M);
    if (f.R) be->copy_to_device(ensure<int64_t>(f.head_rows, be, f.R), rows.data(), sizeof(int64_t) * f.R);
}

void Engine::reserve(const PreparedForward& f, Workspace& ws) const {
    Backend* be = backend_.get();
    const int64_t M = f.M, d = cfg_.d_model, hid = cfg_.mlp_hidden;
    ensure<float>(ws.x, be, M * d);
    ensure<float>(ws.h, be, M * d);
    ensure<float>(ws.qkv, be, M * 3 * d);
    ensure<float>(ws.attn, be, M * d);
    ensure<float>(ws.gate_up, be, M * 2 * hid);
    ensure<float>(ws.act, be, M * hid);
    ensure<float>(ws.head_in, be, 2 * f.R * d);
    ensure<float>(ws.logits, be, f.R * f.C);
}

const float* Engine::forward(const ForwardArgs& a, Workspace& ws) const {
    PreparedForward f;
    prepare(a, f);
    return run(f, a.canvas, ws);
}

const float* Engine::run(const PreparedForward& f, const int32_t* canvas, Workspace& ws) const {
    reserve(f, ws);
    EmbedParams ep{w_.embed, w_.dtype, cfg_.d_model, f.token_override.as<int32_t>(), f.M, ws.x.as<float>()};
    ep.canvas = canvas;
    ep.canvas_index = f.token_index.as<int64_t>();
    backend_->embed(ep);
    for (int64_t l = 0; l < cfg_.n_layers; ++l) layer(l, f, ws);
    return lm_head(f, ws);
}

// One transformer block over the M computed rows of ws.x, in place.
void Engine::layer(int64_t l, const PreparedForward& f, Workspace& ws) const {
    Backend* be = backend_.get();
    const int64_t M = f.M, d = cfg_.d_model, hid = cfg_.mlp_hidden, nh = cfg_.n_heads, hd = cfg_.head_dim();
    const float eps = static_cast<float>(cfg_.rms_eps);
    float *x = ws.x.as<float>(), *h = ws.h.as<float>(), *qkv = ws.qkv.as<float>(), *attn = ws.attn.as<float>();
    float *gate_up = ws.gate_up.as<float>(), *act = ws.act.as<float>();
    const LayerWeights& lw = w_.layers[l];
    const LayerWeights& lp = packed_.layers[l];
    be->rms_norm({x, lw.attn_norm, w_.dtype, h, M, d, eps});
    matmul(h, d, lw.wqkv, lp.wqkv, 3 * d, d, qkv, 3 * d, M, false);
    be->rope({qkv, qkv + d, 3 * d, f.positions.as<int32_t>(), M, nh, hd, rope_sin_.as<float>(), rope_cos_.as<float>()});
    AttentionParams ap;
    ap.q = qkv;
    ap.ldq = 3 * d;
    ap.out = attn;
    ap.ldo = d;
    ap.q_start = f.q_start.data();
    ap.k_start = f.k_start.data();
    ap.n_seq = f.batch;
    ap.n_heads = nh;
    ap.head_dim = hd;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // K/V read where they were computed, or (a cached step) from the cache, where they are stored
    ap.k = qkv + d;
    ap.v = qkv + 2 * d;
    ap.ldkv = 3 * d;
    if (f.cache) {
        float* kc = f.cache->k.as<float>() + l * f.slots * d;
        float* vc = f.cache->v.as<float>() + l * f.slots * d;
        const int64_t* rows = f.active_rows.as<int64_t>();
        be->copy_rows({qkv + d, 3 * d, nullptr, kc, d, rows, M, d});
        be->copy_rows({qkv + 2 * d, 3 * d, nullptr, vc, d, rows, M, d});
        if (!f.fill_cache) {
            ap.k = kc;
            ap.v = vc;
            ap.ldkv = d;
        }
    }
    be->attention(ap);
    matmul(attn, d, lw.wo, lp.wo, d, d, x, d, M, true);
    be->rms_norm({x, lw.ffn_norm, w_.dtype, h, M, d, eps});
    matmul(h, d, lw.w_gate_up, lp.w_gate_up, 2 * hid, d, gate_up, 2 * hid, M, false);
    be->swiglu({gate_up, 2 * hid, act, M, hid});
    matmul(act, hid, lw.w_down, lp.w_down, d, hid, x, d, M, true);
}

// The LM head: only the head rows (final norm first) and the requested vocabulary columns.
const float* Engine::lm_head(const PreparedForward& f, Workspace& ws) const {
    Backend* be = backend_.get();
    const int64_t d = cfg_.d_model;
    float* logits = ws.logits.as<float>();
    if (f.R == 0) return logits;
    float* head_in = ws.head_in.as<float>();
    float* head_norm = head_in + f.R * d;
    be->copy_rows({ws.x.as<float>(), d, f.head_rows.as<int64_t>(), head_in, d, nullptr, f.R, d});
    be->rms_norm({head_in, w_.final_norm, w_.dtype, head_norm, f.R, d, static_cast<float>(cfg_.rms_eps)});
    for (const ColumnRange& c : f.columns)
        matmul(head_norm, d, w_.lm_head, packed_.lm_head, c.count, d, logits + c.col, f.C, f.R, false, c.token);
    return logits;
}

}  // namespace dynin_rt
