// The runtime weight file (written by python/dynin_rt/export/weights.py): one safetensors file of
// fused layouts, validated tensor by tensor against the model config before anything runs.
//
//   embed [V, D]                         final_norm [D]      lm_head [V, D]
//   layers.{i}.attn_norm [D]             layers.{i}.wqkv [3D, D]      (rows: q, k, v)
//   layers.{i}.wo [D, D]                 layers.{i}.ffn_norm [D]
//   layers.{i}.w_gate_up [2H, D]         (rows: gate = ff_proj, up = up_proj)
//   layers.{i}.w_down [D, H]
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dynin_rt/backend.h"
#include "dynin_rt/model_config.h"
#include "dynin_rt/safetensors.h"

namespace dynin_rt {

struct LayerWeights {
    const void* attn_norm = nullptr;
    const void* wqkv = nullptr;
    const void* wo = nullptr;
    const void* ffn_norm = nullptr;
    const void* w_gate_up = nullptr;
    const void* w_down = nullptr;
};

// Pointers into the mapped file (CPU) or into backend memory (after upload()).
struct WeightSet {
    DType dtype = DType::F32;
    const void* embed = nullptr;
    std::vector<LayerWeights> layers;
    const void* final_norm = nullptr;
    const void* lm_head = nullptr;
};

class ModelWeights {
 public:
    // Maps and validates `path`: every expected tensor present with the config's shape and `dtype`,
    // nothing else in the file. FormatError names the first offending tensor.
    ModelWeights(const std::string& path, const ModelConfig& cfg, DType dtype);

    const WeightSet& host() const { return host_; }
    const ModelConfig& config() const { return cfg_; }

    // The weights where `backend` computes: the mapped file itself for a host-memory backend, else a
    // copy in its memory; widened to fp32 when it cannot compute with fp16. `storage` owns copies.
    WeightSet place(Backend* backend, std::vector<DeviceBuffer>* storage) const;

 private:
    ModelConfig cfg_;
    std::unique_ptr<SafetensorsFile> file_;
    WeightSet host_;
    std::vector<std::pair<const void*, int64_t>> tensors_;  // every tensor: data, numel (for place())
};

}  // namespace dynin_rt
