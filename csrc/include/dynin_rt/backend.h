// The op interface the engine and the sampler loops are written against (as ggml's backends): the
// CPU backend (cpu/) implements it first and is the twin every CUDA kernel (cuda/) is tested
// against. One params struct per kernel family; matrices are row-major with explicit leading
// dimensions, activations fp32, weights in their stored dtype. All pointers are backend memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dynin_rt/dtype.h"

namespace dynin_rt {

// y[m, n] = x[m, k] . w[n, k]^T  (+ y when accumulate). Weight row j starts at w + j * ldw.
struct GemmParams {
    const float* x = nullptr;  // [m, k], leading dim ldx
    int64_t ldx = 0;
    const void* w = nullptr;   // [n, k] in w_dtype
    DType w_dtype = DType::F32;
    int64_t ldw = 0;
    float* y = nullptr;        // [m, n], leading dim ldy
    int64_t ldy = 0;
    int64_t m = 0, n = 0, k = 0;
    bool accumulate = false;
    // w is a packed copy from Backend::pack_weights (then ldw is unused) and the product covers its
    // rows [w_row0, w_row0 + n).
    bool w_packed = false;
    int64_t w_row0 = 0;
};

// out[i, :] = table[id_i, :], id_i = ids[i], or with a canvas: canvas[canvas_index[i]] where
// canvas_index[i] >= 0 (the loops keep their canvas in backend memory and gather from it).
struct EmbedParams {
    const void* table = nullptr;  // [vocab, d] in dtype
    DType dtype = DType::F32;
    int64_t d = 0;
    const int32_t* ids = nullptr;  // [m], validated by the caller
    int64_t m = 0;
    float* out = nullptr;  // [m, d]
    const int32_t* canvas = nullptr;        // [*] or null
    const int64_t* canvas_index = nullptr;  // [m] index into canvas, or -1: take ids[i]
};

// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * w   (normalise in fp32, then scale)
struct RmsNormParams {
    const float* x = nullptr;  // [m, d]
    const void* w = nullptr;   // [d] in w_dtype
    DType w_dtype = DType::F32;
    float* out = nullptr;      // [m, d]
    int64_t m = 0, d = 0;
    float eps = 1e-5f;
};

// Half-rotation RoPE in place on the q and k columns of m token rows. Head h occupies columns
// [h * head_dim, (h + 1) * head_dim) of both q and k; positions are absolute canvas positions.
struct RopeParams {
    float* q = nullptr;  // [m, n_heads * head_dim], leading dim ld
    float* k = nullptr;  // same layout
    int64_t ld = 0;
    const int32_t* positions = nullptr;  // [m]
    int64_t m = 0, n_heads = 0, head_dim = 0;
    const float* sin = nullptr;  // [max_pos, head_dim / 2] fp32 table
    const float* cos = nullptr;
};

// Bidirectional attention of variable-length sequences. Sequence s owns query rows
// [q_start[s], q_start[s+1]) and key/value rows [k_start[s], k_start[s+1]); pads are simply absent
// (no T x T mask). out = softmax(q k^T * scale) v per head.
struct AttentionParams {
    const float* q = nullptr;  // [n_q_total, n_heads * head_dim], leading dim ldq
    int64_t ldq = 0;
    const float* k = nullptr;  // [n_k_total, n_heads * head_dim], leading dim ldkv
    const float* v = nullptr;
    int64_t ldkv = 0;
    float* out = nullptr;      // [n_q_total, n_heads * head_dim], leading dim ldo
    int64_t ldo = 0;
    const int64_t* q_start = nullptr;  // [n_seq + 1], host memory
    const int64_t* k_start = nullptr;  // [n_seq + 1], host memory
    int64_t n_seq = 0, n_heads = 0, head_dim = 0;
    float scale = 1.0f;
};

// dst[dst_rows[i], :width] = src[src_rows[i], :width]; a null index array means 0, 1, 2, ...
struct CopyRowsParams {
    const float* src = nullptr;
    int64_t ld_src = 0;
    const int64_t* src_rows = nullptr;  // [m] or null
    float* dst = nullptr;
    int64_t ld_dst = 0;
    const int64_t* dst_rows = nullptr;  // [m] or null
    int64_t m = 0, width = 0;
};

// out[i, j] = silu(gate_up[i, j]) * gate_up[i, h + j]
struct SwigluParams {
    const float* gate_up = nullptr;  // [m, 2h], leading dim ld
    int64_t ld = 0;
    float* out = nullptr;  // [m, h]
    int64_t m = 0, h = 0;
};

// --- the samplers' fused step ops ---------------------------------------------------------------

// Maps logit columns to token ids: columns [col, col + count) are tokens [token, token + count).
struct ColumnRange {
    int64_t col = 0, token = 0, count = 0;
};

enum class TokenChoice : uint8_t {
    kArgmax,          // greedy
    kGumbelOfficial,  // LLaDA add_gumbel_noise: argmax exp(l) / (-log u)^T in float64
    kCategorical,     // a sample of softmax(l / T): argmax l / T + Gumbel  (T2S; T = 0 means T = 1)
};
enum class ConfidenceKind : uint8_t { kProbability, kRandom };
enum class SelectRule : uint8_t {
    kTopK,       // commit k[row] (LLaDA's transfer schedule)
    kThreshold,  // commit every candidate with confidence >= threshold, at least the best one
    kFactor,     // Fast-dLLM factor rule: the largest n with (n + 1) (1 - c_n) < factor, at least 1
};

// One denoising step of the LLaDA and text-to-speech loops: for every candidate (a still-masked
// position of the current block) choose a token and its confidence from its logits row, then per
// batch row select which candidates to commit and write them into the canvas.
struct CommitStepParams {
    const float* logits = nullptr;  // [n_cand, n_cols], leading dim ld
    int64_t ld = 0, n_cand = 0, n_cols = 0;
    const ColumnRange* columns = nullptr;  // column -> token map, host memory
    int64_t n_ranges = 0;
    const int32_t* cand_row = nullptr;  // [n_cand] batch row; candidates are grouped by row
    const int32_t* cand_pos = nullptr;  // [n_cand] canvas position
    int32_t* canvas = nullptr;          // [batch, canvas_len], updated in place
    int64_t batch = 0, canvas_len = 0;
    const int32_t* k_per_row = nullptr;  // [batch] for kTopK (clamped to the candidates available)
    TokenChoice choice = TokenChoice::kArgmax;
    ConfidenceKind confidence = ConfidenceKind::kProbability;
    SelectRule select = SelectRule::kTopK;
    double temperature = 0.0, threshold = 0.9, factor = 1.0;
    uint64_t seed = 0;
    int64_t step = 0;                    // global step index: the noise key
    const uint64_t* row_seed = nullptr;  // [batch] per-row seeds, or null: `seed` for every row
    const int64_t* noise_row = nullptr;  // [batch] the row of each batch row's noise key, or null: itself
    int32_t* committed_per_row = nullptr;  // out: how many were committed, [batch] ([steps, batch] with step_counter)
    // A step whose inputs live in backend memory (the device-resident loop, docs/runtime-loop.md):
    int32_t mask_id = -1;                 // >= 0: candidates whose canvas value is no longer mask_id are skipped
    int64_t* step_counter = nullptr;      // [1] the global step (replaces `step`); incremented by the step
    const int32_t* k_table = nullptr;     // [steps, batch] k per row of every global step (replaces k_per_row)
    int32_t* remaining = nullptr;         // [1] out: candidates still masked after the step, over the batch
};

// One MaskGIT step over the unknown image positions (model-spec §7.2).
struct MaskgitStepParams {
    const float* logits = nullptr;  // [n_cand, n_codes] image-code logits of the unknown positions
    int64_t ld = 0, n_cand = 0, n_codes = 0;
    const int32_t* cand_row = nullptr;    // [n_cand] batch row; grouped by row
    const int32_t* cand_index = nullptr;  // [n_cand] index inside the image region
    int32_t* codes = nullptr;             // [batch, n_tokens] committed code or -1 (masked), in place
    int32_t* last_sample = nullptr;       // [batch, n_tokens] this step's sample per position
    int64_t batch = 0, n_tokens = 0;
    const int64_t* keep_masked = nullptr;  // [batch] host memory: mask_len of the schedule (or `schedule`)
    double temperature = 1.0;              // already annealed for this step
    uint64_t seed = 0;
    int64_t step = 0;
    const uint64_t* row_seed = nullptr;    // [batch] per-row seeds, or null: `seed` for every row
    const int64_t* noise_row = nullptr;    // [batch] the row of each batch row's noise key, or null: itself
    // A step whose inputs live in backend memory (the device-resident loop): candidates whose code is
    // already known are skipped, so a fixed list of every image position serves all steps.
    int64_t* step_counter = nullptr;       // [1] the step (replaces `step`); incremented by the step
    const int64_t* schedule = nullptr;     // [steps] keep_masked per row = max(1, min(unknown - 1, schedule[step]))
    const double* temperatures = nullptr;  // [steps] the annealed temperature of each step
    int32_t* canvas = nullptr;             // [batch, canvas_len] or null: the image region gets the codes
    int64_t canvas_len = 0;
    const int64_t* region_start = nullptr;  // [batch] first canvas position of each row's image region
    int32_t mask_id = 0, token_offset = 0;  // unknown codes are written as mask_id, known ones as offset + code
    int32_t* masked_log = nullptr;         // [steps, batch] out: positions each row leaves masked at each step
};

class DeviceBuffer;

// What a backend can do; the engine and the weight loader ask this instead of comparing names.
struct BackendCaps {
    bool host_memory = false;   // alloc() returns host memory: weights may stay views into the mmap
    bool computes_f16 = true;   // GEMMs read fp16 weights (else they are widened to fp32 when placed)
};

// What a backend did since it was made (monotonic); Result.stats reports the differences per call.
struct BackendCounters {
    int64_t kernel_launches = 0;  // device kernels (and cuBLASLt calls) enqueued
    int64_t graph_replays = 0;    // captured step graphs launched
    int64_t host_syncs = 0;       // times the host waited for the device
    int64_t allocations = 0;      // device allocations and frees: none belong in the step path
    int64_t frees = 0;
};

class Backend {
 public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    virtual BackendCaps caps() const = 0;
    virtual BackendCounters counters() const { return {}; }

