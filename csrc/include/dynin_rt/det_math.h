// exp and log for the values that decide a rank or a commit in the fused sampler steps (softmax
// confidences, Gumbel noise, MaskGIT scores), written once for the CPU twins and the CUDA kernels so
// that both compute the same bits: only IEEE +, -, *, / (correctly rounded everywhere), no FMA
// contraction (device code uses the _rn intrinsics; host files that include this compile with
// -ffp-contract=off), and no library call whose last bit differs between libm and CUDA. The
// algorithms are fdlibm's (__ieee754_exp, __ieee754_log; < 1 ulp), reduced to one code path. The CPU
// twins' vector versions (cpu/row_reductions.h) perform the same operations lane by lane.
//
// The sums over a logits row use one fixed order on both sides, det_sum's: 256 strided partials
// (partial t adds the columns j = t, t + 256, ... in order), each warp of 32 partials combined by the
// butterfly of __shfl_xor_sync (offsets 16, 8, 4, 2, 1), then the 8 warp totals added in order.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DYNIN_RT_DET_HD __host__ __device__
#else
#define DYNIN_RT_DET_HD
#endif

namespace dynin_rt {
namespace det {
// Internal linkage: every file keeps the copy compiled with its own (contraction-free) flags, so a
// copy built elsewhere with different flags can never stand in for it at link time.
namespace {

#if defined(__CUDA_ARCH__)
DYNIN_RT_DET_HD inline double mul(double a, double b) { return __dmul_rn(a, b); }
DYNIN_RT_DET_HD inline double add(double a, double b) { return __dadd_rn(a, b); }
DYNIN_RT_DET_HD inline double sub(double a, double b) { return __dsub_rn(a, b); }
#else
DYNIN_RT_DET_HD inline double mul(double a, double b) { return a * b; }
DYNIN_RT_DET_HD inline double add(double a, double b) { return a + b; }
DYNIN_RT_DET_HD inline double sub(double a, double b) { return a - b; }
#endif

DYNIN_RT_DET_HD inline uint64_t bits(double x) {
    uint64_t b;
    memcpy(&b, &x, 8);
    return b;
}
DYNIN_RT_DET_HD inline double from_bits(uint64_t b) {
    double x;
    memcpy(&x, &b, 8);
    return x;
}

constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
constexpr double kInvLn2 = 1.44269504088896338700e+00;
constexpr double kRoundMagic = 6755399441055744.0;  // 2^52 + 2^51: x + it - it rounds x to an integer
constexpr double kExpP1 = 1.66666666666666019037e-01, kExpP2 = -2.77777777770155933842e-03, kExpP3 = 6.61375632143793436117e-05,
                 kExpP4 = -1.65339022054652515390e-06, kExpP5 = 4.13813679705723846039e-08;
constexpr double kLg1 = 6.666666666666735130e-01, kLg2 = 3.999999999940941908e-01, kLg3 = 2.857142874366239149e-01,
                 kLg4 = 2.222219843214978396e-01, kLg5 = 1.818357216161805012e-01, kLg6 = 1.531383769920937332e-01,
                 kLg7 = 1.479819860511658591e-01;

// e^x for finite x (clamped to [-746, 710]: 0 and infinity beyond).
DYNIN_RT_DET_HD inline double exp(double x) {
    x = x < -746.0 ? -746.0 : (x > 710.0 ? 710.0 : x);
    const double kd = sub(add(mul(x, kInvLn2), kRoundMagic), kRoundMagic);  // nearest integer, ties to even
    const double hi = sub(x, mul(kd, kLn2Hi)), lo = mul(kd, kLn2Lo);
    const double r = sub(hi, lo), t = mul(r, r);
    const double poly = add(kExpP1, mul(t, add(kExpP2, mul(t, add(kExpP3, mul(t, add(kExpP4, mul(t, kExpP5))))))));
    const double c = sub(r, mul(t, poly));
    const double y = sub(1.0, sub(sub(lo, mul(r, c) / sub(2.0, c)), hi));
    // y * 2^k in two exact-or-once-rounded steps, so that subnormal results round once
    const int64_t k = static_cast<int64_t>(kd), k1 = k >> 1, k2 = k - k1;
    return mul(mul(y, from_bits(static_cast<uint64_t>(k1 + 1023) << 52)), from_bits(static_cast<uint64_t>(k2 + 1023) << 52));
}

// log(x) for positive normal x (the callers clamp at 1e-20).
DYNIN_RT_DET_HD inline double log(double x) {
    const uint64_t b = bits(x);
    const int64_t hx = static_cast<int64_t>(b >> 32) & 0x000fffff;
    const int64_t i = (hx + 0x95f64) & 0x100000;  // the mantissa in [sqrt(2)/2, sqrt(2))
    const int64_t k = static_cast<int64_t>(b >> 52) - 1023 + (i >> 20);
    const double m = from_bits((static_cast<uint64_t>(hx | (i ^ 0x3ff00000)) << 32) | (b & 0xffffffffu));
    const double f = sub(m, 1.0), dk = static_cast<double>(k);
    const double s = f / add(2.0, f), z = mul(s, s), w = mul(z, z);
    const double t1 = mul(w, add(kLg2, mul(w, add(kLg4, mul(w, kLg6)))));
    const double t2 = mul(z, add(kLg1, mul(w, add(kLg3, mul(w, add(kLg5, mul(w, kLg7)))))));
    const double r = add(t2, t1);
    if (((hx - 0x6147a) | (0x6b851 - hx)) > 0) {
        const double hfsq = mul(mul(0.5, f), f);
        return sub(mul(dk, kLn2Hi), sub(sub(hfsq, add(mul(s, add(hfsq, r)), mul(dk, kLn2Lo))), f));
    }
    return sub(mul(dk, kLn2Hi), sub(sub(mul(s, sub(f, r)), mul(dk, kLn2Lo)), f));
}

// -log(-log u) with the official clamps at 1e-20 (models/sampling.py).
DYNIN_RT_DET_HD inline double gumbel(double u) {
    const double inner = -log(u < 1e-20 ? 1e-20 : u);
    return -log(inner < 1e-20 ? 1e-20 : inner);
}

// The fixed summation order of det_sum (see the top of this file) over 256 partials, in place.
constexpr int kSumLanes = 256;
DYNIN_RT_DET_HD inline double sum_tree(double* partials) {
    for (int warp = 0; warp < kSumLanes / 32; ++warp)
        for (int off = 16; off > 0; off /= 2)
            for (int l = 0; l < off; ++l) partials[warp * 32 + l] = add(partials[warp * 32 + l], partials[warp * 32 + l + off]);
    double s = partials[0];
    for (int warp = 1; warp < kSumLanes / 32; ++warp) s = add(s, partials[warp * 32]);
    return s;
}

}  // namespace
}  // namespace det
}  // namespace dynin_rt
