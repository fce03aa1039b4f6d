// kernels_avx512.cpp: AVX-512 (F, BW, VL, DQ) + VNNI kernel primitives (see CpuKernels in
// core/quant.h). Each must equal its scalar reference in core/quant_ref.cpp
// (tests/test_kernels.cpp): quantize_act and decode_meta bit for bit, the dot products to float
// rounding.
//
// Dot products work in steps of 64 inputs. The codes of the 64 inputs i0 .. i0+63 are expanded
// to one zmm of 64 unsigned bytes in input order (byte j = input i0 + j), the activations are
// one 64-byte load, and one vpdpbusd (u8 codes x s8 activations) gives 16 int32 lanes:
//     lane l = sum over inputs i0 + 4l .. i0 + 4l + 3 of code * x
// so lanes 0..7 belong to activation block b = i0/32 and lanes 8..15 to block b + 1.
// vpdpbusd adds the four products straight into int32 (no 16-bit pair sum as AVX2's maddubs
// has), so 8-bit codes up to 255 need no correction: 4 * 255 * 127 is far from overflow.
// The lanes are converted to float and multiplied by a vector of per-lane scales
// xd[block] * s[group] (see StepScales), accumulated in float.
// Steps are taken in pairs (128 inputs: one 2- or 3-bit chunk, two 4-bit chunks, four 1- or
// 8-bit chunks) with two accumulators, so consecutive FMAs do not wait on each other.
// The kernel of rg weights in the row-tiled layout is in tiles_avx512_gfni.cpp.

#include <algorithm>
#include <cstring>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/simd_avx512.h"
#include "core/half.h"

namespace lb {
namespace {

// Horizontal sum / max. (Not _mm512_reduce_*_ps: GCC 12's versions trip -Wuninitialized on
// their internal _mm256_undefined values.) The upper 256 bits are moved down with a shuffle.
inline __m256 fold256(__m512 v) { return _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2))); }

inline float hsum(__m512 v) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), fold256(v));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float hmax(__m512 v) {
    const __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(v), fold256(v));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// 64 bits (bit j = input j) -> 64 bytes of 0/1: the bits are used directly as a byte mask
inline __m512i expand_bits64(uint64_t bits) { return _mm512_maskz_mov_epi8(_cvtu64_mask64(bits), _mm512_set1_epi8(1)); }

// Codes of inputs i0 + 64*S .. i0 + 64*S + 63 as 64 bytes in input order; i0 is a multiple of 128.
// Chunk layouts (formats/blocktypes.md, code_get in core/quant_ref.cpp):
//   1-bit: 4 bytes per 32 inputs, bit i = input i        -> 8 bytes are one 64-bit byte mask
//   2-bit: 32 bytes per 128 inputs, input 32t + j = (byte j >> 2t) & 3
//   3-bit: 48 bytes per 128 inputs: the 2-bit layout for the low 2 bits, then 16 bytes of
//          high bits, bit i = input i (1-bit layout)
//   4-bit: 32 bytes per 64 inputs, input j = low nibble of byte j, input 32 + j = high nibble
//   8-bit: one byte per input
template <int BITS, int S>
inline __m512i codes64(const uint8_t* codes, uint64_t i0) {
    if constexpr (BITS == 1) {
        return expand_bits64(load_u64(codes + i0 / 8 + 8 * S));
    } else if constexpr (BITS == 2 || BITS == 3) {
        // Both 256-bit halves get the chunk's 32 bytes; the low half is shifted by 2t = 4S
        // (inputs 32t + j with t = 2S), the high half by 2t = 4S + 2 (t = 2S + 1). A 16-bit
        // shift moves bits of the high byte into the top of the low byte, but the mask keeps
        // bits 0..1 of each byte, which still come from that byte (shift <= 6).
        const uint8_t* c = codes + i0 / 128 * (BITS == 2 ? 32 : 48);
        const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
        const __m512i cnt = _mm512_inserti64x4(_mm512_set1_epi16(4 * S), _mm256_set1_epi16(4 * S + 2), 1);
        __m512i q = _mm512_and_si512(_mm512_srlv_epi16(v, cnt), _mm512_set1_epi8(3));
        if constexpr (BITS == 3) {
            // the high bit of input 64S + j is bit j of the 8 bytes at 32 + 8S: add 4 where set
            const __mmask64 hi = _cvtu64_mask64(load_u64(c + 32 + 8 * S));
            q = _mm512_mask_add_epi8(q, hi, q, _mm512_set1_epi8(4));
        }
        return q;
    } else if constexpr (BITS == 4) {
        // one whole chunk: low half = low nibbles (inputs 0..31), high half = high nibbles (32..63)
        const uint8_t* c = codes + (i0 / 64 + S) * 32;
        const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
        const __m512i cnt = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
        return _mm512_and_si512(_mm512_srlv_epi16(v, cnt), _mm512_set1_epi8(15));
    } else {
        return _mm512_loadu_si512(codes + i0 + 64 * S);
    }
}

