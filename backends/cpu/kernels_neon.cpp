// kernels_neon.cpp: AArch64 NEON kernel primitives (see CpuKernels in core/quant.h), plain
// ARMv8.0 (no dot-product extension needed). Each must equal its scalar reference in
// core/quant_ref.cpp (tests/test_kernels.cpp): quantize_act and decode_meta bit for bit, the
// dot products to float rounding.
//
// Dot products work per activation block of 32 inputs. The codes of the block are expanded to
// two uint8x16 in input order (q[0] = inputs 0..15, q[1] = inputs 16..31), multiplied with the
// int8 activations into four int16x8 (p[j] = products of inputs 8j..8j+7), then reduced to one
// int32x4:
//   groups of 8 or 16 (GK 8, 16): lane j = sum over inputs 8j..8j+7 (unit j, exact per unit),
//   otherwise:                    4 partial sums of the block (all lanes share one scale).
// Products fit int16: codes <= 15 give |p| <= 15 * 128, and a lane of up to 8 such products
// stays below 2^15; 8-bit codes (<= 255) give |p| <= 255 * 128 < 2^15 but no room for sums, so
// they are widened to int32 before adding.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/unaligned.h"
#include "core/half.h"

namespace lb {
namespace {

// 32 bits (bit i = input i) -> 32 bytes of 0/1: each byte of the word is copied to 8 lanes,
// lane i of those 8 tests bit i
inline void expand_bits32(uint32_t bits, uint8x16_t out[2]) {
    static const uint8_t kIdx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(bits));  // little endian: byte j = bits >> 8j
    const uint8x16_t bit = vld1q_u8(kBit), one = vdupq_n_u8(1);
    out[0] = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(kIdx)), bit), one);
    out[1] = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(kIdx + 16)), bit), one);
}

// Codes of block t (inputs 32t .. 32t+31) of the chunk at c, as bytes in input order.
// Chunk layouts (formats/blocktypes.md, code_get in core/quant_ref.cpp):
//   1-bit: 4 bytes per 32 inputs, bit i = input i
//   2-bit: 32 bytes per 128 inputs, input 32t + j = (byte j >> 2t) & 3
//   3-bit: 48 bytes per 128 inputs: the 2-bit layout for the low 2 bits, then 16 bytes of
//          high bits, bit i = input i (1-bit layout)
//   4-bit: 32 bytes per 64 inputs, input 32t + j = (byte j >> 4t) & 15
//   8-bit: one byte per input
template <int BITS>
inline void codes32(const uint8_t* c, uint32_t t, uint8x16_t q[2]) {
    if constexpr (BITS == 1) {
        expand_bits32(load_u32(c), q);
    } else if constexpr (BITS == 2 || BITS == 3 || BITS == 4) {
        const int8x16_t sh = vdupq_n_s8(int8_t(-int(t) * (BITS == 4 ? 4 : 2)));  // negative: right shift
        const uint8x16_t mask = vdupq_n_u8(BITS == 4 ? 15 : 3);
        q[0] = vandq_u8(vshlq_u8(vld1q_u8(c), sh), mask);
        q[1] = vandq_u8(vshlq_u8(vld1q_u8(c + 16), sh), mask);
        if constexpr (BITS == 3) {
            uint8x16_t hi[2];
            expand_bits32(load_u32(c + 32 + 4 * t), hi);
            q[0] = vorrq_u8(q[0], vshlq_n_u8(hi[0], 2));
            q[1] = vorrq_u8(q[1], vshlq_n_u8(hi[1], 2));
        }
    } else {
        q[0] = vld1q_u8(c);
        q[1] = vld1q_u8(c + 16);
    }
}