    // Backend memory. The CPU backend returns host memory; copies are then plain memcpy.
    virtual void* alloc(size_t bytes) = 0;
    virtual void release(void* ptr) = 0;
    virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
    virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
    virtual void synchronize() {}

    virtual void gemm(const GemmParams& p) = 0;
    // A copy of weight matrix w [n, k] in the backend's preferred GEMM layout, or null when the
    // backend multiplies the row-major weights directly. The copy lives in *storage.
    virtual const void* pack_weights(const void* w, DType dtype, int64_t n, int64_t k, std::vector<DeviceBuffer>* storage) {
        return nullptr;
    }
    virtual void embed(const EmbedParams& p) = 0;
    virtual void rms_norm(const RmsNormParams& p) = 0;
    virtual void rope(const RopeParams& p) = 0;
    virtual void attention(const AttentionParams& p) = 0;
    virtual void swiglu(const SwigluParams& p) = 0;
    virtual void copy_rows(const CopyRowsParams& p) = 0;
    // Classifier-free guidance over n logits, in the float order of the official code:
    //   kLlada:   out = u + alpha * (c - u)      (LLaDA and T2S: alpha = s + 1)
    //   kMaskgit: out = alpha * c - beta * u     (MaskGIT: alpha = 1 + g, beta = g)
    enum class CfgForm : uint8_t { kLlada, kMaskgit };
    virtual void cfg_combine(const float* uncond, const float* cond, float* out, int64_t n, float alpha, float beta,
                             CfgForm form) = 0;
    virtual void commit_step(const CommitStepParams& p) = 0;
    virtual void maskgit_step(const MaskgitStepParams& p) = 0;