// Per-lane scales xd[i / 32] * s[i / g] of one step, lane l covering inputs i0+4l .. i0+4l+3.
// GK says how groups fall on the 16 lanes:
//    0: no group scales (s == nullptr): lanes 0..7 xd[b], lanes 8..15 xd[b+1]
//    8: 8 groups per step, lanes 2j, 2j+1 -> s[i0/8 + j]
//   16: 4 groups per step, lanes 4j .. 4j+3 -> s[i0/16 + j]
//   32: one group per block, lanes 8h .. 8h+7 -> s[b + h]
//   64: g a multiple of 64: steps start at multiples of 64, so a whole step is in one group
//   -1: any other multiple of 32 (96, 160, ..): one group per block, found by counting blocks
// full() must be called once per 64-input step in order; half() once at the end for a last
// 32-input step (1- and 8-bit rows): it reads the scales of block b only (not past the row) and
// leaves lanes 8..15 at zero.
template <int GK>
class StepScales {
 public:
    StepScales(const float* xd, const float* s, uint32_t g)
        : xd_(xd), s_(s), per_(GK == 64 ? g / 64 : g / 32), left_(per_) {}

    __m512 full(uint64_t i0) { return scales(i0, 0x3, 0xFF); }
    __m512 half(uint64_t i0) { return scales(i0, 0x1, 0x0F); }

 private:
    // m2: blocks of the step (2 or 1); m8: units of 8 of the step (8 or 4)
    __m512 scales(uint64_t i0, __mmask16 m2, __mmask16 m8) {
        const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        const uint64_t b = i0 / 32;
        const __m512 xd2 = _mm512_maskz_loadu_ps(m2, xd_ + b);  // xd[b], xd[b+1] in lanes 0, 1
        if constexpr (GK == 0) {
            return _mm512_permutexvar_ps(halves, xd2);
        } else if constexpr (GK == 8) {
            const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
            const __m512 sv = _mm512_permutexvar_ps(pairs, _mm512_maskz_loadu_ps(m8, s_ + i0 / 8));
            return _mm512_mul_ps(sv, _mm512_permutexvar_ps(halves, xd2));
        } else if constexpr (GK == 16) {
            const __m512i quads = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
            const __m512 sv =
                _mm512_permutexvar_ps(quads, _mm512_maskz_loadu_ps(__mmask16(m2 == 0x3 ? 0xF : 0x3), s_ + i0 / 16));
            return _mm512_mul_ps(sv, _mm512_permutexvar_ps(halves, xd2));
        } else if constexpr (GK == 32) {
            return _mm512_permutexvar_ps(halves, _mm512_mul_ps(xd2, _mm512_maskz_loadu_ps(m2, s_ + b)));
        } else if constexpr (GK == 64) {
            const __m512 r = _mm512_mul_ps(_mm512_permutexvar_ps(halves, xd2), _mm512_set1_ps(s_[gi_]));
            if (--left_ == 0) ++gi_, left_ = per_;
            return r;
        } else {
            // group of block b, then of block b + 1
            const float s0 = s_[gi_];
            if (--left_ == 0) ++gi_, left_ = per_;
            float s1 = 0;
            if (m2 == 0x3) {
                s1 = s_[gi_];
                if (--left_ == 0) ++gi_, left_ = per_;
            }
            return _mm512_permutexvar_ps(halves, _mm512_mul_ps(xd2, _mm512_zextps128_ps512(_mm_setr_ps(s0, s1, 0, 0))));
        }
    }

