// Stand-in for cuda_bf16.h in the emulated build: __nv_bfloat16 as 16 stored bits with the
// conversions the kernels use (round to nearest even, NaN kept quiet, as the hardware's cvt.rn).
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) {  // NOLINT: implicit, as the toolkit's
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            __x = static_cast<unsigned short>((bits >> 16) | 0x40u);
        } else {
            bits += 0x7fffu + ((bits >> 16) & 1u);
            __x = static_cast<unsigned short>(bits >> 16);
        }
    }
    operator float() const {  // NOLINT
        const uint32_t bits = static_cast<uint32_t>(__x) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
    }
};
typedef __nv_bfloat16 nv_bfloat16;

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return static_cast<float>(h); }
