// decode.h: block decoding shared by the host and the CUDA device: code extraction per bit width
// from the lowbit chunk layouts, meta field reads, the second-level table decode
// f16(f16(c - tz) * ts), and the weight at (row, col) of rg / a0 / sign tensors
// (formats/blocktypes.md). Every function is `__host__ __device__` under nvcc and plain inline
// under g++, so tests/test_cuda_decode.cpp checks on the CPU, bit for bit against
// dequant_row_ref, exactly the code the device kernels (backends/cuda/*.cu) run.
//
// Bit-exactness between host and device: fp16 rounding is done with integer operations only
// (no __float2half, no float tricks), and every float product / sum that the reference rounds
// separately is rounded separately here (__fmul_rn / __fadd_rn on the device, which nvcc never
// contracts into an FMA; on the host the project builds with ISO C++ and no FMA contraction).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define LB_HD __host__ __device__ __forceinline__
#else
#define LB_HD inline
#endif

namespace lb::dec {

// ---- float bits, fp16 and bf16 (integer operations only) -------------------------------------
LB_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
#endif
}
LB_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
#endif
}

// binary16 -> float, exact (subnormals normalized by integer shifts)
LB_HD float f16_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        // subnormal man * 2^-24: shift the leading one up to bit 10
        uint32_t e = 113;  // exponent field of 2^-14
        while (!(man & 0x400u)) {
            man <<= 1;
            --e;
        }
        return bits_f32(sign | (e << 23) | ((man & 0x3ffu) << 13));
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// float -> binary16 bits, round to nearest even, overflow to inf, NaN quiet
LB_HD uint16_t f32_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
    if (a < 0x38800000u) {  // subnormal or zero result: value / 2^-24, rounded to nearest even
        const uint32_t e = a >> 23;
        if (e < 102) return uint16_t(sign);              // below 2^-25: rounds to 0
        const uint32_t m = (a & 0x7fffffu) | 0x800000u;  // value = m * 2^(e - 150)
        const uint32_t shift = 126 - e;                  // value / 2^-24 = m >> shift (shift 14..24)
        const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        const uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
        return uint16_t(sign | r);
    }
    const uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
    return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

LB_HD float round_f16(float f) { return f16_f32(f32_f16(f)); }
LB_HD float bf16_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

// products and sums rounded one at a time (never fused)
LB_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
LB_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

// ---- codes ---------------------------------------------------------------------------------
LB_HD uint32_t chunk_inputs(uint32_t bits) { return bits == 1 || bits == 8 ? 32u : bits == 4 ? 64u : 128u; }
LB_HD uint32_t chunk_bytes(uint32_t bits) { return bits == 1 ? 4u : bits == 3 ? 48u : 32u; }

// code of input i (0 <= i < chunk_inputs(BITS)) of the chunk at c
template <uint32_t BITS>
LB_HD uint32_t code_in_chunk(const uint8_t* c, uint32_t i) {
    if constexpr (BITS == 1) return (c[i >> 3] >> (i & 7)) & 1u;
    if constexpr (BITS == 2) return (c[i & 31] >> (2 * (i >> 5))) & 3u;
    if constexpr (BITS == 3) return ((c[i & 31] >> (2 * (i >> 5))) & 3u) | (((c[32 + (i >> 3)] >> (i & 7)) & 1u) << 2);
    if constexpr (BITS == 4) return (c[i & 31] >> (4 * (i >> 5))) & 15u;
    return c[i];
}
// runtime bit width
LB_HD uint32_t code_in_chunk_rt(const uint8_t* c, uint32_t bits, uint32_t i) {
    switch (bits) {
        case 1:
            return code_in_chunk<1>(c, i);
        case 2:
            return code_in_chunk<2>(c, i);
        case 3:
            return code_in_chunk<3>(c, i);
        case 4:
            return code_in_chunk<4>(c, i);
        default:
            return code_in_chunk<8>(c, i);
    }
}
// code of input i of a code row
template <uint32_t BITS>
LB_HD uint32_t code_at(const uint8_t* row, uint64_t i) {
    constexpr uint32_t ci = BITS == 1 || BITS == 8 ? 32u : BITS == 4 ? 64u : 128u;
    constexpr uint32_t cb = BITS == 1 ? 4u : BITS == 3 ? 48u : 32u;
    return code_in_chunk<BITS>(row + (i / ci) * cb, uint32_t(i % ci));
}
LB_HD uint32_t code_at_rt(const uint8_t* row, uint32_t bits, uint64_t i) {
    const uint32_t ci = chunk_inputs(bits);
    return code_in_chunk_rt(row + (i / ci) * chunk_bytes(bits), bits, uint32_t(i % ci));
}