    const float* xd_;
    const float* s_;
    uint64_t per_;     // GK 64: steps per group; GK -1: blocks per group
    uint64_t left_;    // steps (blocks) left in the current group
    uint64_t gi_ = 0;  // current group
};

template <int BITS, int GK>
float dot_loop(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    StepScales<GK> sc(xd, s, g);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    auto step = [&](__m512 acc, __m512i q, uint64_t i0) {
        const __m512i x = _mm512_loadu_si512(xq + i0);
        const __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sc.full(i0), acc);
    };
    uint64_t i0 = 0;
    for (; i0 + 128 <= kp; i0 += 128) {
        acc0 = step(acc0, codes64<BITS, 0>(codes, i0), i0);
        acc1 = step(acc1, codes64<BITS, 1>(codes, i0), i0 + 64);
    }
    // kp is a multiple of the chunk: 128 (2-, 3-bit), 64 (4-bit) or 32 (1-, 8-bit)
    if (i0 + 64 <= kp) {
        acc0 = step(acc0, codes64<BITS, 0>(codes, i0), i0);
        i0 += 64;
    }
    if constexpr (BITS == 1 || BITS == 8) {
        if (i0 < kp) {
            // last 32 inputs: masked loads leave bytes 32..63 (so lanes 8..15) zero
            const __mmask64 half = 0xFFFFFFFFull;
            __m512i q;
            if constexpr (BITS == 1)
                q = expand_bits64(load_u32(codes + i0 / 8));
            else
                q = _mm512_maskz_loadu_epi8(half, codes + i0);
            const __m512i x = _mm512_maskz_loadu_epi8(half, xq + i0);
            const __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sc.half(i0), acc1);
        }
    }
    return hsum(_mm512_add_ps(acc0, acc1));
}

template <int BITS>
float dot_avx512(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    if (!s) return dot_loop<BITS, 0>(codes, kp, xq, xd, s, g);
    if (g == 8) return dot_loop<BITS, 8>(codes, kp, xq, xd, s, g);
    if (g == 16) return dot_loop<BITS, 16>(codes, kp, xq, xd, s, g);
    if (g == 32) return dot_loop<BITS, 32>(codes, kp, xq, xd, s, g);
    if (g % 64 == 0) return dot_loop<BITS, 64>(codes, kp, xq, xd, s, g);
    return dot_loop<BITS, -1>(codes, kp, xq, xd, s, g);
}

// One block of 32 floats per iteration, as two zmm; a partial or empty block at the end is read
// with masked loads (zeros past k, as the reference's q = 0 there).
void quantize_act_avx512(const float* x, uint64_t k, QActRow out) {
    const uint64_t kp = act_kp(k);
    const __m512i first4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    for (uint64_t b = 0; b < kp; b += 32) {
        const uint64_t len = b >= k ? 0 : k - b >= 32 ? 32 : k - b;
        const uint32_t valid = len == 32 ? 0xFFFFFFFFu : (1u << len) - 1u;
        const __m512 v0 = _mm512_maskz_loadu_ps(__mmask16(valid), x + b);
        const __m512 v1 = _mm512_maskz_loadu_ps(__mmask16(valid >> 16), x + b + 16);
        // max |x|. vmaxps returns its second operand when either is NaN; with |v| first a NaN
        // input is skipped, as std::fmax does in the reference.
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        const float amax = hmax(m);
        const float d = amax / 127.0f;
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        out.d[b / 32] = d;
        // vcvtps2dq rounds to nearest even (MXCSR default), as std::nearbyint; |q| <= 127 so
        // the saturating narrow to int8 is exact
        const __m512 idv = _mm512_set1_ps(id);
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out.q + b), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out.q + b + 16), _mm512_cvtsepi32_epi8(q1));
        if (!out.s8) continue;
        // unit sums: unit u = int32 lanes 8u .. 8u+7 of (q0, q1). Adding 128-bit lanes (0, 2) and
        // (1, 3) of q0 and q1 puts unit u's four partial sums in 128-bit lane u; two in-lane swaps
        // finish them (every element of lane u then holds the sum; element 4u is kept).
        __m512i su = _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
        su = _mm512_add_epi32(su, _mm512_shuffle_epi32(su, _MM_PERM_BADC));
        su = _mm512_add_epi32(su, _mm512_shuffle_epi32(su, _MM_PERM_CDAB));
        // s8 = d * float(sum): one rounding, as the reference
        const __m512 s8 = _mm512_mul_ps(_mm512_cvtepi32_ps(su), _mm512_set1_ps(d));
        _mm_storeu_ps(out.s8 + b / 8, _mm512_castps512_ps128(_mm512_permutexvar_ps(first4, s8)));
    }
}

