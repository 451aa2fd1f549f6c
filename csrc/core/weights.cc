#include "dynin_rt/weights.h"

#include <map>
#include <set>

#include "dynin_rt/common.h"

namespace dynin_rt {

ModelWeights::ModelWeights(const std::string& path, const ModelConfig& cfg, DType dtype) : cfg_(cfg) {
    cfg.validate();
    file_ = std::make_unique<SafetensorsFile>(path);
    const int64_t d = cfg.d_model, h = cfg.mlp_hidden, v = cfg.vocab_size;
    std::map<std::string, std::vector<int64_t>> expected;
    expected["embed"] = {v, d};
    expected["final_norm"] = {d};
    expected["lm_head"] = {v, d};
    for (int64_t i = 0; i < cfg.n_layers; ++i) {
        const std::string p = str_cat("layers.", i, ".");
        expected[p + "attn_norm"] = {d};
        expected[p + "wqkv"] = {3 * d, d};
        expected[p + "wo"] = {d, d};
        expected[p + "ffn_norm"] = {d};
        expected[p + "w_gate_up"] = {2 * h, d};
        expected[p + "w_down"] = {d, h};
    }
    for (const std::string& name : file_->names())
        DYNIN_CHECK_FORMAT(expected.count(name), path, ": unexpected tensor ", name);
    auto take = [&](const std::string& name) -> const void* {
        DYNIN_CHECK_FORMAT(file_->has(name), path, " is missing tensor ", name);
        const TensorView& t = file_->get(name);
        const auto& shape = expected.at(name);
        DYNIN_CHECK_FORMAT(t.shape == shape, path, ": tensor ", name, " has the wrong shape for the model config");
        DYNIN_CHECK_FORMAT(t.dtype == dtype, path, ": tensor ", name, " is ", dtype_name(t.dtype), ", the manifest says ",
                           dtype_name(dtype));
        tensors_.emplace_back(t.data, t.numel());
        return t.data;
    };
    host_.dtype = dtype;
    host_.embed = take("embed");
    host_.layers.resize(static_cast<size_t>(cfg.n_layers));
    for (int64_t i = 0; i < cfg.n_layers; ++i) {
        const std::string p = str_cat("layers.", i, ".");
        LayerWeights& l = host_.layers[i];
        l.attn_norm = take(p + "attn_norm");
        l.wqkv = take(p + "wqkv");
        l.wo = take(p + "wo");
        l.ffn_norm = take(p + "ffn_norm");
        l.w_gate_up = take(p + "w_gate_up");
        l.w_down = take(p + "w_down");
    }
    host_.final_norm = take("final_norm");
    host_.lm_head = take("lm_head");
}

WeightSet ModelWeights::place(Backend* backend, std::vector<DeviceBuffer>* storage) const {
    const BackendCaps caps = backend->caps();
    const bool widen = !caps.computes_f16 && host_.dtype == DType::F16;
    const bool copy = !caps.host_memory || widen;
    if (!copy) return host_;
    std::map<const void*, const void*> moved;
    for (const auto& [data, numel] : tensors_) {
        if (widen) {
            std::vector<float> wide(static_cast<size_t>(numel));
            const auto* src = static_cast<const uint16_t*>(data);
            for (int64_t i = 0; i < numel; ++i) wide[i] = f16_to_f32(src[i]);
            storage->emplace_back(backend, sizeof(float) * numel);
            backend->copy_to_device(storage->back().as<void>(), wide.data(), sizeof(float) * numel);
        } else {
            const size_t bytes = dtype_size(host_.dtype) * numel;
            storage->emplace_back(backend, bytes);
            backend->copy_to_device(storage->back().as<void>(), data, bytes);
        }
        moved[data] = storage->back().as<void>();
    }
    WeightSet out = host_;
    out.dtype = widen ? DType::F32 : host_.dtype;
    out.embed = moved.at(host_.embed);
    for (auto& l : out.layers)
        for (const void** w : {&l.attn_norm, &l.wqkv, &l.wo, &l.ffn_norm, &l.w_gate_up, &l.w_down}) *w = moved.at(*w);
    out.final_norm = moved.at(host_.final_norm);
    out.lm_head = moved.at(host_.lm_head);
    return out;
}

}  // namespace dynin_rt
