// Embedding gather, SwiGLU and the CFG combination on the CPU.
#include <cmath>
#include <cstring>

#include "cpu_ops.h"
#include "thread_pool.h"

namespace dynin_rt {

void cpu_embed(const EmbedParams& p) {
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            float* out = p.out + i * p.d;
            const int64_t row = p.canvas && p.canvas_index[i] >= 0 ? p.canvas[p.canvas_index[i]] : p.ids[i];
            if (p.dtype == DType::F32) {
                std::memcpy(out, static_cast<const float*>(p.table) + row * p.d, sizeof(float) * p.d);
            } else {
                const auto* src = static_cast<const uint16_t*>(p.table) + row * p.d;
                if (p.dtype == DType::BF16)
                    for (int64_t j = 0; j < p.d; ++j) out[j] = bf16_to_f32(src[j]);
                else
                    for (int64_t j = 0; j < p.d; ++j) out[j] = f16_to_f32(src[j]);
            }
        }
    }, 16);
}

void cpu_swiglu(const SwigluParams& p) {
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float* gate = p.gate_up + i * p.ld;
            const float* up = gate + p.h;
            float* out = p.out + i * p.h;
            for (int64_t j = 0; j < p.h; ++j) {
                const float g = gate[j];
                out[j] = g / (1.0f + std::exp(-g)) * up[j];
            }
        }
    }, 4);
}

void cpu_copy_rows(const CopyRowsParams& p) {
    parallel_for(p.m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t s = p.src_rows ? p.src_rows[i] : i, d = p.dst_rows ? p.dst_rows[i] : i;
            std::memcpy(p.dst + d * p.ld_dst, p.src + s * p.ld_src, sizeof(float) * p.width);
        }
    }, 64);
}

void cpu_cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                     Backend::CfgForm form) {
    parallel_for(n, [&](int64_t i0, int64_t i1) {
        if (form == Backend::CfgForm::kLlada)
            for (int64_t i = i0; i < i1; ++i) out[i] = uncond[i] + alpha * (cond[i] - uncond[i]);
        else
            for (int64_t i = i0; i < i1; ++i) out[i] = alpha * cond[i] - beta * uncond[i];
    }, 1 << 16);
}

}  // namespace dynin_rt