float dot_f32_avx512(const float* a, const float* b, uint64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i < n; i += 16) {  // at most two more, the last one masked
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    return hsum(_mm512_add_ps(acc0, acc1));
}

// ---- meta decoding, 16 columns per step ------------------------------------------------------
// Same arithmetic as decode_field_ref: value = f16(f16(code - tz) * ts), with vcvtps2ph
// rounding to nearest even as round_f16 does.

// 16 fields of F (1..8) bits from column c0 (a multiple of 16, so byte aligned), as floats.
// F is a template argument so that the byte copies below have a constant size (plain loads; a
// variable-size copy goes through the stack and stalls store forwarding).
template <uint32_t F>
inline __m512 codes16(const uint8_t* row, uint64_t c0) {
    const uint8_t* p = row + c0 * F / 8;
    if constexpr (F == 8) {
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    } else {
        // fields 8h .. 8h+7 are the F bytes at p + h * F; each group of 4 fields fits a 32-bit
        // word: word 2h = fields 8h..8h+3, word 2h+1 = fields 8h+4..8h+7
        uint64_t lo = 0, hi = 0;
        std::memcpy(&lo, p, F);
        std::memcpy(&hi, p + F, F);
        const __m128i words = _mm_setr_epi32(int(uint32_t(lo)), int(uint32_t(lo >> (4 * F))), int(uint32_t(hi)),
                                             int(uint32_t(hi >> (4 * F))));
        // lane j: word j / 4 shifted down by (j % 4) * F
        const __m512i quads = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        const __m512i sh =
            _mm512_setr_epi32(0, F, 2 * F, 3 * F, 0, F, 2 * F, 3 * F, 0, F, 2 * F, 3 * F, 0, F, 2 * F, 3 * F);
        const __m512i f = _mm512_srlv_epi32(_mm512_permutexvar_epi32(quads, _mm512_castsi128_si512(words)), sh);
        return _mm512_cvtepi32_ps(_mm512_and_si512(f, _mm512_set1_epi32(int((1u << F) - 1u))));
    }
}

// columns [0, c16) of a field of F-bit codes through the table (c16 a multiple of 16)
template <uint32_t F>
void decode_codes16(const uint8_t* row, const uint8_t* tab, const MetaMap& map, uint64_t mrow, uint64_t c16,
                    float* out) {
    if (map.cstride == 0) {  // the entry does not depend on the column: one entry for the row
        const uint8_t* e = tab + 4ull * map.index(mrow, 0);
        const float fs = f16_to_f32(uint16_t(e[0] | e[1] << 8)), fz = f16_to_f32(uint16_t(e[2] | e[3] << 8));
        const __m512 ts = _mm512_set1_ps(fs), tz = _mm512_set1_ps(fz);
        if (second_level_exact(fs, fz)) {  // e.g. GreenBit's zero codes: z = code + 1, no rounding needed
            for (uint64_t c = 0; c < c16; c += 16)
                _mm512_storeu_ps(out + c, _mm512_mul_ps(_mm512_sub_ps(codes16<F>(row, c), tz), ts));
        } else if (zero_exact(fz)) {
            for (uint64_t c = 0; c < c16; c += 16)
                _mm512_storeu_ps(out + c, field_value16<true>(codes16<F>(row, c), ts, tz));
        } else {
            for (uint64_t c = 0; c < c16; c += 16) _mm512_storeu_ps(out + c, field_value16(codes16<F>(row, c), ts, tz));
        }
        return;
    }
    // cstride 1: consecutive columns use consecutive entries, unless the index wraps around
    // `period`
    // the entry index advances with the column; track it without a division per step
    uint64_t idx = map.index(mrow, 0);
    for (uint64_t c = 0; c < c16; c += 16, idx += 16) {
        if (map.period && idx >= map.period) idx %= map.period;
        if (map.period && idx + 16 > map.period) {
            for (uint64_t j = c; j < c + 16; ++j) out[j] = decode_field_ref(row, tab, F, map, mrow, j, 0.0f);
            continue;
        }
        __m512 ts, tz;
        entries16(tab + 4 * idx, ts, tz);
        const __m512 code = codes16<F>(row, c);
        _mm512_storeu_ps(out + c,
                         zero_exact16(tz) == 0xffff ? field_value16<true>(code, ts, tz) : field_value16(code, ts, tz));
    }
}

