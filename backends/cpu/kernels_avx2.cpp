// kernels_avx2.cpp: AVX2 + FMA + F16C kernel primitives (see CpuKernels in core/quant.h).
// Each must equal its scalar reference in core/quant_ref.cpp (tests/test_kernels.cpp).
//
// Codes of 32 consecutive inputs are expanded to 32 unsigned bytes in input order (the chunk
// layouts of formats/blocktypes.md make this a shift and a mask for 2- and 4-bit codes), then
// multiplied with the int8 activations by maddubs (u8 x s8 -> s16 pairs, no saturation for
// codes <= 15) and madd (pairs -> 8 int32 lanes, lane l = inputs 4l..4l+3).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/simd_avx2.h"
#include "backends/cpu/unaligned.h"
#include "core/half.h"

namespace lb {
namespace {

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 32 bits (input i at bit i) -> 32 bytes of 0/1
inline __m256i expand_bits(uint32_t bits) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                          3, 3, 3, 3, 3, 3);
    const __m256i bitm = _mm256_set1_epi64x(0x8040201008040201ll);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bitm), bitm);
    return _mm256_and_si256(v, _mm256_set1_epi8(1));
}

// codes of inputs 32t .. 32t+31 of a chunk, as bytes
template <int BITS>
inline __m256i codes32(const uint8_t* c, int t) {
    if constexpr (BITS == 1) {
        return expand_bits(load_u32(c));
    } else if constexpr (BITS == 2) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
        return _mm256_and_si256(_mm256_srli_epi16(v, 2 * t), _mm256_set1_epi8(3));
    } else if constexpr (BITS == 3) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(v, 2 * t), _mm256_set1_epi8(3));
        const __m256i hi = expand_bits(load_u32(c + 32 + 4 * t));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 2));
    } else if constexpr (BITS == 4) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
        return _mm256_and_si256(_mm256_srli_epi16(v, 4 * t), _mm256_set1_epi8(15));
    } else {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
    }
}

// 8 int32 lanes: lane l = sum over inputs 4l..4l+3 of code * x
template <int BITS>
inline __m256i dot32(__m256i q, __m256i x) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    if constexpr (BITS == 8) {
        // u8 x s8 pairs can exceed 2^15 for codes > 128: split q = 16 * hi + lo, both <= 15
        const __m256i m4 = _mm256_set1_epi8(15);
        const __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(q, m4), x), ones16);
        const __m256i hi =
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), x), ones16);
        return _mm256_add_epi32(lo, _mm256_slli_epi32(hi, 4));
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones16);
    }
}

// GK: how group scales map onto the 8 lanes of one 32-input step (lane l = inputs 4l..4l+3)
//   0: no group scales; 8: 4 groups per step (lanes 2j, 2j+1 -> group j); 16: 2 groups per step;
//   32: one group covers g/32 >= 1 whole steps
template <int BITS, int GK>
float dot_loop(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    constexpr uint32_t chunk = BITS == 1 ? 32 : BITS == 2 || BITS == 3 ? 128 : BITS == 4 ? 64 : 32;
    constexpr uint32_t cb = BITS == 1 ? 4 : BITS == 3 ? 48 : 32;
    const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256i quads = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const uint64_t steps_per_group = GK == 32 ? g / 32 : 1;
    uint64_t gi = 0, left = steps_per_group;  // GK 32: current group and its remaining steps
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (uint64_t c0 = 0; c0 < kp; c0 += chunk, codes += cb) {
        for (uint32_t t = 0; t < chunk / 32; ++t) {
            const uint64_t b = c0 / 32 + t;  // activation block
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
            const __m256 p = _mm256_cvtepi32_ps(dot32<BITS>(codes32<BITS>(codes, int(t)), x));
            if constexpr (GK == 0) {
                acc0 = _mm256_fmadd_ps(p, _mm256_broadcast_ss(xd + b), acc0);
            } else if constexpr (GK == 32) {
                acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(s[gi] * xd[b]), acc0);
                if (--left == 0) ++gi, left = steps_per_group;
            } else {
                const __m256 sv =
                    GK == 8 ? _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + 4 * b)), pairs)
                            : _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_castpd_ps(
                                                           _mm_load_sd(reinterpret_cast<const double*>(s + 2 * b)))),
                                                       quads);
                acc1 = _mm256_fmadd_ps(p, _mm256_mul_ps(sv, _mm256_broadcast_ss(xd + b)), acc1);
            }
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

