// Bidirectional attention of variable-length sequences (twin of cpu/attention.cc). Pads are absent
// (segment offsets, no T x T mask); one kernel serves full-canvas and KV-cached steps: the queries
// of a sequence are any subset of its slots, the keys all of them.
//
// Flash-style, fp32 throughout: a block owns 32 query rows of one (sequence, head); 4 warps own 8
// rows each (a warp skips rows past the sequence's end). Keys and values stream through shared
// memory 32 at a time; lane j scores key j for the warp's rows, the softmax is kept online (running
// max and sum), the 32 probabilities pass through the warp's row of shared memory, and each lane
// accumulates head_dim / 32 output columns.
#include <algorithm>
#include <cfloat>

#include "dynin_rt/common.h"
#include "launch.cuh"

namespace dynin_rt {
namespace cuda {

namespace {

constexpr int kRowsPerBlock = 32;
constexpr int kKeysPerTile = 32;
constexpr int kWarps = 4;
constexpr int kRowsPerWarp = kRowsPerBlock / kWarps;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxColsPerLane = kMaxHeadDim / 32;

// Segment offsets travel by value in the kernel parameters (a batch has at most a few rows), so
// a launch needs no upload and no synchronisation. Larger batches are launched in groups.
constexpr int kSegmentsPerLaunch = 32;

struct Segments {
    int64_t q_start[kSegmentsPerLaunch + 1];
    int64_t k_start[kSegmentsPerLaunch + 1];
};

size_t smem_bytes(int hd) { return sizeof(float) * (kRowsPerBlock * hd + kKeysPerTile * (hd + 1) + kKeysPerTile * hd); }

// grid: (query tiles, heads, sequences); block: 128 threads; dynamic smem: q, k, v tiles
__global__ void attention_kernel(AttentionParams p, const Segments seg) {
    DYNIN_RT_DYNAMIC_SHARED(float, smem);
    __shared__ float probs[kWarps][kKeysPerTile];  // a warp's probabilities of one row
    const int hd = static_cast<int>(p.head_dim), ld = hd + 1;  // +1: conflict-free column reads
    float* qs = smem;                          // [32][hd]
    float* ks = qs + kRowsPerBlock * hd;       // [32][hd + 1]
    float* vs = ks + kKeysPerTile * ld;        // [32][hd]
    const int64_t s = blockIdx.z, h = blockIdx.y;
    const int64_t q0 = seg.q_start[s] + static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
    const int64_t q_end = seg.q_start[s + 1];
    if (q0 >= q_end) return;
    const int64_t k0 = seg.k_start[s], nk = seg.k_start[s + 1] - k0;
    const int rows = static_cast<int>(q_end - q0 < kRowsPerBlock ? q_end - q0 : kRowsPerBlock);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int i = threadIdx.x; i < kRowsPerBlock * hd; i += blockDim.x) {
        const int r = i / hd, d = i % hd;
        qs[i] = r < rows ? p.q[(q0 + r) * p.ldq + h * hd + d] : 0.0f;
    }
    float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kMaxColsPerLane];
    for (int r = 0; r < kRowsPerWarp; ++r) {
        m[r] = -FLT_MAX;
        l[r] = 0.0f;
        for (int c = 0; c < kMaxColsPerLane; ++c) o[r][c] = 0.0f;
    }
    const int cols = (hd + 31) / 32;
    for (int64_t t0 = 0; t0 < nk; t0 += kKeysPerTile) {
        const int keys = static_cast<int>(nk - t0 < kKeysPerTile ? nk - t0 : kKeysPerTile);
        __syncthreads();
        for (int i = threadIdx.x; i < kKeysPerTile * hd; i += blockDim.x) {
            const int j = i / hd, d = i % hd;
            const bool in = j < keys;
            ks[j * ld + d] = in ? p.k[(k0 + t0 + j) * p.ldkv + h * hd + d] : 0.0f;
            vs[j * hd + d] = in ? p.v[(k0 + t0 + j) * p.ldkv + h * hd + d] : 0.0f;
        }
        __syncthreads();
        for (int r = 0; r < kRowsPerWarp; ++r) {
            const int row = warp * kRowsPerWarp + r;
            if (row >= rows) break;  // the same for the whole warp
            const float* q = qs + row * hd;
            float score = -FLT_MAX;
            if (lane < keys) {
                float dot = 0.0f;
                for (int d = 0; d < hd; ++d) dot += q[d] * ks[lane * ld + d];
                score = dot * p.scale;
            }
            float tile_max = score;
            for (int off = 16; off > 0; off /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
            const float new_m = fmaxf(m[r], tile_max);
            const float pj = lane < keys ? expf(score - new_m) : 0.0f;
            float tile_sum = pj;
            for (int off = 16; off > 0; off /= 2) tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, off);
            const float alpha = expf(m[r] - new_m);
            l[r] = l[r] * alpha + tile_sum;
            m[r] = new_m;
            for (int c = 0; c < cols; ++c) o[r][c] *= alpha;
            probs[warp][lane] = pj;
            __syncwarp();
            for (int j = 0; j < keys; ++j) {
                const float w = probs[warp][j];
                for (int c = 0; c < cols; ++c) {
                    const int d = lane + 32 * c;
                    if (d < hd) o[r][c] += w * vs[j * hd + d];
                }
            }
            __syncwarp();  // the row's probabilities are read before the next row's are written
        }
    }
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = warp * kRowsPerWarp + r;
        if (row >= rows) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (int c = 0; c < cols; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) p.out[(q0 + row) * p.ldo + h * hd + d] = o[r][c] * inv;
        }
    }
}

}  // namespace

void attention(const AttentionParams& p, Context& c) {
    DYNIN_CHECK_ARG(p.head_dim > 0 && p.head_dim <= kMaxHeadDim, "cuda attention: head_dim ", p.head_dim, " > ", kMaxHeadDim);
    const size_t smem = smem_bytes(static_cast<int>(p.head_dim));
    if (!c.attention_smem_set) {  // the largest head_dim needs more than the default 48 KiB
        check(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(smem_bytes(kMaxHeadDim))),
              "attention smem");
        c.attention_smem_set = true;
    }
    for (int64_t s0 = 0; s0 < p.n_seq; s0 += kSegmentsPerLaunch) {
        const int64_t n = std::min<int64_t>(kSegmentsPerLaunch, p.n_seq - s0);
        Segments seg{};
        int64_t longest = 0;
        for (int64_t i = 0; i <= n; ++i) {
            seg.q_start[i] = p.q_start[s0 + i];
            seg.k_start[i] = p.k_start[s0 + i];
            if (i) longest = std::max(longest, seg.q_start[i] - seg.q_start[i - 1]);
        }
        if (longest == 0) continue;
        const dim3 grid(static_cast<unsigned>((longest + kRowsPerBlock - 1) / kRowsPerBlock), static_cast<unsigned>(p.n_heads),
                        static_cast<unsigned>(n));
        DYNIN_RT_LAUNCH(c, attention_kernel, grid, kWarps * 32, smem, p, seg);
    }
}

}  // namespace cuda
}  // namespace dynin_rt