// the block's integer dot product as int32x4 (see the top: per unit when PER_UNIT, else partial)
template <int BITS, bool PER_UNIT>
inline int32x4_t dot32(const uint8x16_t q[2], const int8_t* xq) {
    const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
    if constexpr (BITS == 8) {
        // u8 x s8 -> s16: widen both (codes up to 255 are not int8), one product per lane
        const int16x8_t p0 = vmulq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(q[0]))), vmovl_s8(vget_low_s8(x0)));
        const int16x8_t p1 = vmulq_s16(vreinterpretq_s16_u16(vmovl_high_u8(q[0])), vmovl_high_s8(x0));
        const int16x8_t p2 = vmulq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(q[1]))), vmovl_s8(vget_low_s8(x1)));
        const int16x8_t p3 = vmulq_s16(vreinterpretq_s16_u16(vmovl_high_u8(q[1])), vmovl_high_s8(x1));
        if constexpr (PER_UNIT) {
            // pairwise to int32 per unit, then pairwise adds: lane j = unit j
            const int32x4_t a01 = vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
            const int32x4_t a23 = vpaddq_s32(vpaddlq_s16(p2), vpaddlq_s16(p3));
            return vpaddq_s32(a01, a23);
        } else {
            return vpadalq_s16(vpadalq_s16(vpadalq_s16(vpaddlq_s16(p0), p1), p2), p3);
        }
    } else {
        // codes <= 15 are valid int8: one widening multiply per 8 inputs
        const int8x16_t c0 = vreinterpretq_s8_u8(q[0]), c1 = vreinterpretq_s8_u8(q[1]);
        if constexpr (PER_UNIT) {
            const int16x8_t p0 = vmull_s8(vget_low_s8(c0), vget_low_s8(x0));
            const int16x8_t p1 = vmull_high_s8(c0, x0);
            const int16x8_t p2 = vmull_s8(vget_low_s8(c1), vget_low_s8(x1));
            const int16x8_t p3 = vmull_high_s8(c1, x1);
            // pairwise adds: lanes (2j, 2j+1) of the result hold halves of unit j (4 products each)
            const int16x8_t u = vpaddq_s16(vpaddq_s16(p0, p1), vpaddq_s16(p2, p3));
            return vpaddlq_s16(u);
        } else {
            // accumulate the four products of each lane position in int16 (<= 4 products), then
            // pairs to int32
            int16x8_t p = vmull_s8(vget_low_s8(c0), vget_low_s8(x0));
            p = vmlal_high_s8(p, c0, x0);
            p = vmlal_s8(p, vget_low_s8(c1), vget_low_s8(x1));
            p = vmlal_high_s8(p, c1, x1);
            return vpaddlq_s16(p);
        }
    }
}

// Per-block scales xd[b] * s[i / g] (the block's inputs i = 32b .. 32b+31). GK:
//    0: no group scales (s == nullptr): xd[b] for all lanes
//    8: lane j (unit j) -> s[4b + j]
//   16: lanes 0, 1 -> s[2b], lanes 2, 3 -> s[2b + 1]
//   32: s[b]
//   -1: g a multiple of 32: one group per block, found by counting blocks (next() in order)
template <int GK>
class BlockScales {
 public:
    BlockScales(const float* xd, const float* s, uint32_t g) : xd_(xd), s_(s), per_(g / 32), left_(per_) {}

    float32x4_t next(uint64_t b) {
        const float xb = xd_[b];
        if constexpr (GK == 0) {
            return vdupq_n_f32(xb);
        } else if constexpr (GK == 8) {
            return vmulq_n_f32(vld1q_f32(s_ + 4 * b), xb);
        } else if constexpr (GK == 16) {
            const float32x2_t s2 = vld1_f32(s_ + 2 * b);
            return vmulq_n_f32(vcombine_f32(vdup_lane_f32(s2, 0), vdup_lane_f32(s2, 1)), xb);
        } else if constexpr (GK == 32) {
            return vdupq_n_f32(s_[b] * xb);
        } else {
            const float sb = s_[gi_];
            if (--left_ == 0) ++gi_, left_ = per_;
            return vdupq_n_f32(sb * xb);
        }
    }

 private:
    const float* xd_;
    const float* s_;
    uint64_t per_;     // GK -1: blocks per group
    uint64_t left_;    // blocks left in the current group
    uint64_t gi_ = 0;  // current group
};