template <int BITS>
float dot_avx2(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    if (!s) return dot_loop<BITS, 0>(codes, kp, xq, xd, s, g);
    if (g == 8) return dot_loop<BITS, 8>(codes, kp, xq, xd, s, g);
    if (g == 16) return dot_loop<BITS, 16>(codes, kp, xq, xd, s, g);
    return dot_loop<BITS, 32>(codes, kp, xq, xd, s, g);
}

void quantize_act_avx2(const float* x, uint64_t k, QActRow out) {
    const uint64_t kp = act_kp(k);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    alignas(32) float tail[32];
    for (uint64_t b = 0; b < kp; b += 32) {
        const float* src = x + b;
        if (b + 32 > k) {  // partial or empty block: zero-padded copy
            const uint64_t len = b < k ? k - b : 0;
            std::memset(tail, 0, sizeof tail);
            if (len) std::memcpy(tail, x + b, 4 * len);
            src = tail;
        }
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
            v[i] = _mm256_loadu_ps(src + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        out.d[b / 32] = d;
        const __m256 idv = _mm256_set1_ps(id);
        __m256i qi[4];
        for (int i = 0; i < 4; ++i) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv));
        // unit sums: 8 int32 per vector -> one sum each
        for (int i = 0; i < 4 && out.s8; ++i) {
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(qi[i]), _mm256_extracti128_si256(qi[i], 1));
            s = _mm_hadd_epi32(s, s);
            s = _mm_hadd_epi32(s, s);
            out.s8[b / 8 + i] = d * float(_mm_cvtsi128_si32(s));
        }
        // pack int32 -> int8 in order: packs interleave 128-bit lanes, fix with a permute
        const __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]);
        const __m256i p23 = _mm256_packs_epi32(qi[2], qi[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.q + b), p);
    }
}

float dot_f32_avx2(const float* a, const float* b, uint64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// ---- meta decoding, 8 columns per step -------------------------------------------------------

// 8 codes of F bits starting at column c0 (a multiple of 8: byte aligned), as floats. F is a
// template argument so the byte copy has a constant size (a plain load, no store-forwarding stall).
template <uint32_t F>
inline __m256 codes8(const uint8_t* row, uint64_t c0) {
    const uint8_t* p = row + c0 * F / 8;
    if constexpr (F == 8) {
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    } else if constexpr (F <= 4) {
        // the 8 fields fit one 32-bit word: shift field j down by j * F in lane j
        uint32_t v = 0;
        std::memcpy(&v, p, F);  // F bytes hold exactly the 8 fields
        const __m256i sh = _mm256_setr_epi32(0, F, 2 * F, 3 * F, 4 * F, 5 * F, 6 * F, 7 * F);
        return _mm256_cvtepi32_ps(
            _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(v)), sh), _mm256_set1_epi32((1 << F) - 1)));
    } else {
        uint64_t v = 0;
        std::memcpy(&v, p, F);
        // 5..7 bits: spread the eight fields into eight bytes
        const uint64_t mask = 0x0101010101010101ull * ((1u << F) - 1u);
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(_pdep_u64(v, mask)))));
    }
}

