// Bidirectional attention of variable-length sequences (twin of cpu/attention.cc). Pads are absent
// (segment offsets, no T x T mask); one kernel family serves full-canvas and KV-cached steps: the
// queries of a sequence are any subset of its slots, the keys all of them.
//
// Flash-style, fp32 throughout: a block owns 32 query rows of one (sequence, head); 4 warps own 8
// rows each (a warp skips rows past the sequence's end). Keys and values stream through shared
// memory 32 at a time; lane j scores key j for the warp's rows, the softmax is kept online (running
// max and sum), the 32 probabilities pass through the warp's row of shared memory, and each lane
// accumulates kCols = ceil(head_dim / 32) output columns. The kernel is templated on kCols so that
// every row's state (max, sum, kCols accumulators) has compile-time indices and lives in registers.
//
// Split-KV (flash-decoding): when the blocks of a launch would not fill the device (a cached step's
// 32 queries give one query tile per head), the keys are cut into chunks, each block computes the
// softmax of its chunk only (unnormalised output, max and sum per row) into scratch memory, and a
// combine kernel rescales the chunks to the common max and normalises.
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
constexpr int kMinKeysPerSplit = 64;  // a chunk smaller than two key tiles costs more than it spreads
constexpr int kMaxSplits = 16;

// Segment offsets travel by value in the kernel parameters (a batch has at most a few rows), so
// a launch needs no upload and no synchronisation. Larger batches are launched in groups.
constexpr int kSegmentsPerLaunch = 32;

struct Segments {
    int64_t q_start[kSegmentsPerLaunch + 1];
    int64_t k_start[kSegmentsPerLaunch + 1];
};

// Where the chunks of a split launch go: chunk c of query row i, head h at [c][i][h] (i counts from
// the launch group's first query row).
struct Partial {
    int splits = 1;             // 1: no split, the kernel writes the normalised output
    int64_t keys_per_split = 0;  // a multiple of kKeysPerTile
    int64_t rows = 0;            // query rows of the launch group
    float* o = nullptr;          // [splits, rows, n_heads, head_dim] unnormalised
    float* ml = nullptr;         // [splits, rows, n_heads, 2] running max, sum
};

// q, k and v tiles, then each warp's probabilities of one row (all dynamic: the kernel has one
// instance per kCols, and the emulated build would give each static array its own thread storage)
size_t smem_bytes(int hd) {
    return sizeof(float) * (kRowsPerBlock * hd + kKeysPerTile * (hd + 1) + kKeysPerTile * hd + kWarps * kKeysPerTile);
}

// grid: (query tiles, heads, sequences x splits); block: 128 threads; dynamic smem: smem_bytes(head_dim)
template <int kCols>
__global__ void attention_kernel(AttentionParams p, const Segments seg, const Partial part) {
    DYNIN_RT_DYNAMIC_SHARED(float, smem);
    const int hd = static_cast<int>(p.head_dim), ld = hd + 1;  // +1: conflict-free column reads
    float* qs = smem;                          // [32][hd]
    float* ks = qs + kRowsPerBlock * hd;       // [32][hd + 1]
    float* vs = ks + kKeysPerTile * ld;        // [32][hd]
    float* probs = vs + kKeysPerTile * hd;     // [warps][32] a warp's probabilities of one row
    const int64_t s = blockIdx.z / part.splits, split = blockIdx.z % part.splits, h = blockIdx.y;
    const int64_t q0 = seg.q_start[s] + static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
    const int64_t q_end = seg.q_start[s + 1];
    if (q0 >= q_end) return;
    const int64_t seq_keys = seg.k_start[s + 1] - seg.k_start[s];
    const int64_t first = split * part.keys_per_split;                // this chunk's keys (all when unsplit)
    const int64_t k_begin = part.splits == 1 || first > seq_keys ? (part.splits == 1 ? 0 : seq_keys) : first;
    const int64_t k0 = seg.k_start[s] + k_begin;
    const int64_t left = seq_keys - k_begin;
    const int64_t nk = part.splits == 1 || left < part.keys_per_split ? left : part.keys_per_split;
    const int rows = static_cast<int>(q_end - q0 < kRowsPerBlock ? q_end - q0 : kRowsPerBlock);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int i = threadIdx.x; i < kRowsPerBlock * hd; i += blockDim.x) {
        const int r = i / hd, d = i % hd;
        qs[i] = r < rows ? p.q[(q0 + r) * p.ldq + h * hd + d] : 0.0f;
    }
    float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kCols];
DYNIN_RT_UNROLL
    for (int r = 0; r < kRowsPerWarp; ++r) {
        m[r] = -FLT_MAX;
        l[r] = 0.0f;
DYNIN_RT_UNROLL
        for (int c = 0; c < kCols; ++c) o[r][c] = 0.0f;
    }
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
DYNIN_RT_UNROLL
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
DYNIN_RT_UNROLL
            for (int c = 0; c < kCols; ++c) o[r][c] *= alpha;
            probs[warp * kKeysPerTile + lane] = pj;
            __syncwarp();
            for (int j = 0; j < keys; ++j) {
                const float w = probs[warp * kKeysPerTile + j];
DYNIN_RT_UNROLL
                for (int c = 0; c < kCols; ++c) {
                    const int d = lane + 32 * c;
                    if (d < hd) o[r][c] += w * vs[j * hd + d];
                }
            }
            __syncwarp();  // the row's probabilities are read before the next row's are written
        }
    }