    // Runs `enqueue`, which only puts device work on the backend's stream (no host waits, uploads or
    // allocations: a device-resident step). A backend with graphs records it under `key` (after one
    // eager run, which sizes its scratch memory) and replays the recording from then on; the others
    // just run it. The key must change whenever what a recording bakes in does (shapes, pointers,
    // kernel parameters); values read from backend memory may change freely.
    virtual void run_recorded(uint64_t key, const std::function<void()>& enqueue) { enqueue(); }
    // Frees a recording (a call's recordings are dropped when it ends: they bake in its buffers).
    virtual void drop_recording(uint64_t key) {}
};

// Buffer of backend memory that releases itself.
class DeviceBuffer {
 public:
    DeviceBuffer() = default;
    DeviceBuffer(Backend* backend, size_t bytes) : backend_(backend), bytes_(bytes), ptr_(bytes ? backend->alloc(bytes) : nullptr) {}
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            reset();
            backend_ = o.backend_;
            bytes_ = o.bytes_;
            ptr_ = o.ptr_;
            o.ptr_ = nullptr;
            o.bytes_ = 0;
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void reset() {
        if (ptr_) backend_->release(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }
    // Grows (never shrinks) to at least `bytes`; contents are not preserved.
    void ensure(Backend* backend, size_t bytes) {
        if (bytes <= bytes_ && backend == backend_) return;
        reset();
        backend_ = backend;
        bytes_ = bytes;
        ptr_ = backend->alloc(bytes);
    }
    template <typename T>
    T* as() const { return static_cast<T*>(ptr_); }
    size_t bytes() const { return bytes_; }

 private:
    Backend* backend_ = nullptr;
    size_t bytes_ = 0;
    void* ptr_ = nullptr;
};

// The backends this build has, by name ("cpu", then "cuda" when built with it), and the factory
// (core/backend_registry.cc): adding a backend adds its folder, one entry there and one in CMake.
std::vector<std::string> backend_names();
std::unique_ptr<Backend> make_backend(const std::string& name, int device = 0);

std::unique_ptr<Backend> make_cpu_backend();
#if DYNIN_RT_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend(int device);
int cuda_device_count();  // 0 when no driver or no GPU
#endif

}  // namespace dynin_rt