// code fields through a table for columns [0, c8), c8 a multiple of 8
template <uint32_t F>
void decode_codes8(const uint8_t* row, const uint8_t* tab, const MetaMap& map, uint64_t mrow, uint64_t c8, float* out) {
    const uint64_t base = map.index(mrow, 0);
    if (map.cstride == 0 && map.period == 0) {  // one entry for the whole row
        const float fs = f16_to_f32(uint16_t(tab[4 * base] | tab[4 * base + 1] << 8));
        const float fz = f16_to_f32(uint16_t(tab[4 * base + 2] | tab[4 * base + 3] << 8));
        const __m256 ts = _mm256_set1_ps(fs), tz = _mm256_set1_ps(fz);
        if (second_level_exact(fs, fz)) {  // e.g. GreenBit's zero codes: z = code + 1, no rounding needed
            for (uint64_t c = 0; c < c8; c += 8)
                _mm256_storeu_ps(out + c, _mm256_mul_ps(_mm256_sub_ps(codes8<F>(row, c), tz), ts));
        } else if (zero_exact(fz)) {
            for (uint64_t c = 0; c < c8; c += 8)
                _mm256_storeu_ps(out + c, field_value8<true>(codes8<F>(row, c), ts, tz));
        } else {
            for (uint64_t c = 0; c < c8; c += 8) _mm256_storeu_ps(out + c, field_value8(codes8<F>(row, c), ts, tz));
        }
        return;
    }
    // cstride == 1 (checked by the caller): entries base + c, wrapping at `period` when set
    // the entry index advances with the column; track it without a division per step
    for (uint64_t c = 0, idx = base; c < c8; c += 8, idx += 8) {
        if (map.period) {
            if (idx >= map.period) idx %= map.period;
            if (idx + 8 > map.period) {  // the run wraps around the table: scalar for these 8
                for (uint64_t j = c; j < c + 8; ++j) out[j] = decode_field_ref(row, tab, F, map, mrow, j, 0.0f);
                continue;
            }
        }
        __m256 ts, tz;
        entries8(tab + 4 * idx, ts, tz);
        const __m256 code = codes8<F>(row, c);
        _mm256_storeu_ps(out + c, zero_exact8(tz) ? field_value8<true>(code, ts, tz) : field_value8(code, ts, tz));
    }
}

// one meta field for columns [0, cols): out[c] = value; returns the first column not done (a
// multiple of 8; the caller finishes the rest with the scalar reference)
uint64_t decode_field8(const uint8_t* row, const uint8_t* tab, uint32_t fbits, const MetaMap& map, uint64_t mrow,
                       uint64_t cols, float none, float* out) {
    const uint64_t c8 = cols / 8 * 8;
    if (fbits == 0) {
        for (uint64_t c = 0; c < c8; ++c) out[c] = none;
        return c8;
    }
    if (fbits == 16) {
        for (uint64_t c = 0; c < c8; c += 8)
            _mm256_storeu_ps(out + c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c))));
        return c8;
    }
    if (!(map.cstride == 0 && map.period == 0) && map.cstride != 1) return 0;
    if (!with_field_bits(fbits, [&](auto f) { decode_codes8<decltype(f)::value>(row, tab, map, mrow, c8, out); }))
        return 0;
    return c8;
}

void decode_meta_avx2(const WeightView& w, uint64_t mrow, float* s, float* m) {
    const QParams& p = w.p;
    const MetaRow r = meta_row_of(w, mrow);
    const uint64_t ds = decode_field8(r.srow, r.stab, p.sbits, p.smap, mrow, r.cols, 1.0f, s);
    const uint64_t dz = decode_field8(r.zrow, r.ztab, p.zbits, p.zmap, mrow, r.cols, 0.0f, m);  // m holds z here
    const uint64_t done = ds < dz ? ds : dz;
    if (p.zmode == ZeroMode::code) {
        for (uint64_t c = 0; c < done; c += 8)
            _mm256_storeu_ps(m + c, _mm256_sub_ps(_mm256_setzero_ps(),
                                                  _mm256_mul_ps(_mm256_loadu_ps(m + c), _mm256_loadu_ps(s + c))));
    } else {
        for (uint64_t c = 0; c < done; c += 8)
            _mm256_storeu_ps(m + c, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_loadu_ps(m + c)));
    }
    if (done < r.cols) decode_meta_cols_ref(w, mrow, done, r.cols, s, m);
}

