// half.h: IEEE binary16 and bfloat16 <-> float conversions (scalar, exact, round-to-nearest-even).
// Used by the reference kernels, the container code and the tests; SIMD files use F16C / NEON
// instructions instead and are tested against these.
#pragma once
#include <cstdint>
#include <cstring>

namespace lb {

inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// binary16 -> float, exact for every input (subnormals, inf, NaN included).
inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));  // inf / NaN
    if (exp == 0) {
        if (man == 0) return f32_from_bits(sign);
        // subnormal: value = man * 2^-24
        float v = float(man) * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

// float -> binary16, round to nearest even, overflow to inf, NaN kept quiet.
inline uint16_t f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520 -> inf
    if (a < 0x38800000u) {                                  // result is subnormal or zero
        // value / 2^-24, rounded to nearest even, using float arithmetic (exact for this range)
        const float v = f32_from_bits(a) * 16777216.0f;
        // nearbyint with ties-to-even: add and subtract 2^23
        const float r = (v + 8388608.0f) - 8388608.0f;
        return uint16_t(sign | uint32_t(r));
    }
    const uint32_t mant_odd = (a >> 13) & 1u;
    const uint32_t rounded = a + 0xfffu + mant_odd;  // round half to even on bit 13
    return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

// round a float to the nearest binary16 value, returned as float
inline float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace lb
