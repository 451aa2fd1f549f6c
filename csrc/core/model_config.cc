#include "dynin_rt/model_config.h"

#include "dynin_rt/common.h"

namespace dynin_rt {

void ModelConfig::validate() const {
    DYNIN_CHECK_ARG(d_model > 0 && n_heads > 0 && n_layers > 0 && mlp_hidden > 0 && vocab_size > 0 && max_seq_len > 0,
                    "model config: every size must be positive");
    DYNIN_CHECK_ARG(d_model % n_heads == 0, "model config: d_model ", d_model, " is not divisible by n_heads ", n_heads);
    DYNIN_CHECK_ARG(head_dim() % 2 == 0, "model config: head dim ", head_dim(), " must be even for RoPE");
    DYNIN_CHECK_ARG(d_model <= (1 << 16) && mlp_hidden <= (1 << 18) && vocab_size <= (1 << 24) && n_layers <= 1024 &&
                        max_seq_len <= (1 << 20),
                    "model config: a size is beyond what dynin_rt supports");
    DYNIN_CHECK_ARG(rms_eps > 0 && rope_theta > 0, "model config: rms_eps and rope_theta must be positive");
}

void TokenLayout::validate(int64_t vocab_size) const {
    for (int64_t id : {mask_id, eos_id, eoa_id})
        DYNIN_CHECK_ARG(id >= 0 && id < vocab_size, "token layout: special id ", id, " outside vocab ", vocab_size);
    if (image_offset >= 0)
        DYNIN_CHECK_ARG(image_offset + image_codebook <= vocab_size, "token layout: image rows end at ",
                        image_offset + image_codebook, " > vocab ", vocab_size);
    if (speech_offset >= 0)
        DYNIN_CHECK_ARG(speech_offset + speech_codebook <= vocab_size, "token layout: speech rows end at ",
                        speech_offset + speech_codebook, " > vocab ", vocab_size);
}

}  // namespace dynin_rt