// one meta field for columns [0, cols): out[c] = value; returns the first column not done
// (the caller finishes the rest with the scalar reference)
uint64_t decode_field16(const uint8_t* row, const uint8_t* tab, uint32_t fbits, const MetaMap& map, uint64_t mrow,
                        uint64_t cols, float none, float* out) {
    const uint64_t c16 = cols / 16 * 16;
    if (fbits == 0) {
        for (uint64_t c = 0; c < cols; ++c) out[c] = none;
        return cols;
    }
    if (fbits == 16) {
        for (uint64_t c = 0; c < c16; c += 16)
            _mm512_storeu_ps(out + c,
                             _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c))));
        return c16;
    }
    if (map.cstride > 1) return 0;  // strided entries: left to the reference
    if (!with_field_bits(fbits, [&](auto f) { decode_codes16<decltype(f)::value>(row, tab, map, mrow, c16, out); }))
        return 0;
    return c16;
}

void decode_meta_avx512(const WeightView& w, uint64_t mrow, float* s, float* m) {
    const QParams& p = w.p;
    const MetaRow r = meta_row_of(w, mrow);
    const uint64_t ds = decode_field16(r.srow, r.stab, p.sbits, p.smap, mrow, r.cols, 1.0f, s);
    const uint64_t dz = decode_field16(r.zrow, r.ztab, p.zbits, p.zmap, mrow, r.cols, 0.0f, m);  // m holds z here
    const uint64_t done = (ds < dz ? ds : dz) / 16 * 16;
    // m = -(z * s) (code zeros) or -z (value zeros): negation by flipping the sign bit, exactly
    // as the reference's unary minus
    const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
    for (uint64_t c = 0; c < done; c += 16) {
        __m512 z = _mm512_loadu_ps(m + c);
        if (p.zmode == ZeroMode::code) z = _mm512_mul_ps(z, _mm512_loadu_ps(s + c));
        _mm512_storeu_ps(m + c, _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(z), sign)));
    }
    if (done < r.cols) decode_meta_cols_ref(w, mrow, done, r.cols, s, m);
}

// 128-bit quarters q0..q3: (a, b) -> [a.q0 + a.q2, a.q1 + a.q3, b.q0 + b.q2, b.q1 + b.q3]
static inline __m512 fold_pair(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
// two folded pairs (a, b), (c, d) -> quarter k holds 4 partial sums of a, b, c, d in turn
static inline __m512 fold_quad(__m512 ab, __m512 cd) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
}
static inline float lane(__m512 t, int i) { return _mm512_cvtss_f32(_mm512_permutexvar_ps(_mm512_set1_epi32(i), t)); }