// C columns at a time: the row's 8 values converted once, one accumulator per column; the
// last n % 8 in scalar
template <int C>
static inline void dot_f16_cols_block(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, float* y,
                                      uint64_t ldy) {
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        for (int c = 0; c < C; ++c) acc[c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + c * ldx + i), acc[c]);
    }
    for (int c = 0; c < C; ++c) {
        float s = hsum(acc[c]);
        for (uint64_t t = i; t < n; ++t) s += f16_to_f32(w[t]) * x[c * ldx + t];
        y[c * ldy] = s;
    }
}

void dot_f16_cols_avx2(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, uint64_t m, float* y,
                       uint64_t ldy) {
    blocks_of_8(m, [&](auto c, uint64_t j) {
        dot_f16_cols_block<decltype(c)::value>(w, n, x + j * ldx, ldx, y + j * ldy, ldy);
    });
}

// e^t as core/quant.h describes it (CpuKernels::swiglu)
static inline __m256 exp_avx2(__m256 tx) {
    const __m256 t = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), tx));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_set1_ps(INFINITY),
                            _mm256_cmp_ps(tx, _mm256_set1_ps(88.0f), _CMP_GT_OQ));
}

void swiglu_avx2(const float* x, const float* g, float* y, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        __m256 v =
            _mm256_div_ps(xv, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), xv))));
        if (g) v = _mm256_mul_ps(v, _mm256_loadu_ps(g + i));
        _mm256_storeu_ps(y + i, v);
    }
    if (i < n) {  // the tail through a full vector
        float xt[8] = {}, yt[8], gt[8] = {};
        for (uint64_t j = i; j < n; ++j) {
            xt[j - i] = x[j];
            if (g) gt[j - i] = g[j];
        }
        swiglu_avx2(xt, g ? gt : nullptr, yt, 8);
        for (uint64_t j = i; j < n; ++j) y[j] = yt[j - i];
    }
}

// 8 columns of an a0 class from i: returns xs = s x, adds m x to bias, m = -(z s) or -z
static inline __m256 a0_step(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t i,
                             __m256& bias) {
    const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    __m256 zv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + i)));
    const __m256 xv = _mm256_loadu_ps(x + i);
    if (code_zero) zv = _mm256_mul_ps(zv, sv);
    bias = _mm256_fmadd_ps(_mm256_xor_ps(zv, _mm256_set1_ps(-0.0f)), xv, bias);
    return _mm256_mul_ps(sv, xv);
}

// the columns after the last whole vector, in scalar: returns s x, adds m x to bias
static inline float a0_step1(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t i,
                             float& bias) {
    const float si = f16_to_f32(s[i]), zi = f16_to_f32(z[i]);
    bias += (code_zero ? -(zi * si) : -zi) * x[i];
    return si * x[i];
}

float a0_scale_avx2(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k, float* xs) {
    __m256 acc = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm256_storeu_ps(xs + i, a0_step(s, z, code_zero, x, i, acc));
    float bias = hsum(acc);
    for (; i < k; ++i) xs[i] = a0_step1(s, z, code_zero, x, i, bias);
    return bias;
}

// The 8 lanes of a code byte as floats: lane l is bit l (0.0 or 1.0)
struct ByteLanes {
    alignas(32) float v[256][8];
    constexpr ByteLanes() : v{} {
        for (int b = 0; b < 256; ++b)
            for (int l = 0; l < 8; ++l) v[b][l] = float(b >> l & 1);
    }
};
static constexpr ByteLanes kByteLanes{};