template <int BITS, int GK>
float dot_loop(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    constexpr uint32_t bpc = BITS == 2 || BITS == 3 ? 4 : BITS == 4 ? 2 : 1;  // blocks per chunk
    constexpr uint32_t cb = BITS == 1 ? 4 : BITS == 3 ? 48 : 32;              // bytes per chunk
    constexpr bool per_unit = GK == 8 || GK == 16;
    BlockScales<GK> sc(xd, s, g);
    auto block = [&](float32x4_t acc, uint64_t b) {
        uint8x16_t q[2];
        codes32<BITS>(codes + b / bpc * cb, uint32_t(b % bpc), q);
        const float32x4_t p = vcvtq_f32_s32(dot32<BITS, per_unit>(q, xq + 32 * b));
        return vfmaq_f32(acc, p, sc.next(b));
    };
    // two accumulators: consecutive blocks do not wait on each other's FMA
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    const uint64_t nb = kp / 32;
    uint64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        acc0 = block(acc0, b);
        acc1 = block(acc1, b + 1);
    }
    if (b < nb) acc0 = block(acc0, b);
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

template <int BITS>
float dot_neon(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    if (!s) return dot_loop<BITS, 0>(codes, kp, xq, xd, s, g);
    if (g == 8) return dot_loop<BITS, 8>(codes, kp, xq, xd, s, g);
    if (g == 16) return dot_loop<BITS, 16>(codes, kp, xq, xd, s, g);
    if (g == 32) return dot_loop<BITS, 32>(codes, kp, xq, xd, s, g);
    return dot_loop<BITS, -1>(codes, kp, xq, xd, s, g);
}

