// Stand-in for cuda_fp16.h in the emulated build: __half as 16 stored bits with the conversions the
// kernels use (round to nearest even; subnormals; overflow to infinity from 65520 up, as cvt.rn.f16).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f) {  // NOLINT: implicit, as the toolkit's
        uint32_t x;
        std::memcpy(&x, &f, 4);
        const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
        if (ax >= 0x7f800000u) {
            __x = static_cast<unsigned short>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
        } else if (ax >= 0x477ff000u) {  // rounds to infinity
            __x = static_cast<unsigned short>(sign | 0x7c00u);
        } else if (ax < 0x38800000u) {  // below 2^-14: a subnormal multiple of 2^-24 (exact scaling, one rounding)
            float a;
            std::memcpy(&a, &ax, 4);
            __x = static_cast<unsigned short>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
        } else {
            __x = static_cast<unsigned short>(sign | ((ax - (112u << 23) + 0xfffu + ((ax >> 13) & 1u)) >> 13));
        }
    }
    operator float() const {  // NOLINT
        const uint32_t sign = static_cast<uint32_t>(__x & 0x8000u) << 16;
        const uint32_t exp = (__x >> 10) & 0x1fu, mant = __x & 0x3ffu;
        if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
            const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
            return sign ? -v : v;
        }
        const uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112u) << 23) | (mant << 13));
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
    }
};
typedef __half half;

inline __half __float2half_rn(float f) { return __half(f); }
inline __half __float2half(float f) { return __half(f); }
inline float __half2float(__half h) { return static_cast<float>(h); }
