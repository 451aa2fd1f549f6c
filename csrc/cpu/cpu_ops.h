// The CPU backend's kernels, one family per file; each is the twin of a CUDA kernel in cuda/.
#pragma once
#include "dynin_rt/backend.h"

namespace dynin_rt {

void cpu_gemm(const GemmParams& p);            // gemm.cc (OpenBLAS sgemm; bf16 in gemm_bf16.cc)
void cpu_gemm_bf16(const GemmParams& p);       // gemm_bf16.cc
void cpu_gemm_packed(const GemmParams& p);     // gemm_packed.cc (w_packed)
bool cpu_packs_weights();                      // gemm_packed.cc: whether this build has the packed kernel
int64_t cpu_packed_weights_floats(int64_t n, int64_t k);
void cpu_pack_weights_f32(const float* w, int64_t n, int64_t k, float* packed);
int64_t cpu_packed_bf16_elems(int64_t n, int64_t k);                            // gemm_bf16.cc
void cpu_pack_weights_bf16(const uint16_t* w, int64_t n, int64_t k, uint16_t* packed);
void cpu_gemm_packed_bf16(const GemmParams& p);
bool cpu_has_avx512_bf16();                    // gemm_bf16.cc
void cpu_embed(const EmbedParams& p);          // elementwise.cc
void cpu_rms_norm(const RmsNormParams& p);     // norm.cc
void cpu_rope(const RopeParams& p);            // rope.cc
void cpu_attention(const AttentionParams& p);  // attention.cc
void cpu_swiglu(const SwigluParams& p);        // elementwise.cc
void cpu_copy_rows(const CopyRowsParams& p);  // elementwise.cc
void cpu_cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                     Backend::CfgForm form);  // elementwise.cc
void cpu_commit_step(const CommitStepParams& p);    // commit_step.cc
void cpu_maskgit_step(const MaskgitStepParams& p);  // maskgit_step.cc

}  // namespace dynin_rt