// One block of 32 floats per iteration (eight float32x4); a partial or empty block at the end is
// copied into a zero-padded buffer (zeros give q = 0, as the reference past k).
void quantize_act_neon(const float* x, uint64_t k, QActRow out) {
    const uint64_t kp = act_kp(k);
    float tail[32];
    for (uint64_t b = 0; b < kp; b += 32) {
        const float* src = x + b;
        if (b + 32 > k) {
            const uint64_t len = b < k ? k - b : 0;
            std::memset(tail, 0, sizeof tail);
            if (len) std::memcpy(tail, x + b, 4 * len);
            src = tail;
        }
        float32x4_t v[8];
        // max |x|: vmaxnm is IEEE maxNum, which skips a NaN operand as std::fmax does
        float32x4_t m = vdupq_n_f32(0);
        for (int i = 0; i < 8; ++i) {
            v[i] = vld1q_f32(src + 4 * i);
            m = vmaxnmq_f32(m, vabsq_f32(v[i]));
        }
        const float amax = vmaxnmvq_f32(m);
        const float d = amax / 127.0f;
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        out.d[b / 32] = d;
        // vcvtn: round to nearest, ties to even, as std::nearbyint in the default mode
        int32x4_t q[8];
        for (int i = 0; i < 8; ++i) q[i] = vcvtnq_s32_f32(vmulq_n_f32(v[i], id));
        // unit u = q[2u], q[2u+1]; s8 = d * float(sum): one rounding, as the reference
        if (out.s8)
            for (int u = 0; u < 4; ++u) out.s8[b / 8 + u] = d * float(vaddvq_s32(vaddq_s32(q[2 * u], q[2 * u + 1])));
        // narrow 32 -> 16 -> 8 bits in order (|q| <= 127: the saturation never applies)
        for (int h = 0; h < 2; ++h) {
            const int16x8_t lo = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
            const int16x8_t hi = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
            vst1q_s8(out.q + b + 16 * h, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
        }
    }
}

float dot_f32_neon(const float* a, const float* b, uint64_t n) {
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0), acc2 = vdupq_n_f32(0), acc3 = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        acc2 = vfmaq_f32(acc2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        acc3 = vfmaq_f32(acc3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// ---- meta decoding, 8 columns per step -------------------------------------------------------
// Same arithmetic as decode_field_ref: value = f16(f16(code - tz) * ts). The f32 -> f16
// narrowing (fcvtn) rounds per FPCR, nearest even by default, as round_f16 does.

inline float32x4_t round_f16x4(float32x4_t v) { return vcvt_f32_f16(vcvt_f16_f32(v)); }

// 8 fields of F (1..8) bits from column c0 (a multiple of 8, so byte aligned), as floats.
// F is a template argument so that the byte copy below has a constant size (plain loads).
template <uint32_t F>
inline void codes8(const uint8_t* row, uint64_t c0, float32x4_t out[2]) {
    const uint8_t* p = row + c0 * F / 8;
    if constexpr (F == 8) {
        const uint16x8_t w = vmovl_u8(vld1_u8(p));
        out[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(w)));
        out[1] = vcvtq_f32_u32(vmovl_high_u16(w));
    } else {
        // the 8 fields are the F bytes at p; fields 4h .. 4h+3 fit one 32-bit word
        uint64_t v = 0;
        std::memcpy(&v, p, F);
        const int32_t f = int32_t(F);
        const int32x4_t sh = {0, -f, -2 * f, -3 * f};  // negative: right shift, lane j by j * F
        const uint32x4_t mask = vdupq_n_u32((1u << F) - 1u);
        out[0] = vcvtq_f32_u32(vandq_u32(vshlq_u32(vdupq_n_u32(uint32_t(v)), sh), mask));
        out[1] = vcvtq_f32_u32(vandq_u32(vshlq_u32(vdupq_n_u32(uint32_t(v >> (4 * F))), sh), mask));
    }
}

inline float32x4_t field_value4(float32x4_t code, float32x4_t ts, float32x4_t tz) {
    return round_f16x4(vmulq_f32(round_f16x4(vsubq_f32(code, tz)), ts));
}

// columns [0, c8) of a field of F-bit codes through the table (c8 a multiple of 8)
template <uint32_t F>
void decode_codes8(const uint8_t* row, const uint8_t* tab, const MetaMap& map, uint64_t mrow, uint64_t c8, float* out) {
    float32x4_t code[2];
    if (map.cstride == 0) {  // the entry does not depend on the column: one entry for the row
        const uint8_t* e = tab + 4ull * map.index(mrow, 0);
        const float32x4_t ts = vdupq_n_f32(f16_to_f32(uint16_t(e[0] | e[1] << 8)));
        const float32x4_t tz = vdupq_n_f32(f16_to_f32(uint16_t(e[2] | e[3] << 8)));
        for (uint64_t c = 0; c < c8; c += 8) {
            codes8<F>(row, c, code);
            vst1q_f32(out + c, field_value4(code[0], ts, tz));
            vst1q_f32(out + c + 4, field_value4(code[1], ts, tz));
        }
        return;
    }
    // cstride 1: consecutive columns use consecutive entries, unless the index wraps around
    // `period`
    // the entry index advances with the column; track it without a division per step
    uint64_t idx = map.index(mrow, 0);
    for (uint64_t c = 0; c < c8; c += 8, idx += 8) {
        if (map.period && idx >= map.period) idx %= map.period;
        if (map.period && idx + 8 > map.period) {
            for (uint64_t j = c; j < c + 8; ++j) out[j] = decode_field_ref(row, tab, F, map, mrow, j, 0.0f);
            continue;
        }
        // 8 entries (f16 scale, f16 zero): vld2 splits the pairs into scales and zeros
        uint16_t e[16];
        std::memcpy(e, tab + 4 * idx, 32);
        const uint16x8x2_t st = vld2q_u16(e);
        const float16x8_t ts = vreinterpretq_f16_u16(st.val[0]), tz = vreinterpretq_f16_u16(st.val[1]);
        codes8<F>(row, c, code);
        vst1q_f32(out + c, field_value4(code[0], vcvt_f32_f16(vget_low_f16(ts)), vcvt_f32_f16(vget_low_f16(tz))));
        vst1q_f32(out + c + 4, field_value4(code[1], vcvt_high_f32_f16(ts), vcvt_high_f32_f16(tz)));
    }
}

// one meta field for columns [0, cols): out[c] = value; returns the first column not done
// (the caller finishes the rest with the scalar reference)
uint64_t decode_field8(const uint8_t* row, const uint8_t* tab, uint32_t fbits, const MetaMap& map, uint64_t mrow,
                       uint64_t cols, float none, float* out) {
    const uint64_t c8 = cols / 8 * 8;
    if (fbits == 0) {
        for (uint64_t c = 0; c < cols; ++c) out[c] = none;
        return cols;
    }
    if (fbits == 16) {
        for (uint64_t c = 0; c < c8; c += 8) {
            uint16_t h[8];
            std::memcpy(h, row + 2 * c, 16);
            const float16x8_t v = vreinterpretq_f16_u16(vld1q_u16(h));
            vst1q_f32(out + c, vcvt_f32_f16(vget_low_f16(v)));
            vst1q_f32(out + c + 4, vcvt_high_f32_f16(v));
        }
        return c8;
    }
    if (map.cstride > 1) return 0;  // strided entries: left to the reference
    if (!with_field_bits(fbits, [&](auto f) { decode_codes8<decltype(f)::value>(row, tab, map, mrow, c8, out); }))
        return 0;
    return c8;
}

void decode_meta_neon(const WeightView& w, uint64_t mrow, float* s, float* m) {
    const QParams& p = w.p;
    const MetaRow r = meta_row_of(w, mrow);
    const uint64_t ds = decode_field8(r.srow, r.stab, p.sbits, p.smap, mrow, r.cols, 1.0f, s);
    const uint64_t dz = decode_field8(r.zrow, r.ztab, p.zbits, p.zmap, mrow, r.cols, 0.0f, m);  // m holds z here
    const uint64_t done = (ds < dz ? ds : dz) / 4 * 4;
    // m = -(z * s) (code zeros) or -z (value zeros); vneg flips the sign as the unary minus does
    for (uint64_t c = 0; c < done; c += 4) {
        float32x4_t z = vld1q_f32(m + c);
        if (p.zmode == ZeroMode::code) z = vmulq_f32(z, vld1q_f32(s + c));
        vst1q_f32(m + c, vnegq_f32(z));
    }
    if (done < r.cols) decode_meta_cols_ref(w, mrow, done, r.cols, s, m);
}

// C columns at a time: the row's 4 values converted once, one accumulator per column; the
// last n % 4 in scalar
template <int C>
static inline void dot_f16_cols_block(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, float* y,
                                      uint64_t ldy) {
    float32x4_t acc[C];
    for (int c = 0; c < C; ++c) acc[c] = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t wv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + i)));
        for (int c = 0; c < C; ++c) acc[c] = vfmaq_f32(acc[c], wv, vld1q_f32(x + c * ldx + i));
    }
    for (int c = 0; c < C; ++c) {
        float s = vaddvq_f32(acc[c]);
        for (uint64_t t = i; t < n; ++t) s += f16_to_f32(w[t]) * x[c * ldx + t];
        y[c * ldy] = s;
    }
}