// NR rows of one class: xs = s x is made once per 8 columns and added into each row's lanes
// under that row's code byte: one fma with the byte's 0/1 lanes from an 8 KiB table (the
// product is xs or a zero, the sum the same as adding the set lanes; a broadcast, a shift and a
// blend before: q1_g8_a0 4096x14336 GEMV 1.21-1.23 -> 0.96 ms). The rows' bytes of a unit of 16
// inputs are 2 apart, units unit_bytes apart.
template <int NR>
static void a0_bits1_block(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                           const uint8_t* codes, uint64_t unit_bytes, float* y, uint64_t ystride, const uint8_t* next,
                           uint64_t next_bytes) {
    // the next class, a slice per step
    SlicePrefetch pf(next, next_bytes, (k + 7) / 8);
    __m256 acc[NR], bacc = _mm256_setzero_ps();
    for (int t = 0; t < NR; ++t) acc[t] = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const __m256 xs = a0_step(s, z, code_zero, x, i, bacc);
        pf.step();
        const uint8_t* c = codes + i / 16 * unit_bytes + i / 8 % 2;
        for (int t = 0; t < NR; ++t) acc[t] = _mm256_fmadd_ps(_mm256_load_ps(kByteLanes.v[c[2 * t]]), xs, acc[t]);
    }
    float bias = hsum(bacc), tail[NR] = {};
    for (; i < k; ++i) {
        const float xs = a0_step1(s, z, code_zero, x, i, bias);
        for (int t = 0; t < NR; ++t)
            if (codes[i / 16 * unit_bytes + 2 * t + i / 8 % 2] >> (i & 7) & 1) tail[t] += xs;
    }
    for (int t = 0; t < NR; ++t) y[t * ystride] = hsum(acc[t]) + tail[t] + bias;
}

void a0_bits1_avx2(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                   const uint8_t* codes, uint64_t nrows, float* y, uint64_t ystride, const uint8_t* next,
                   uint64_t next_bytes) {
    blocks_of_8(nrows, [&](auto c, uint64_t t) {
        a0_bits1_block<decltype(c)::value>(s, z, code_zero, x, k, codes + 2 * t, 2 * nrows, y + t * ystride, ystride,
                                           t == 0 ? next : nullptr, next_bytes);
    });
}

float exp_sum_avx2(const float* x, float scale, float shift, float* y, uint64_t n) {
    __m256 acc = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_avx2(
            _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(scale)), _mm256_set1_ps(shift)));
        _mm256_storeu_ps(y + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum(acc);
    if (i < n) {  // the tail through a full vector
        float xt[8] = {}, yt[8];
        for (uint64_t j = i; j < n; ++j) xt[j - i] = x[j];
        const __m256 e =
            exp_avx2(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(xt), _mm256_set1_ps(scale)), _mm256_set1_ps(shift)));
        _mm256_storeu_ps(yt, e);
        for (uint64_t j = i; j < n; ++j) s += y[j] = yt[j - i];
    }
    return s;
}

void cvt_to_f16_avx2(const float* src, uint16_t* dst, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void cvt_f16_avx2(const uint16_t* src, float* dst, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) dst[i] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(src[i])));
}

// 8 f16 (BF false, F16C) or bf16 (true) values -> floats
template <bool BF>
inline __m256 h16_ps(__m128i h) {
    if constexpr (BF) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

// 16 weights per step, prefetch 4 KiB ahead once per 64 bytes
template <bool BF>
float dot_h16_avx2(const uint16_t* w, const float* x, uint64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (i % 32 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + i + 2048), _MM_HINT_T0);
        acc0 = _mm256_fmadd_ps(h16_ps<BF>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))),
                               _mm256_loadu_ps(x + i), acc0);
        acc1 = _mm256_fmadd_ps(h16_ps<BF>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8))),
                               _mm256_loadu_ps(x + i + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) s += (BF ? bf16_to_f32(w[i]) : f16_to_f32(w[i])) * x[i];
    return s;
}

}  // namespace

const CpuKernels& kernels_avx2() {
    static const CpuKernels k = [] {
        CpuKernels t = make_kernels("avx2", quantize_act_avx2, dot_avx2<1>, dot_avx2<2>, dot_avx2<3>, dot_avx2<4>,
                                    dot_avx2<8>, dot_f32_avx2, decode_meta_avx2, cvt_f16_avx2, cvt_to_f16_avx2,
                                    dot_h16_avx2<false>, dot_h16_avx2<true>, swiglu_avx2, dot_f16_cols_avx2,
                                    exp_sum_avx2, a0_scale_avx2, a0_bits1_avx2);
        t.tiles = tiles_avx2;  // tiles_avx2.cpp
        return t;
    }();
    return k;
}

}  // namespace lb