// ---- meta ----------------------------------------------------------------------------------
// field `col` of a meta row with `fbits` bits per field (LSB first; 16 = raw f16 bits)
LB_HD uint32_t meta_field(const uint8_t* row, uint32_t fbits, uint64_t col) {
    if (fbits == 8) return row[col];
    if (fbits == 16) return uint32_t(row[2 * col]) | uint32_t(row[2 * col + 1]) << 8;
    const uint64_t bit = col * fbits, last = (bit + fbits - 1) >> 3;
    uint32_t v = row[bit >> 3];
    if (last != (bit >> 3)) v |= uint32_t(row[last]) << 8;
    return (v >> (bit & 7)) & ((1u << fbits) - 1u);
}

// second-level table map (the fields of lb::MetaMap)
struct Map {
    uint32_t rdiv, rstride, cstride, period;
};
LB_HD uint32_t map_index(const Map& m, uint64_t row, uint64_t col) {
    const uint64_t i = (row / m.rdiv) * m.rstride + col * m.cstride;
    return uint32_t(m.period ? i % m.period : i);
}

// a code through its table entry: f16(f16(c - tz) * ts)
LB_HD float table_decode(uint32_t code, const uint8_t* entry) {
    const float ts = f16_f32(uint16_t(entry[0] | entry[1] << 8));
    const float tz = f16_f32(uint16_t(entry[2] | entry[3] << 8));
    return round_f16(mul_rn(round_f16(add_rn(float(code), -tz)), ts));
}

// one meta field: `none` when fbits is 0, raw f16 when 16, else a code through the table
LB_HD float field_value(const uint8_t* row, const uint8_t* tab, uint32_t fbits, const Map& map, uint64_t meta_row,
                        uint64_t col, float none) {
    if (fbits == 0) return none;
    const uint32_t code = meta_field(row, fbits, col);
    if (fbits == 16) return f16_f32(uint16_t(code));
    return table_decode(code, tab + 4ull * map_index(map, meta_row, col));
}

// ---- a weight tensor as the decoder sees it ---------------------------------------------------
// Plain-old-data, passed by value to kernels. `data` is the tensor blob (host or device memory).
enum : uint32_t { geo_rg = 0, geo_a0 = 1, geo_sign = 2 };
struct QWeight {
    const uint8_t* data;
    uint64_t n, k;
    uint32_t geo, bits, sbits, zbits, zmode_value, group;
    Map smap, zmap;
    uint64_t code_row_bytes, scale_row_bytes, zero_row_bytes;
    uint64_t off_codes, off_scales, off_zeros, off_stab, off_ztab, off_gvec, off_hvec;
};

LB_HD const uint8_t* code_row(const QWeight& w, uint64_t row) { return w.data + w.off_codes + row * w.code_row_bytes; }
// meta row of a weight row: rg the row, a0 its class row mod (n / group)
LB_HD uint64_t meta_row(const QWeight& w, uint64_t row) { return w.geo == geo_rg ? row : row % (w.n / w.group); }
// meta column of input i: rg its group, a0 the input itself
LB_HD uint64_t meta_col(const QWeight& w, uint64_t i) { return w.geo == geo_rg ? i / w.group : i; }

// (s, m) of meta (row, col), w = q * s + m (rg, a0)
LB_HD void meta_sm(const QWeight& w, uint64_t mrow, uint64_t col, float& s, float& m) {
    const uint8_t* srow = w.data + w.off_scales + mrow * w.scale_row_bytes;
    const uint8_t* zrow = w.data + w.off_zeros + mrow * w.zero_row_bytes;
    s = field_value(srow, w.data + w.off_stab, w.sbits, w.smap, mrow, col, 1.0f);
    const float z = field_value(zrow, w.data + w.off_ztab, w.zbits, w.zmap, mrow, col, 0.0f);
    m = w.zmode_value ? -z : -mul_rn(z, s);
}

LB_HD float load_f32(const uint8_t* p) {
    return bits_f32(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
}

// weight (row, col) of the tensor, as dequant_row_ref computes it
LB_HD float weight_at(const QWeight& w, uint64_t row, uint64_t col) {
    const uint32_t q = code_at_rt(code_row(w, row), w.bits, col);
    if (w.geo == geo_sign) {
        const float g = load_f32(w.data + w.off_gvec + 4 * col);
        const float h = load_f32(w.data + w.off_hvec + 4 * row);
        return mul_rn(h, q ? -g : g);
    }
    float s, m;
    meta_sm(w, meta_row(w, row), meta_col(w, col), s, m);
    return add_rn(mul_rn(float(q), s), m);
}

}  // namespace lb::dec
