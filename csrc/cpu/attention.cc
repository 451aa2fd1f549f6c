// Bidirectional attention of variable-length sequences on the CPU: the twin of cuda/attention.cu.
//
// Work items are (sequence, head). Each item transposes its keys once (K^T [head_dim, n_k]) so that
// scores for 8 queries x 32 keys accumulate as broadcast-FMA outer products (no horizontal sums),
// takes an exact softmax of each query's full score row (the row fits in memory, so no online
// rescaling is needed), and accumulates P V two queries at a time across the whole head dimension.
// Head dims that are not a multiple of 16 take a plain loop.
#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu_ops.h"
#include "simd_math.h"
#include "thread_pool.h"

namespace dynin_rt {

namespace {

// out[a, :] = softmax(scale * q[a] . k[j])_j  v[j, :] for the nq queries of one (sequence, head).
void attend_scalar(const AttentionParams& p, const float* q, const float* k, const float* v, float* out, int64_t nq,
                   int64_t nk, std::vector<float>& scores) {
    const int64_t hd = p.head_dim;
    scores.resize(static_cast<size_t>(nk));
    for (int64_t a = 0; a < nq; ++a) {
        const float* qa = q + a * p.ldq;
        float mx = -INFINITY;
        for (int64_t j = 0; j < nk; ++j) {
            float dot = 0.0f;
            for (int64_t d = 0; d < hd; ++d) dot += qa[d] * k[j * p.ldkv + d];
            scores[j] = dot * p.scale;
            mx = std::max(mx, scores[j]);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < nk; ++j) sum += (scores[j] = std::exp(scores[j] - mx));
        float* o = out + a * p.ldo;
        std::fill(o, o + hd, 0.0f);
        for (int64_t j = 0; j < nk; ++j)
            for (int64_t d = 0; d < hd; ++d) o[d] += scores[j] * v[j * p.ldkv + d];
        for (int64_t d = 0; d < hd; ++d) o[d] /= sum;
    }
}

#if defined(__AVX512F__)
constexpr int64_t kQ = 8;   // queries per score tile
constexpr int64_t kK = 32;  // keys per score tile (two vectors)

void attend_avx512(const AttentionParams& p, const float* q, const float* k, const float* v, float* out, int64_t nq,
                   int64_t nk, std::vector<float>& kt, std::vector<float>& scores) {
    const int64_t hd = p.head_dim, nk_pad = (nk + kK - 1) / kK * kK;
    kt.assign(static_cast<size_t>(hd * nk_pad), 0.0f);  // K^T, zero padded to whole tiles
    for (int64_t j = 0; j < nk; ++j)
        for (int64_t d = 0; d < hd; ++d) kt[d * nk_pad + j] = k[j * p.ldkv + d];
    scores.resize(static_cast<size_t>(kQ * nk_pad));
    for (int64_t a0 = 0; a0 < nq; a0 += kQ) {
        const int64_t na = std::min(kQ, nq - a0);
        const float* qr[kQ];
        for (int64_t a = 0; a < kQ; ++a) qr[a] = q + (a0 + std::min(a, na - 1)) * p.ldq;
        // scores [na, nk] = scale * q k^T
        for (int64_t j = 0; j < nk_pad; j += kK) {
            __m512 acc[kQ][2];
            for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
            for (int64_t d = 0; d < hd; ++d) {
                const __m512 k0 = _mm512_loadu_ps(kt.data() + d * nk_pad + j);
                const __m512 k1 = _mm512_loadu_ps(kt.data() + d * nk_pad + j + 16);
                for (int64_t a = 0; a < kQ; ++a) {
                    const __m512 qa = _mm512_set1_ps(qr[a][d]);
                    acc[a][0] = _mm512_fmadd_ps(qa, k0, acc[a][0]);
                    acc[a][1] = _mm512_fmadd_ps(qa, k1, acc[a][1]);
                }
            }
            const __m512 scale = _mm512_set1_ps(p.scale);
            for (int64_t a = 0; a < na; ++a) {
                _mm512_storeu_ps(scores.data() + a * nk_pad + j, _mm512_mul_ps(acc[a][0], scale));
                _mm512_storeu_ps(scores.data() + a * nk_pad + j + 16, _mm512_mul_ps(acc[a][1], scale));
            }
        }
        // exact softmax over the real keys of each row
        float inv[kQ];
        for (int64_t a = 0; a < na; ++a) {
            float* row = scores.data() + a * nk_pad;
            float mx = -INFINITY;
            for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, row[j]);
            inv[a] = 1.0f / exp_shifted_sum(row, nk, mx);
        }
        // out = P v, two queries by the whole head dimension at a time
        for (int64_t a = 0; a < na; a += 2) {
            const int64_t nb = std::min<int64_t>(2, na - a);
            for (int64_t d0 = 0; d0 < hd; d0 += 128) {
                const int64_t nv = std::min<int64_t>(128, hd - d0) / 16;
                __m512 acc[2][8];
                for (auto& r : acc)
                    for (auto& x : r) x = _mm512_setzero_ps();
                for (int64_t j = 0; j < nk; ++j) {
                    const float* vj = v + j * p.ldkv + d0;
                    const __m512 p0 = _mm512_set1_ps(scores[a * nk_pad + j]);
                    const __m512 p1 = _mm512_set1_ps(scores[(a + nb - 1) * nk_pad + j]);
                    for (int64_t t = 0; t < nv; ++t) {
                        const __m512 vv = _mm512_loadu_ps(vj + 16 * t);
                        acc[0][t] = _mm512_fmadd_ps(p0, vv, acc[0][t]);
                        acc[1][t] = _mm512_fmadd_ps(p1, vv, acc[1][t]);
                    }
                }
                for (int64_t b = 0; b < nb; ++b) {
                    const __m512 s = _mm512_set1_ps(inv[a + b]);
                    float* o = out + (a0 + a + b) * p.ldo + d0;
                    for (int64_t t = 0; t < nv; ++t) _mm512_storeu_ps(o + 16 * t, _mm512_mul_ps(acc[b][t], s));
                }
            }
        }
    }
}
#endif

}  // namespace

void cpu_attention(const AttentionParams& p) {
    const int64_t hd = p.head_dim, items = p.n_seq * p.n_heads;
    parallel_for(items, [&](int64_t i0, int64_t i1) {
        std::vector<float> kt, scores;
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t s = i / p.n_heads, h = i % p.n_heads;
            const int64_t q0 = p.q_start[s], nq = p.q_start[s + 1] - q0;
            const int64_t k0 = p.k_start[s], nk = p.k_start[s + 1] - k0;
            if (nq == 0) continue;
            const float* q = p.q + q0 * p.ldq + h * hd;
            const float* k = p.k + k0 * p.ldkv + h * hd;
            const float* v = p.v + k0 * p.ldkv + h * hd;
            float* out = p.out + q0 * p.ldo + h * hd;
            if (nk == 0) {
                for (int64_t a = 0; a < nq; ++a) std::fill(out + a * p.ldo, out + a * p.ldo + hd, 0.0f);
                continue;
            }
#if defined(__AVX512F__)
            if (hd % 16 == 0) {
                attend_avx512(p, q, k, v, out, nq, nk, kt, scores);
                continue;
            }
#endif
            attend_scalar(p, q, k, v, out, nq, nk, scores);
        }
    });
}

}  // namespace dynin_rt
