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

const float* Engine::forward(const ForwardArgs& a, Workspace& ws) const {
    Backend* be = backend_.get();
    const CanvasLayout& lay = *a.layout;
    const int64_t d = cfg_.d_model, hid = cfg_.mlp_hidden, nh = cfg_.n_heads, hd = cfg_.head_dim();
    const int64_t S = lay.slots();

    // Active slots (queries) and the attention segments of each row.
    std::vector<int64_t> all;
    const std::vector<int64_t>* active = a.active;
    if (!active) {
        all.resize(static_cast<size_t>(S));
        for (int64_t i = 0; i < S; ++i) all[i] = i;
        active = &all;
    }
    const int64_t M = static_cast<int64_t>(active->size());
    DYNIN_CHECK_ARG(M > 0, "forward: nothing to compute");
    DYNIN_CHECK_ARG(a.cache || M == S, "forward: a partial forward needs a KV cache");
    DYNIN_CHECK_ARG(!a.fill_cache || M == S, "forward: filling the KV cache needs every slot");
    std::vector<int32_t> ids(static_cast<size_t>(M)), positions(static_cast<size_t>(M));
    std::vector<int64_t> q_start(static_cast<size_t>(lay.batch + 1), 0);
    {
        int64_t b = 0;
        for (int64_t i = 0; i < M; ++i) {
            const int64_t slot = (*active)[i];
            while (lay.row_start[b + 1] <= slot) q_start[++b] = i;
            positions[i] = lay.slot_pos[slot];
            ids[i] = a.tokens[b * lay.length + positions[i]];
            DYNIN_CHECK_ARG(ids[i] >= 0 && ids[i] < cfg_.vocab_size, "token id ", ids[i], " outside [0, ",
                            cfg_.vocab_size, ")");
        }
        while (b < lay.batch) q_start[++b] = M;
    }

    int32_t* d_ids = ensure<int32_t>(ws.ids, be, M);
    int32_t* d_pos = ensure<int32_t>(ws.positions, be, M);
    be->copy_to_device(d_ids, ids.data(), sizeof(int32_t) * M);
    be->copy_to_device(d_pos, positions.data(), sizeof(int32_t) * M);
    int64_t* d_active = nullptr;
    if (a.cache && !a.fill_cache) {
        d_active = ensure<int64_t>(ws.active_rows, be, M);
        be->copy_to_device(d_active, active->data(), sizeof(int64_t) * M);
    }
    float* x = ensure<float>(ws.x, be, M * d);
    float* h = ensure<float>(ws.h, be, M * d);
    float* qkv = ensure<float>(ws.qkv, be, M * 3 * d);
    float* attn = ensure<float>(ws.attn, be, M * d);
    float* gate_up = ensure<float>(ws.gate_up, be, M * 2 * hid);
    float* act = ensure<float>(ws.act, be, M * hid);

    be->embed({w_.embed, w_.dtype, d, d_ids, M, x});
    const float eps = static_cast<float>(cfg_.rms_eps);
    for (int64_t l = 0; l < cfg_.n_layers; ++l) {
        const LayerWeights& lw = w_.layers[l];
        be->rms_norm({x, lw.attn_norm, w_.dtype, h, M, d, eps});
        const LayerWeights& lp = packed_.layers[l];
        matmul(h, d, lw.wqkv, lp.wqkv, 3 * d, d, qkv, 3 * d, M, false);
        be->rope({qkv, qkv + d, 3 * d, d_pos, M, nh, hd, rope_sin_.as<float>(), rope_cos_.as<float>()});
        AttentionParams ap;
        ap.q = qkv;
        ap.ldq = 3 * d;
        ap.out = attn;
        ap.ldo = d;
        ap.q_start = q_start.data();
        ap.k_start = lay.row_start.data();
        ap.n_seq = lay.batch;
        ap.n_heads = nh;
        ap.head_dim = hd;
        ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
        if (a.cache) {
            float* kc = a.cache->k.as<float>() + l * S * d;
            float* vc = a.cache->v.as<float>() + l * S * d;
            be->copy_rows({qkv + d, 3 * d, nullptr, kc, d, d_active, M, d});
            be->copy_rows({qkv + 2 * d, 3 * d, nullptr, vc, d, d_active, M, d});
            ap.k = kc;
            ap.v = vc;
            ap.ldkv = d;
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

    // LM head: only the requested slots and vocabulary columns.
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
        while (i < M && (*active)[i] < head[r]) ++i;
        DYNIN_CHECK_ARG(i < M && (*active)[i] == head[r], "forward: head slot ", head[r], " is not computed");
        rows[r] = i;
    }
    int64_t* d_rows = ensure<int64_t>(ws.head_rows, be, R);
    be->copy_to_device(d_rows, rows.data(), sizeof(int64_t) * R);
    float* head_in = ensure<float>(ws.head_in, be, 2 * R * d);
    float* head_norm = head_in + R * d;
    be->copy_rows({x, d, d_rows, head_in, d, nullptr, R, d});
    be->rms_norm({head_in, w_.final_norm, w_.dtype, head_norm, R, d, eps});
    for (const ColumnRange& c : a.columns)
        matmul(head_norm, d, w_.lm_head, packed_.lm_head, c.count, d, logits + c.col, C, R, false, c.token);
    return logits;
}

}  // namespace dynin_rt
