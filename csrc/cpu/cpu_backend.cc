// The CPU backend: host memory and the kernels of this folder.
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu_ops.h"

namespace dynin_rt {

namespace {

class CpuBackend final : public Backend {
 public:
    std::string name() const override { return "cpu"; }
    // fp16 weights are widened at load: the CPU GEMMs read fp32 and bf16.
    BackendCaps caps() const override { return {/*host_memory=*/true, /*computes_f16=*/false}; }

    void* alloc(size_t bytes) override {
        void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!p) throw std::bad_alloc();
        return p;
    }
    void release(void* ptr) override { std::free(ptr); }
    void copy_to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

    void gemm(const GemmParams& p) override { cpu_gemm(p); }
    // Weights in 16-row panels, k-major (gemm_packed.cc: fp32; gemm_bf16.cc: bf16 k pairs).
    const void* pack_weights(const void* w, DType dtype, int64_t n, int64_t k, std::vector<DeviceBuffer>* storage) override {
        if (dtype == DType::F32 && cpu_packs_weights()) {
            storage->emplace_back(this, sizeof(float) * cpu_packed_weights_floats(n, k));
            cpu_pack_weights_f32(static_cast<const float*>(w), n, k, storage->back().as<float>());
            return storage->back().as<void>();
        }
        if (dtype == DType::BF16 && cpu_has_avx512_bf16()) {
            storage->emplace_back(this, sizeof(uint16_t) * cpu_packed_bf16_elems(n, k));
            cpu_pack_weights_bf16(static_cast<const uint16_t*>(w), n, k, storage->back().as<uint16_t>());
            return storage->back().as<void>();
        }
        return nullptr;
    }
    void embed(const EmbedParams& p) override { cpu_embed(p); }
    void rms_norm(const RmsNormParams& p) override { cpu_rms_norm(p); }
    void rope(const RopeParams& p) override { cpu_rope(p); }
    void attention(const AttentionParams& p) override { cpu_attention(p); }
    void swiglu(const SwigluParams& p) override { cpu_swiglu(p); }
    void copy_rows(const CopyRowsParams& p) override { cpu_copy_rows(p); }
    void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                     CfgForm form) override {
        cpu_cfg_combine(uncond, cond, out, n, alpha, beta, form);
    }
    void commit_step(const CommitStepParams& p) override { cpu_commit_step(p); }
    void maskgit_step(const MaskgitStepParams& p) override { cpu_maskgit_step(p); }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dynin_rt
