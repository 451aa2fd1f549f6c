// Element types of weights and the conversions the CPU backend needs. Activations are fp32 on the
// CPU; weights are fp32, bf16 or fp16.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace dynin_rt {

enum class DType : uint8_t { F32, BF16, F16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::BF16: return "BF16";
        case DType::F16: return "F16";
    }
    return "?";
}

// Safetensors dtype strings; false for anything dynin_rt does not compute with.
inline bool dtype_from_safetensors(const std::string& s, DType* out) {
    if (s == "F32") { *out = DType::F32; return true; }
    if (s == "BF16") { *out = DType::BF16; return true; }
    if (s == "F16") { *out = DType::F16; return true; }
    return false;
}

inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Round to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
            bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

}  // namespace dynin_rt
