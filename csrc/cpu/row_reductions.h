// Reductions over one logits row shared by the fused sampler steps (commit_step.cc,
// maskgit_step.cc): max, argmax, the sum of exp in det_math.h's fixed order, and Gumbel-max on the
// counter noise. The CUDA kernels compute the same bits (cuda/commit_step.cu, cuda/maskgit_step.cu):
// exp and log are det_math.h's, here 4 or 8 lanes at a time with the same operations in the same order
// (GCC vector extensions: AVX-512, AVX2 or SSE2, whatever the build targets; this file's includers
// compile with -ffp-contract=off, so no multiply-add is fused).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "dynin_rt/counter_rng.h"
#include "dynin_rt/det_math.h"

namespace dynin_rt {

// A logits row, optionally divided by a temperature in fp32 (as the reference's tensor division).
struct LogitsRow {
    const float* data;
    int64_t n;
    float divisor = 1.0f;  // 1: unscaled
    float at(int64_t j) const { return divisor == 1.0f ? data[j] : data[j] / divisor; }
};

inline float row_max(const LogitsRow& r) {
    float m = -INFINITY;
    for (int64_t j = 0; j < r.n; ++j) m = std::max(m, r.at(j));
    return m;
}

// Index of the first maximum.
inline int64_t row_argmax(const LogitsRow& r) {
    int64_t best = 0;
    float m = r.at(0);
    for (int64_t j = 1; j < r.n; ++j)
        if (r.at(j) > m) { m = r.at(j); best = j; }
    return best;
}

namespace vec {
namespace {  // internal linkage, as det_math.h's functions

// vector values only cross calls between functions of this file's own copy: the psABI change GCC
// warns about for vectors wider than the target's registers concerns no exported interface.
#pragma GCC diagnostic ignored "-Wpsabi"

// one register of doubles: 8 lanes with AVX-512, else 4 (wider vectors split badly on AVX2)
#if defined(__AVX512F__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef double vd __attribute__((vector_size(8 * kLanes)));
typedef int64_t vi __attribute__((vector_size(8 * kLanes)));
typedef uint64_t vu __attribute__((vector_size(8 * kLanes)));
typedef float vf __attribute__((vector_size(4 * kLanes)));

inline vd splat(double x) { return vd{} + x; }
inline vi lane_index() {
    vi v{};
    for (int l = 0; l < kLanes; ++l) v[l] = l;
    return v;
}
inline vd as_double(vu b) { return (vd)b; }
inline vu as_bits(vd x) { return (vu)x; }

// values j .. j + kLanes - 1 of the row as doubles (divided in fp32 first, as LogitsRow::at)
inline vd load(const LogitsRow& r, int64_t j) {
    vf v;
    std::memcpy(&v, r.data + j, sizeof(v));
    if (r.divisor != 1.0f) v = v / r.divisor;
    return __builtin_convertvector(v, vd);
}

// det::exp, lane by lane
inline vd exp(vd x) {
    using namespace det;
    x = x < -746.0 ? splat(-746.0) : x;
    x = x > 710.0 ? splat(710.0) : x;
    const vd rounded = x * kInvLn2 + kRoundMagic;
    const vd kd = rounded - kRoundMagic;
    const vd hi = x - kd * kLn2Hi, lo = kd * kLn2Lo;
    const vd r = hi - lo, t = r * r;
    const vd poly = kExpP1 + t * (kExpP2 + t * (kExpP3 + t * (kExpP4 + t * kExpP5)));
    const vd c = r - t * poly;
    const vd y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    const vi k = (vi)rounded - static_cast<int64_t>(bits(kRoundMagic));
    const vi k1 = k >> 1, k2 = k - k1;
    return (y * as_double((vu)((k1 + 1023) << 52))) * as_double((vu)((k2 + 1023) << 52));
}

// det::log, lane by lane (positive normal x)
inline vd log(vd x) {
    using namespace det;
    const vu b = as_bits(x);
    const vi hx = (vi)(b >> 32) & 0x000fffff;
    const vi i = (hx + 0x95f64) & 0x100000;
    const vi k = (vi)(b >> 52) - 1023 + (i >> 20);
    const vd m = as_double(((vu)(hx | (i ^ 0x3ff00000)) << 32) | (b & 0xffffffffu));
    const vd dk = as_double((vu)(k) + bits(kRoundMagic)) - kRoundMagic;  // exact for |k| < 2^51
    const vd f = m - 1.0;
    const vd s = f / (2.0 + f), z = s * s, w = z * z;
    const vd t1 = w * (kLg2 + w * (kLg4 + w * kLg6));
    const vd t2 = z * (kLg1 + w * (kLg3 + w * (kLg5 + w * kLg7)));
    const vd r = t2 + t1;
    const vd hfsq = 0.5 * f * f;
    const vd near_one = dk * kLn2Hi - ((hfsq - (s * (hfsq + r) + dk * kLn2Lo)) - f);
    const vd other = dk * kLn2Hi - ((s * (f - r) - dk * kLn2Lo) - f);
    return ((hx - 0x6147a) | (0x6b851 - hx)) > 0 ? near_one : other;
}

// det::gumbel of the counter uniforms U(key, j + lane), lane by lane
inline vd gumbel(uint64_t key, int64_t j) {
    const vu idx = (vu)lane_index() + static_cast<uint64_t>(j);
    vu z = key + idx * 0x9E3779B97F4A7C15ull;  // counter_at(key, j)
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 31;
    // bits_to_uniform: the 53 high bits as a double (exactly, from two 32-bit halves), + 0.5, * 2^-53
    const vu v = z >> 11;
    const double two52 = 4503599627370496.0;
    const vd hi = as_double((v >> 32) | det::bits(two52)) - two52, lo = as_double((v & 0xffffffffu) | det::bits(two52)) - two52;
    const vd u = (hi * 4294967296.0 + lo + 0.5) * (1.0 / 9007199254740992.0);
    vd inner = -log(u < 1e-20 ? splat(1e-20) : u);
    inner = inner < 1e-20 ? splat(1e-20) : inner;
    return -log(inner);
}

}  // namespace
}  // namespace vec

// sum_j det::exp(value_j - m) in det_math.h's order: 256 strided partials, then its tree.
inline double row_sum_exp(const LogitsRow& r, double m) {
    alignas(64) double partial[det::kSumLanes] = {};
    int64_t j0 = 0;
    for (; j0 + det::kSumLanes <= r.n; j0 += det::kSumLanes)
        for (int t = 0; t < det::kSumLanes; t += vec::kLanes) {
            vec::vd acc;
            std::memcpy(&acc, partial + t, sizeof(acc));
            acc = acc + vec::exp(vec::load(r, j0 + t) - m);
            std::memcpy(partial + t, &acc, sizeof(acc));
        }
    for (int t = 0; j0 + t < r.n; ++t) partial[t] = det::add(partial[t], det::exp(det::sub(static_cast<double>(r.at(j0 + t)), m)));
    return det::sum_tree(partial);
}

// argmax_j value_j + t * Gumbel(u_j), u_j = U(key, j): the first maximum.
inline int64_t row_gumbel_argmax(const LogitsRow& r, double t, uint64_t key) {
    int64_t best = 0;
    double best_v = -INFINITY;
    int64_t j = 0;
    vec::vd vbest = vec::splat(-INFINITY);
    vec::vi vidx = {};
    for (; j + vec::kLanes <= r.n; j += vec::kLanes) {
        const vec::vd val = vec::load(r, j) + t * vec::gumbel(key, j);  // v + t * g, unfused
        const vec::vi better = val > vbest;
        vbest = better ? val : vbest;
        vidx = better ? vec::lane_index() + j : vidx;
    }
    // lanes hold the first maximum of their own indices; pick the best, smallest index on ties
    for (int l = 0; l < vec::kLanes; ++l)
        if (vbest[l] > best_v || (vbest[l] == best_v && vidx[l] < best)) { best_v = vbest[l]; best = vidx[l]; }
    for (; j < r.n; ++j) {
        const double v = det::add(static_cast<double>(r.at(j)), det::mul(t, det::gumbel(bits_to_uniform(counter_at(key, j)))));
        if (v > best_v) { best_v = v; best = j; }
    }
    return best;
}

}  // namespace dynin_rt