// y[c * ldy] = hsum(v[c]) for c < C (1..8), the C sums reduced together (vectors past C are
// zeros): 8 vectors take 23 operations instead of 64. The sums leave through registers (a
// vector store read back as scalars stalls on store forwarding).
template <int C>
static inline void hsums(const __m512 (&v)[C], float* y, uint64_t ldy) {
    static_assert(C >= 1 && C <= 8, "1 to 8 vectors");
    auto at = [&](int c) { return c < C ? v[c] : _mm512_setzero_ps(); };
    if constexpr (C == 1) {
        y[0] = hsum(v[0]);
    } else if constexpr (C <= 4) {
        __m512 t = fold_quad(fold_pair(at(0), at(1)), fold_pair(at(2), at(3)));
        t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
        t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
        for (int c = 0; c < C; ++c) y[c * ldy] = lane(t, 4 * c);  // vector k's sum fills quarter k
    } else {
        const __m512 q0 = fold_quad(fold_pair(at(0), at(1)), fold_pair(at(2), at(3)));
        const __m512 q1 = fold_quad(fold_pair(at(4), at(5)), fold_pair(at(6), at(7)));
        __m512 t = _mm512_add_ps(_mm512_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
        t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
        // quarter k: [vector k's sum x2, vector 4 + k's sum x2]
        for (int c = 0; c < C; ++c) y[c * ldy] = lane(t, c < 4 ? 4 * c : 4 * (c - 4) + 2);
    }
}

// C columns at a time: the row's 16 values converted once, one accumulator per column
template <int C>
static inline void dot_f16_cols_block(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, float* y,
                                      uint64_t ldy) {
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (uint64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
        const __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i));
        for (int c = 0; c < C; ++c) acc[c] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + c * ldx + i), acc[c]);
    }
    hsums<C>(acc, y, ldy);
}

void dot_f16_cols_avx512(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, uint64_t m, float* y,
                         uint64_t ldy) {
    blocks_of_8(m, [&](auto c, uint64_t j) {
        dot_f16_cols_block<decltype(c)::value>(w, n, x + j * ldx, ldx, y + j * ldy, ldy);
    });
}

// e^t as core/quant.h describes it (CpuKernels::swiglu)
static inline __m512 exp_avx512(__m512 tx) {
    // 100: scalef makes 2^n beyond 2^127 inf
    const __m512 t = _mm512_min_ps(_mm512_set1_ps(100.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), tx));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), t);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

void swiglu_avx512(const float* x, const float* g, float* y, uint64_t n) {
    for (uint64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        __m512 v =
            _mm512_div_ps(xv, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), xv))));
        if (g) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, g + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

// 16 columns (m of them real) of an a0 class from i: returns xs = s x, adds m x to bias, with
// m = -(z s) or -z by flipping the sign bit as the reference's unary minus
static inline __m512 a0_step(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t i,
                             __mmask16 m, __m512& bias) {
    const __m512 sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i));
    __m512 zv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, z + i));
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    if (code_zero) zv = _mm512_mul_ps(zv, sv);
    const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
    bias = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(zv), sign)), xv, bias);
    return _mm512_mul_ps(sv, xv);
}

static inline __mmask16 tail_mask16(uint64_t i, uint64_t k) {
    return k - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - i)) - 1);
}

float a0_scale_avx512(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k, float* xs) {
    __m512 bias = _mm512_setzero_ps();
    for (uint64_t i = 0; i < k; i += 16) {
        const __mmask16 m = tail_mask16(i, k);
        _mm512_mask_storeu_ps(xs + i, m, a0_step(s, z, code_zero, x, i, m, bias));
    }
    return hsum(bias);
}

// NR rows of one class: xs = s x is made once per 16 columns and added into each row's lanes
// under that row's 16 code bits (one masked add per row; the rows' bits of a unit are
// consecutive, unit_bytes apart); whole steps unmasked, the tail step masked
template <int NR, bool CODE_ZERO>
static void a0_bits1_block(const uint16_t* s, const uint16_t* z, const float* x, uint64_t k, const uint8_t* codes,
                           uint64_t unit_bytes, float* y, uint64_t ystride, const uint8_t* next, uint64_t next_bytes) {
    // the next class, a slice per step
    SlicePrefetch pf(next, next_bytes, (k + 15) / 16);
    __m512 acc[NR], bacc = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < NR; ++t) acc[t] = _mm512_setzero_ps();
    auto rows = [&](uint64_t i, __m512 xs) {
        const uint8_t* c = codes + i / 16 * unit_bytes;
#pragma GCC unroll 8
        for (int t = 0; t < NR; ++t) {  // codes past k are zero (rows are padded with zero codes)
            __mmask16 bits;             // kmovw from memory: GCC loads through a general register (two ops)
            asm("kmovw %1, %0" : "=k"(bits) : "m"(*reinterpret_cast<const uint16_t*>(c + 2 * t)));
            acc[t] = _mm512_mask_add_ps(acc[t], bits, acc[t], xs);
        }
    };
    const uint64_t kw = k & ~uint64_t(15);
    for (uint64_t i = 0; i < kw; i += 16) {
        rows(i, a0_step(s, z, CODE_ZERO, x, i, __mmask16(0xffff), bacc));
        pf.step();
    }
    if (kw < k) rows(kw, a0_step(s, z, CODE_ZERO, x, kw, tail_mask16(kw, k), bacc));
    const float bias = hsum(bacc);
