// The backbone hyper-parameters and token layout the runtime computes with. Filled from the exported
// manifest (python/dynin_rt/export/weights.py) and validated again here, because the C++ side must
// not trust what it is given.
#pragma once
#include <cstdint>

namespace dynin_rt {

struct ModelConfig {
    int64_t d_model = 0;
    int64_t n_heads = 0;
    int64_t n_layers = 0;
    int64_t mlp_hidden = 0;
    int64_t vocab_size = 0;
    int64_t max_seq_len = 0;
    double rms_eps = 1e-5;
    double rope_theta = 500000.0;

    int64_t head_dim() const { return d_model / n_heads; }
    void validate() const;  // InvalidArgument on anything the kernels cannot run
};

// Token ids the samplers need (docs/token-layout.md).
struct TokenLayout {
    int64_t mask_id = 126336;
    int64_t eos_id = 126081;
    int64_t eoa_id = 126098;
    int64_t image_offset = -1;   // L, or -1 when unknown (no tokenizer) / absent
    int64_t image_codebook = 8192;
    int64_t speech_offset = -1;  // L + 8192, or -1
    int64_t speech_codebook = 4096;

    void validate(int64_t vocab_size) const;
};

}  // namespace dynin_rt
