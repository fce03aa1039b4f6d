// quant_ref.cpp: the scalar reference of every layout: code packing, meta decoding, row
// dequantization, the float GEMM, int8 activations and the reference kernel primitives.
// Byte layouts are specified in formats/blocktypes.md; this file is their executable form.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"

namespace lb {

WeightView make_view(Type t, const QParams& p, uint64_t n, uint64_t k, const void* data) {
    WeightView w;
    w.type = t;
    w.p = p;
    w.n = n;
    w.k = k;
    w.lay = layout(t, p, n, k);
    w.data = static_cast<const uint8_t*>(data);
    return w;
}

// ---- codes ----------------------------------------------------------------------------------
// position of input i (0 <= i < chunk) inside its chunk, per bit width (see blocktypes.md)
static inline uint32_t code_get(const uint8_t* c, uint32_t bits, uint32_t i) {
    switch (bits) {
        case 1:
            return (c[i >> 3] >> (i & 7)) & 1u;
        case 2:
            return (c[i & 31] >> (2 * (i >> 5))) & 3u;
        case 3:
            return ((c[i & 31] >> (2 * (i >> 5))) & 3u) | (((c[32 + (i >> 3)] >> (i & 7)) & 1u) << 2);
        case 4:
            return (c[i & 31] >> (4 * (i >> 5))) & 15u;
        default:
            return c[i];
    }
}

static inline void code_set(uint8_t* c, uint32_t bits, uint32_t i, uint32_t v) {
    switch (bits) {
        case 1:
            c[i >> 3] = uint8_t(c[i >> 3] | ((v & 1u) << (i & 7)));
            break;
        case 2:
            c[i & 31] = uint8_t(c[i & 31] | ((v & 3u) << (2 * (i >> 5))));
            break;
        case 3:
            c[i & 31] = uint8_t(c[i & 31] | ((v & 3u) << (2 * (i >> 5))));
            c[32 + (i >> 3)] = uint8_t(c[32 + (i >> 3)] | (((v >> 2) & 1u) << (i & 7)));
            break;
        case 4:
            c[i & 31] = uint8_t(c[i & 31] | ((v & 15u) << (4 * (i >> 5))));
            break;
        default:
            c[i] = uint8_t(v);
            break;
    }
}

void unpack_codes_ref(const uint8_t* row, uint32_t bits, uint64_t kp, uint8_t* q) {
    const uint32_t chunk = code_chunk(bits), cb = code_chunk_bytes(bits);
    for (uint64_t c0 = 0; c0 < kp; c0 += chunk, row += cb)
        for (uint32_t i = 0; i < chunk; ++i) q[c0 + i] = uint8_t(code_get(row, bits, i));
}

void pack_codes_ref(const uint8_t* q, uint32_t bits, uint64_t kp, uint8_t* row) {
    const uint32_t chunk = code_chunk(bits), cb = code_chunk_bytes(bits);
    std::memset(row, 0, kp / chunk * cb);
    for (uint64_t c0 = 0; c0 < kp; c0 += chunk, row += cb)
        for (uint32_t i = 0; i < chunk; ++i) code_set(row, bits, i, q[c0 + i]);
}

uint32_t meta_code(const uint8_t* row, uint32_t fbits, uint64_t col) {
    if (fbits == 8) return row[col];
    if (fbits == 16) return uint32_t(row[2 * col]) | uint32_t(row[2 * col + 1]) << 8;
    const uint64_t bit = col * fbits;
    // fbits <= 8: the field spans at most two bytes; read them without passing the row end
    const uint64_t last = (bit + fbits - 1) >> 3;
    uint32_t v = row[bit >> 3];
    if (last != (bit >> 3)) v |= uint32_t(row[last]) << 8;
    return (v >> (bit & 7)) & ((1u << fbits) - 1u);
}

void set_meta_code(uint8_t* row, uint32_t fbits, uint64_t col, uint32_t code) {
    if (fbits == 8) {
        row[col] = uint8_t(code);
        return;
    }
    if (fbits == 16) {
        row[2 * col] = uint8_t(code);
        row[2 * col + 1] = uint8_t(code >> 8);
        return;
    }
    for (uint32_t b = 0; b < fbits; ++b) {
        const uint64_t bit = col * fbits + b;
        const uint8_t mask = uint8_t(1u << (bit & 7));
        row[bit >> 3] = uint8_t((code >> b) & 1u ? row[bit >> 3] | mask : row[bit >> 3] & ~mask);
    }
}

// ---- meta -----------------------------------------------------------------------------------
// one meta field value: raw fp16, or a code through the second-level table (two fp16 roundings)
float decode_field_ref(const uint8_t* row, const uint8_t* tab, uint32_t fbits, const MetaMap& map, uint64_t meta_row,
                       uint64_t col, float none) {
    if (fbits == 0) return none;
    const uint32_t code = meta_code(row, fbits, col);
    if (fbits == 16) return f16_to_f32(uint16_t(code));
    const uint8_t* e = tab + 4ull * map.index(meta_row, col);
    const float ts = f16_to_f32(uint16_t(e[0] | e[1] << 8));
    const float tz = f16_to_f32(uint16_t(e[2] | e[3] << 8));
    return round_f16(round_f16(float(code) - tz) * ts);
}

MetaRow meta_row_of(const WeightView& w, uint64_t meta_row) {
    return MetaRow{w.data + w.lay.off_scales + meta_row * w.lay.scale_row_bytes,
                   w.data + w.lay.off_zeros + meta_row * w.lay.zero_row_bytes, w.data + w.lay.off_stab,
                   w.data + w.lay.off_ztab, w.type == Type::rg ? w.k / w.p.group : w.k};
}

void decode_meta_ref(const WeightView& w, uint64_t meta_row, float* s, float* m) {
    decode_meta_cols_ref(w, meta_row, 0, meta_row_of(w, meta_row).cols, s, m);
}

bool zero_exact(float tz) { return tz == std::nearbyint(tz) && std::fabs(tz) <= 1792.0f; }

bool second_level_exact(float ts, float tz) {
    // c - tz is exact (zero_exact); times a power of two in [2^-14, 16] it stays a normal f16
    // below 32768 with at most 11 significant bits
    const float a = std::fabs(ts);
    int e = 0;
    const bool pow2 = std::frexp(a, &e) == 0.5f;
    return zero_exact(tz) && pow2 && a >= 1.0f / 16384 && a <= 16.0f;
}

// (s, m) of one meta column: w = q * s + m
static void meta_one(const WeightView& w, uint64_t mrow, uint64_t c, float& s, float& m) {
    const MetaRow r = meta_row_of(w, mrow);
    s = decode_field_ref(r.srow, r.stab, w.p.sbits, w.p.smap, mrow, c, 1.0f);
    const float z = decode_field_ref(r.zrow, r.ztab, w.p.zbits, w.p.zmap, mrow, c, 0.0f);
    m = w.p.zmode == ZeroMode::code ? -(z * s) : -z;
}

void decode_meta_cols_ref(const WeightView& w, uint64_t meta_row, uint64_t c0, uint64_t c1, float* s, float* m) {
    for (uint64_t c = c0; c < c1; ++c) meta_one(w, meta_row, c, s[c], m[c]);
}

static float plain_elem(Type t, const uint8_t* row, uint64_t i) {
    switch (t) {
        case Type::f32: {
            float f;
            std::memcpy(&f, row + 4 * i, 4);
            return f;
        }
        case Type::f16:
            return f16_to_f32(uint16_t(row[2 * i] | row[2 * i + 1] << 8));
        case Type::bf16:
            return bf16_to_f32(uint16_t(row[2 * i] | row[2 * i + 1] << 8));
        default:
            throw Error(strfmt("type %s is not a plain float type", type_name(t)));
    }
}

void dequant_row_ref(const WeightView& w, uint64_t row, float* out) {
    LB_CHECK(row < w.n, "row %llu out of range (%llu rows)", (unsigned long long)row, (unsigned long long)w.n);
    const TypeTraits& tr = traits(w.type);
    if (tr.kind == Kind::plain) {
        const uint8_t* r = w.data + row * w.lay.code_row_bytes;
        for (uint64_t i = 0; i < w.k; ++i) out[i] = plain_elem(w.type, r, i);
        return;
    }
    LB_CHECK(tr.kind == Kind::quant, "type %s has no dequantization", tr.name);
    // no heap allocation: get_rows runs this on the decode path. Codes are unpacked one chunk at
    // a time; the meta of a group (rg) or column (a0) is decoded when it is first needed.
    const uint32_t chunk = code_chunk(w.p.bits), cb = code_chunk_bytes(w.p.bits);
    uint8_t q[128];
    const uint8_t* codes = w.codes(row);
    if (w.type == Type::sign) {
        const uint8_t* g = w.data + w.lay.off_gvec;
        float h;
        std::memcpy(&h, w.data + w.lay.off_hvec + 4 * row, 4);
        for (uint64_t c0 = 0; c0 < w.k; c0 += chunk, codes += cb) {
            unpack_codes_ref(codes, w.p.bits, chunk, q);
            for (uint64_t i = c0; i < c0 + chunk && i < w.k; ++i) {
                float gi;
                std::memcpy(&gi, g + 4 * i, 4);
                out[i] = h * (q[i - c0] ? -gi : gi);
            }
        }
        return;
    }
    const bool rg = w.type == Type::rg;
    const uint64_t mrow = rg ? row : row % (w.n / w.p.group);
    uint64_t cur = ~uint64_t(0);
    float s = 0, m = 0;
    for (uint64_t c0 = 0; c0 < w.k; c0 += chunk, codes += cb) {
        unpack_codes_ref(codes, w.p.bits, chunk, q);
        for (uint64_t i = c0; i < c0 + chunk && i < w.k; ++i) {
            const uint64_t c = rg ? i / w.p.group : i;
            if (c != cur) {
                meta_one(w, mrow, c, s, m);
                cur = c;
            }
            out[i] = float(q[i - c0]) * s + m;
        }
    }
}

void gemm_ref(const WeightView& w, const float* x, uint64_t ncols, float* y) {
    std::vector<float> row(w.k);
    for (uint64_t o = 0; o < w.n; ++o) {
        dequant_row_ref(w, o, row.data());
        for (uint64_t j = 0; j < ncols; ++j) {
            double acc = 0;
            const float* xj = x + j * w.k;
            for (uint64_t i = 0; i < w.k; ++i) acc += double(row[i]) * double(xj[i]);
            y[j * w.n + o] = float(acc);
        }
    }
}

// ---- activations ----------------------------------------------------------------------------
uint64_t act_kp(uint64_t k) { return (k + 127) / 128 * 128; }
// kp int8 + kp/32 float scales + kp/8 float unit sums (the q8a layout; cheap: called per row)
uint64_t act_row_bytes(uint64_t k) {
    const uint64_t kp = act_kp(k);
    return kp + kp / 32 * 4 + kp / 8 * 4;
}

QActRow act_row(void* base, uint64_t k) {
    const uint64_t kp = act_kp(k);
    uint8_t* b = static_cast<uint8_t*>(base);
    return QActRow{reinterpret_cast<int8_t*>(b), reinterpret_cast<float*>(b + kp),
                   reinterpret_cast<float*>(b + kp + kp / 32 * 4)};
}

static void quantize_act_scalar(const float* x, uint64_t k, QActRow out) {
    const uint64_t kp = act_kp(k);
    for (uint64_t b = 0; b < kp; b += 32) {
        float amax = 0;
        for (uint64_t i = b; i < b + 32 && i < k; ++i) amax = std::fmax(amax, std::fabs(x[i]));
        const float d = amax / 127.0f;
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        out.d[b / 32] = d;
        for (uint64_t u = b; u < b + 32; u += 8) {
            int sum = 0;
            for (uint64_t i = u; i < u + 8; ++i) {
                const int q = i < k ? int(std::nearbyint(x[i] * id)) : 0;
                out.q[i] = int8_t(q);
                sum += q;
            }
            if (out.s8) out.s8[u / 8] = d * float(sum);
        }
    }
}

template <int BITS>
static float dot_ref(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g) {
    // integer sums per unit of 8 inputs (a unit never straddles a group or an activation block),
    // then one float product per unit
    const uint32_t chunk = code_chunk(BITS), cb = code_chunk_bytes(BITS);
    float acc = 0;
    for (uint64_t c0 = 0; c0 < kp; c0 += chunk, codes += cb) {
        for (uint32_t u0 = 0; u0 < chunk; u0 += 8) {
            int32_t isum = 0;
            for (uint32_t i = u0; i < u0 + 8; ++i) isum += int32_t(code_get(codes, BITS, i)) * xq[c0 + i];
            const uint64_t i0 = c0 + u0;
            acc += (s ? s[i0 / g] * xd[i0 / 32] : xd[i0 / 32]) * float(isum);
        }
    }
    return acc;
}

static float dot_f32_scalar(const float* a, const float* b, uint64_t n) {
    float acc = 0;
    for (uint64_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

static float dot_f16_scalar(const uint16_t* w, const float* x, uint64_t n) {
    float acc = 0;
    for (uint64_t i = 0; i < n; ++i) acc += f16_to_f32(w[i]) * x[i];
    return acc;
}

static float dot_bf16_scalar(const uint16_t* w, const float* x, uint64_t n) {
    float acc = 0;
    for (uint64_t i = 0; i < n; ++i) acc += bf16_to_f32(w[i]) * x[i];
    return acc;
}

static float a0_scale_scalar(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                             float* xs) {
    float bias = 0;
    for (uint64_t i = 0; i < k; ++i) {
        const float si = f16_to_f32(s[i]), zi = f16_to_f32(z[i]);
        xs[i] = si * x[i];
        bias += (code_zero ? -(zi * si) : -zi) * x[i];
    }
    return bias;
}

static void a0_bits1_scalar(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                            const uint8_t* codes, uint64_t nrows, float* y, uint64_t ystride, const uint8_t*,
                            uint64_t) {
    float bias = 0;
    for (uint64_t i = 0; i < k; ++i) {
        const float si = f16_to_f32(s[i]), zi = f16_to_f32(z[i]);
        bias += (code_zero ? -(zi * si) : -zi) * x[i];
    }
    for (uint64_t t = 0; t < nrows; ++t) {
        float acc = 0;
        for (uint64_t i = 0; i < k; ++i)
            if (a0_bit(codes, nrows, t, i)) acc += f16_to_f32(s[i]) * x[i];
        y[t * ystride] = acc + bias;
    }
}

static float exp_sum_scalar(const float* x, float scale, float shift, float* y, uint64_t n) {
    double sum = 0;
    for (uint64_t i = 0; i < n; ++i) sum += y[i] = std::exp(scale * x[i] - shift);
    return float(sum);
}

static void dot_f16_cols_scalar(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, uint64_t m, float* y,
                                uint64_t ldy) {
    for (uint64_t j = 0; j < m; ++j) y[j * ldy] = dot_f16_scalar(w, x + j * ldx, n);
}

static void cvt_f16_scalar(const uint16_t* src, float* dst, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

static void cvt_to_f16_scalar(const float* src, uint16_t* dst, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

static void swiglu_scalar(const float* x, const float* g, float* y, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i])) * (g ? g[i] : 1.0f);
}

CpuKernels make_kernels(const char* isa, void (*quantize_act)(const float*, uint64_t, QActRow), DotFn d1, DotFn d2,
                        DotFn d3, DotFn d4, DotFn d8, float (*dot_f32)(const float*, const float*, uint64_t),
                        void (*decode_meta)(const WeightView&, uint64_t, float*, float*),
                        void (*cvt_f16)(const uint16_t*, float*, uint64_t),
                        void (*cvt_to_f16)(const float*, uint16_t*, uint64_t),
                        float (*dot_f16)(const uint16_t*, const float*, uint64_t),
                        float (*dot_bf16)(const uint16_t*, const float*, uint64_t),
                        void (*swiglu)(const float*, const float*, float*, uint64_t),
                        void (*dot_f16_cols)(const uint16_t*, uint64_t, const float*, uint64_t, uint64_t, float*,
                                             uint64_t),
                        float (*exp_sum)(const float*, float, float, float*, uint64_t),
                        float (*a0_scale)(const uint16_t*, const uint16_t*, bool, const float*, uint64_t, float*),
                        void (*a0_bits1)(const uint16_t*, const uint16_t*, bool, const float*, uint64_t, const uint8_t*,
                                         uint64_t, float*, uint64_t, const uint8_t*, uint64_t)) {
    CpuKernels k{};
    k.isa = isa;
    k.quantize_act = quantize_act;
    k.dot[1] = d1;
    k.dot[2] = d2;
    k.dot[3] = d3;
    k.dot[4] = d4;
    k.dot[8] = d8;
    k.dot_f32 = dot_f32;
    k.decode_meta = decode_meta;
    k.cvt_f16 = cvt_f16;
    k.cvt_to_f16 = cvt_to_f16;
    k.dot_f16 = dot_f16;
    k.dot_bf16 = dot_bf16;
    k.swiglu = swiglu;
    k.dot_f16_cols = dot_f16_cols;
    k.exp_sum = exp_sum;
    k.a0_scale = a0_scale;
    k.a0_bits1 = a0_bits1;
    return k;
}

const CpuKernels& kernels_ref() {
    static const CpuKernels k = make_kernels("ref", quantize_act_scalar, dot_ref<1>, dot_ref<2>, dot_ref<3>, dot_ref<4>,
                                             dot_ref<8>, dot_f32_scalar, decode_meta_ref, cvt_f16_scalar,
                                             cvt_to_f16_scalar, dot_f16_scalar, dot_bf16_scalar, swiglu_scalar,
                                             dot_f16_cols_scalar, exp_sum_scalar, a0_scale_scalar, a0_bits1_scalar);
    return k;
}

}  // namespace lb
