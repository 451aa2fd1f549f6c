// Bidirectional attention of variable-length sequences on the CPU: the twin of cuda/attention.cu.
// Work items are (sequence, head, block of query rows). A block's scores against all its keys fit
// in a scratch matrix, so the softmax is exact (no online rescaling); each key and value row is
// read once per block and reused for all of the block's queries.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_ops.h"
#include "thread_pool.h"

namespace dynin_rt {

namespace {
constexpr int64_t kQueryBlock = 8;
}

void cpu_attention(const AttentionParams& p) {
    struct Item {
        int64_t seq, head, q0, q1;
    };
    std::vector<Item> items;
    for (int64_t s = 0; s < p.n_seq; ++s)
        for (int64_t h = 0; h < p.n_heads; ++h)
            for (int64_t q = p.q_start[s]; q < p.q_start[s + 1]; q += kQueryBlock)
                items.push_back({s, h, q, std::min(q + kQueryBlock, p.q_start[s + 1])});
    const int64_t hd = p.head_dim;
    parallel_for(static_cast<int64_t>(items.size()), [&](int64_t b0, int64_t b1) {
        std::vector<float> scores, acc(static_cast<size_t>(kQueryBlock * hd));
        for (int64_t b = b0; b < b1; ++b) {
            const Item& it = items[b];
            const int64_t k0 = p.k_start[it.seq], nk = p.k_start[it.seq + 1] - k0, nq = it.q1 - it.q0;
            const float* kh = p.k + k0 * p.ldkv + it.head * hd;
            const float* vh = p.v + k0 * p.ldkv + it.head * hd;
            scores.resize(static_cast<size_t>(kQueryBlock * nk));
            for (int64_t j = 0; j < nk; ++j) {
                const float* k = kh + j * p.ldkv;
                for (int64_t a = 0; a < nq; ++a) {
                    const float* q = p.q + (it.q0 + a) * p.ldq + it.head * hd;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int64_t d = 0; d < hd; ++d) dot += q[d] * k[d];
                    scores[a * nk + j] = dot * p.scale;
                }
            }
            float inv[kQueryBlock];
            for (int64_t a = 0; a < nq; ++a) {
                float* row = scores.data() + a * nk;
                float mx = -INFINITY;
                for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, row[j]);
                float sum = 0.0f;
                for (int64_t j = 0; j < nk; ++j) {
                    row[j] = std::exp(row[j] - mx);
                    sum += row[j];
                }
                inv[a] = nk ? 1.0f / sum : 0.0f;
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t j = 0; j < nk; ++j) {
                const float* v = vh + j * p.ldkv;
                for (int64_t a = 0; a < nq; ++a) {
                    const float w = scores[a * nk + j];
                    float* o = acc.data() + a * hd;
#pragma omp simd
                    for (int64_t d = 0; d < hd; ++d) o[d] += w * v[d];
                }
            }
            for (int64_t a = 0; a < nq; ++a) {
                float* out = p.out + (it.q0 + a) * p.ldo + it.head * hd;
                for (int64_t d = 0; d < hd; ++d) out[d] = acc[a * hd + d] * inv[a];
            }
        }
    });
}

}  // namespace dynin_rt