void dot_f16_cols_neon(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, uint64_t m, float* y,
                       uint64_t ldy) {
    blocks_of_8(m, [&](auto c, uint64_t j) {
        dot_f16_cols_block<decltype(c)::value>(w, n, x + j * ldx, ldx, y + j * ldy, ldy);
    });
}

// e^t as core/quant.h describes it (CpuKernels::swiglu)
static inline float32x4_t exp_neon(float32x4_t tx) {
    const float32x4_t t = vminq_f32(vdupq_n_f32(88.0f), vmaxq_f32(vdupq_n_f32(-87.0f), tx));
    const int32x4_t ni = vcvtnq_s32_f32(vmulq_n_f32(t, 1.44269504088896341f));
    const float32x4_t n = vcvtq_f32_s32(ni);
    float32x4_t r = vfmsq_f32(t, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 720);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const float32x4_t e = vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(ni, vdupq_n_s32(127)), 23)));
    return vbslq_f32(vcgtq_f32(tx, vdupq_n_f32(88.0f)), vdupq_n_f32(INFINITY), e);
}

void swiglu_neon(const float* x, const float* g, float* y, uint64_t n) {
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t xv = vld1q_f32(x + i);
        float32x4_t v = vdivq_f32(xv, vaddq_f32(vdupq_n_f32(1.0f), exp_neon(vnegq_f32(xv))));
        if (g) v = vmulq_f32(v, vld1q_f32(g + i));
        vst1q_f32(y + i, v);
    }
    if (i < n) {  // the tail through a full vector
        float xt[4] = {}, yt[4], gt[4] = {};
        for (uint64_t j = i; j < n; ++j) {
            xt[j - i] = x[j];
            if (g) gt[j - i] = g[j];
        }
        swiglu_neon(xt, g ? gt : nullptr, yt, 4);
        for (uint64_t j = i; j < n; ++j) y[j] = yt[j - i];
    }
}