#pragma GCC unroll 8
    for (int t = 0; t < NR; ++t) y[t * ystride] = hsum(acc[t]) + bias;
}

void a0_bits1_avx512(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                     const uint8_t* codes, uint64_t nrows, float* y, uint64_t ystride, const uint8_t* next,
                     uint64_t next_bytes) {
    blocks_of_8(nrows, [&](auto c, uint64_t t) {
        constexpr int NR = decltype(c)::value;
        const uint8_t* ct = codes + 2 * t;
        const uint8_t* nt = t == 0 ? next : nullptr;
        if (code_zero)
            a0_bits1_block<NR, true>(s, z, x, k, ct, 2 * nrows, y + t * ystride, ystride, nt, next_bytes);
        else
            a0_bits1_block<NR, false>(s, z, x, k, ct, 2 * nrows, y + t * ystride, ystride, nt, next_bytes);
    });
}

float exp_sum_avx512(const float* x, float scale, float shift, float* y, uint64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (uint64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 t =
            _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_set1_ps(scale)), _mm512_set1_ps(shift));
        const __m512 e = _mm512_maskz_mov_ps(m, exp_avx512(t));
        _mm512_mask_storeu_ps(y + i, m, e);
        acc = _mm512_add_ps(acc, e);
    }
    return hsum(acc);
}

void cvt_to_f16_avx512(const float* src, uint16_t* dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(
            dst + i, m,
            _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

void cvt_f16_avx512(const uint16_t* src, float* dst, uint64_t n) {
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    if (i < n) {  // masked tail: nothing read or written past n
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

// 16 f16 (BF false) or bf16 (true) values -> floats
template <bool BF>
inline __m512 h16_ps(__m256i h) {
    if constexpr (BF) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

// 32 weights per step, the last step masked; prefetch 4 KiB ahead, one line per step
template <bool BF>
float dot_h16_avx512(const uint16_t* w, const float* x, uint64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(w + i + 2048), _MM_HINT_T0);
        acc0 = _mm512_fmadd_ps(h16_ps<BF>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i))),
                               _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(h16_ps<BF>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 16))),
                               _mm512_loadu_ps(x + i + 16), acc1);
    }
    for (; i < n; i += 16) {  // at most two more, the last one masked
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
        acc0 = _mm512_fmadd_ps(h16_ps<BF>(_mm256_maskz_loadu_epi16(m, w + i)), _mm512_maskz_loadu_ps(m, x + i), acc0);
    }
    return hsum(_mm512_add_ps(acc0, acc1));
}

// 16 inputs per step: two code bytes are the add mask

}  // namespace

const CpuKernels& kernels_avx512() {
    static const CpuKernels k = [] {
        CpuKernels t = make_kernels("avx512", quantize_act_avx512, dot_avx512<1>, dot_avx512<2>, dot_avx512<3>,
                                    dot_avx512<4>, dot_avx512<8>, dot_f32_avx512, decode_meta_avx512, cvt_f16_avx512,
                                    cvt_to_f16_avx512, dot_h16_avx512<false>, dot_h16_avx512<true>, swiglu_avx512,
                                    dot_f16_cols_avx512, exp_sum_avx512, a0_scale_avx512, a0_bits1_avx512);
        t.tiles = cpu_has_gfni() ? tiles_avx512 : tiles_avx2;  // tiles_avx512_gfni.cpp, tiles_avx2.cpp
        return t;
    }();
    return k;
}

}  // namespace lb