DYNIN_RT_UNROLL
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = warp * kRowsPerWarp + r;
        if (row >= rows) break;
        if (part.splits == 1) {
            const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
DYNIN_RT_UNROLL
            for (int c = 0; c < kCols; ++c) {
                const int d = lane + 32 * c;
                if (d < hd) p.out[(q0 + row) * p.ldo + h * hd + d] = o[r][c] * inv;
            }
            continue;
        }
        const int64_t at = (split * part.rows + (q0 + row - seg.q_start[0])) * p.n_heads + h;  // [split][row][head]
DYNIN_RT_UNROLL
        for (int c = 0; c < kCols; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) part.o[at * hd + d] = o[r][c];
        }
        if (lane == 0) {
            part.ml[2 * at] = m[r];
            part.ml[2 * at + 1] = l[r];
        }
    }
}

// out = sum_c o_c e^(m_c - M) / sum_c l_c e^(m_c - M), M = max_c m_c (a chunk without keys has
// m = -FLT_MAX, l = 0, o = 0 and adds nothing; a row without keys gets 0, as unsplit).
// grid: (query rows of the launch group, heads); block: head_dim threads
__global__ void combine_kernel(AttentionParams p, int64_t row0, const Partial part) {
    const int64_t i = blockIdx.x, h = blockIdx.y;
    const int d = threadIdx.x, hd = static_cast<int>(p.head_dim);
    float top = -FLT_MAX;
    for (int c = 0; c < part.splits; ++c) top = fmaxf(top, part.ml[2 * ((c * part.rows + i) * p.n_heads + h)]);
    float sum = 0.0f, acc = 0.0f;
    for (int c = 0; c < part.splits; ++c) {
        const int64_t at = (c * part.rows + i) * p.n_heads + h;
        const float w = expf(part.ml[2 * at] - top);
        sum += part.ml[2 * at + 1] * w;
        acc += part.o[at * hd + d] * w;
    }
    p.out[(row0 + i) * p.ldo + h * hd + d] = sum > 0.0f ? acc / sum : 0.0f;
}

template <int kCols>
void launch_group(const AttentionParams& p, const Segments& seg, int64_t n, int64_t longest_q, int64_t longest_k, Context& c) {
    const int bit = 1 << kCols;
    if (!(c.attention_smem_set & bit)) {  // the largest head_dim needs more than the default 48 KiB
        check(cudaFuncSetAttribute(attention_kernel<kCols>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(smem_bytes(32 * kCols))),
              "attention smem");
        c.attention_smem_set |= bit;
    }
    if (c.sm_count == 0) check(cudaDeviceGetAttribute(&c.sm_count, cudaDevAttrMultiProcessorCount, c.device), "SM count");
    const int64_t tiles = (longest_q + kRowsPerBlock - 1) / kRowsPerBlock;
    const int64_t blocks = tiles * p.n_heads * n;
    Partial part;
    if (blocks < c.sm_count) {  // too few blocks to fill the device: split the keys (two blocks per SM)
        const int64_t want = (2 * c.sm_count + blocks - 1) / blocks;
        const int64_t most = (longest_k + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
        part.splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, most, kMaxSplits})));
    }
    const size_t smem = smem_bytes(static_cast<int>(p.head_dim));
    if (part.splits > 1) {
        const int64_t chunk = (longest_k + part.splits - 1) / part.splits;
        part.keys_per_split = (chunk + kKeysPerTile - 1) / kKeysPerTile * kKeysPerTile;
        part.splits = static_cast<int>((longest_k + part.keys_per_split - 1) / part.keys_per_split);
        part.rows = seg.q_start[n] - seg.q_start[0];
        const size_t cells = static_cast<size_t>(part.splits * part.rows * p.n_heads);
        auto* scratch = static_cast<float*>(c.attention.ensure(sizeof(float) * cells * (p.head_dim + 2), c));
        part.o = scratch;
        part.ml = scratch + cells * p.head_dim;
    }
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(p.n_heads), static_cast<unsigned>(n * part.splits));
    DYNIN_RT_LAUNCH(c, attention_kernel<kCols>, grid, kWarps * 32, smem, p, seg, part);
    if (part.splits > 1)
        DYNIN_RT_LAUNCH(c, combine_kernel, dim3(static_cast<unsigned>(part.rows), static_cast<unsigned>(p.n_heads)),
                        static_cast<unsigned>(p.head_dim), 0, p, seg.q_start[0], part);
}

}  // namespace

void attention(const AttentionParams& p, Context& c) {
    DYNIN_CHECK_ARG(p.head_dim > 0 && p.head_dim <= kMaxHeadDim, "cuda attention: head_dim ", p.head_dim, " > ", kMaxHeadDim);
    for (int64_t s0 = 0; s0 < p.n_seq; s0 += kSegmentsPerLaunch) {
        const int64_t n = std::min<int64_t>(kSegmentsPerLaunch, p.n_seq - s0);
        Segments seg{};
        int64_t longest_q = 0, longest_k = 0;
        for (int64_t i = 0; i <= n; ++i) {
            seg.q_start[i] = p.q_start[s0 + i];
            seg.k_start[i] = p.k_start[s0 + i];
            if (i) {
                longest_q = std::max(longest_q, seg.q_start[i] - seg.q_start[i - 1]);
                longest_k = std::max(longest_k, seg.k_start[i] - seg.k_start[i - 1]);
            }
        }
        if (longest_q == 0) continue;
        switch ((p.head_dim + 31) / 32) {  // each lane's output columns: registers sized at compile time
            case 1: launch_group<1>(p, seg, n, longest_q, longest_k, c); break;
            case 2: launch_group<2>(p, seg, n, longest_q, longest_k, c); break;
            case 3: launch_group<3>(p, seg, n, longest_q, longest_k, c); break;
            default: launch_group<4>(p, seg, n, longest_q, longest_k, c); break;
        }
    }
}

}  // namespace cuda
}  // namespace dynin_rt