// 4 columns of an a0 class from i: returns xs = s x, adds m x to bias, m = -(z s) or -z
static inline float32x4_t a0_step(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t i,
                                  float32x4_t& bias) {
    const float32x4_t sv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + i)));
    float32x4_t zv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(z + i)));
    const float32x4_t xv = vld1q_f32(x + i);
    if (code_zero) zv = vmulq_f32(zv, sv);
    bias = vfmaq_f32(bias, vnegq_f32(zv), xv);
    return vmulq_f32(sv, xv);
}

// the columns after the last whole vector, in scalar: returns s x, adds m x to bias
static inline float a0_step1(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t i,
                             float& bias) {
    const float si = f16_to_f32(s[i]), zi = f16_to_f32(z[i]);
    bias += (code_zero ? -(zi * si) : -zi) * x[i];
    return si * x[i];
}

float a0_scale_neon(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k, float* xs) {
    float32x4_t acc = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 4 <= k; i += 4) vst1q_f32(xs + i, a0_step(s, z, code_zero, x, i, acc));
    float bias = vaddvq_f32(acc);
    for (; i < k; ++i) xs[i] = a0_step1(s, z, code_zero, x, i, bias);
    return bias;
}

// NR rows of one class: xs = s x is made once per 4 columns and added into each row's lanes
// under that row's 4 code bits (lane masks by testing each lane's bit; the rows' bytes of a unit
// of 16 inputs are 2 apart, units unit_bytes apart)
template <int NR>
static void a0_bits1_block(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                           const uint8_t* codes, uint64_t unit_bytes, float* y, uint64_t ystride, const uint8_t* next,
                           uint64_t next_bytes) {
    // the next class, a slice per step
    SlicePrefetch pf(next, next_bytes, (k + 3) / 4);
    const uint32x4_t lane_bit = {1, 2, 4, 8};
    float32x4_t acc[NR], bacc = vdupq_n_f32(0);
    for (int t = 0; t < NR; ++t) acc[t] = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const uint32x4_t xs = vreinterpretq_u32_f32(a0_step(s, z, code_zero, x, i, bacc));
        pf.step();
        const uint8_t* c = codes + i / 16 * unit_bytes + i / 8 % 2;
        for (int t = 0; t < NR; ++t) {
            const uint32x4_t m = vtstq_u32(vdupq_n_u32(uint32_t(c[2 * t] >> (i & 4))), lane_bit);
            acc[t] = vaddq_f32(acc[t], vreinterpretq_f32_u32(vandq_u32(m, xs)));
        }
    }
    float bias = vaddvq_f32(bacc), tail[NR] = {};
    for (; i < k; ++i) {
        const float xs = a0_step1(s, z, code_zero, x, i, bias);
        for (int t = 0; t < NR; ++t)
            if (codes[i / 16 * unit_bytes + 2 * t + i / 8 % 2] >> (i & 7) & 1) tail[t] += xs;
    }
    for (int t = 0; t < NR; ++t) y[t * ystride] = vaddvq_f32(acc[t]) + tail[t] + bias;
}

void a0_bits1_neon(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                   const uint8_t* codes, uint64_t nrows, float* y, uint64_t ystride, const uint8_t* next,
                   uint64_t next_bytes) {
    blocks_of_8(nrows, [&](auto c, uint64_t t) {
        a0_bits1_block<decltype(c)::value>(s, z, code_zero, x, k, codes + 2 * t, 2 * nrows, y + t * ystride, ystride,
                                           t == 0 ? next : nullptr, next_bytes);
    });
}

float exp_sum_neon(const float* x, float scale, float shift, float* y, uint64_t n) {
    float32x4_t acc = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = exp_neon(vsubq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vdupq_n_f32(shift)));
        vst1q_f32(y + i, e);
        acc = vaddq_f32(acc, e);
    }
    float s = vaddvq_f32(acc);
    if (i < n) {  // the tail through a full vector
        float xt[4] = {}, yt[4];
        for (uint64_t j = i; j < n; ++j) xt[j - i] = x[j];
        vst1q_f32(yt, exp_neon(vsubq_f32(vmulq_n_f32(vld1q_f32(xt), scale), vdupq_n_f32(shift))));
        for (uint64_t j = i; j < n; ++j) s += y[j] = yt[j - i];
    }
    return s;
}

void cvt_to_f16_neon(const float* src, uint16_t* dst, uint64_t n) {
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void cvt_f16_neon(const uint16_t* src, float* dst, uint64_t n) {
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; ++i) dst[i] = vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(src[i]))), 0);
}

// 4 inputs per step: a nibble -> lane mask by testing the lane's bit
// the low (H 0) or high (H 1) 4 of 8 f16 (BF false) or bf16 (true) values -> floats
template <bool BF, int H>
inline float32x4_t h16_f32(uint16x8_t v) {
    if constexpr (BF) return vreinterpretq_f32_u32(vshll_n_u16(H ? vget_high_u16(v) : vget_low_u16(v), 16));
    const float16x8_t f = vreinterpretq_f16_u16(v);
    return H ? vcvt_high_f32_f16(f) : vcvt_f32_f16(vget_low_f16(f));
}

// 16 weights per step: two 8-lane loads widened to four f32 vectors
template <bool BF>
float dot_h16_neon(const uint16_t* w, const float* x, uint64_t n) {
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0), acc2 = vdupq_n_f32(0), acc3 = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint16x8_t a = vld1q_u16(w + i), b = vld1q_u16(w + i + 8);
        acc0 = vfmaq_f32(acc0, h16_f32<BF, 0>(a), vld1q_f32(x + i));
        acc1 = vfmaq_f32(acc1, h16_f32<BF, 1>(a), vld1q_f32(x + i + 4));
        acc2 = vfmaq_f32(acc2, h16_f32<BF, 0>(b), vld1q_f32(x + i + 8));
        acc3 = vfmaq_f32(acc3, h16_f32<BF, 1>(b), vld1q_f32(x + i + 12));
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; ++i) s += (BF ? bf16_to_f32(w[i]) : f16_to_f32(w[i])) * x[i];
    return s;
}

}  // namespace

const CpuKernels& kernels_neon() {
    static const CpuKernels k =
        make_kernels("neon", quantize_act_neon, dot_neon<1>, dot_neon<2>, dot_neon<3>, dot_neon<4>, dot_neon<8>,
                     dot_f32_neon, decode_meta_neon, cvt_f16_neon, cvt_to_f16_neon, dot_h16_neon<false>,
                     dot_h16_neon<true>, swiglu_neon, dot_f16_cols_neon, exp_sum_neon, a0_scale_neon, a0_bits1_neon);
    return k;
}

}  // namespace lb
