// quant.h: weight views, the scalar reference of every quantized layout (the law), int8
// activations, and the table of CPU kernel primitives that optimized ISAs provide.
//
// Two references:
//   gemm_ref      float activations, weights dequantized exactly per formats/blocktypes.md,
//                 double accumulation: the meaning of a layout.
//   the q8 path   what the fast kernels compute: activations quantized to int8 blocks of 32
//                 (per row of x), integer dot products per unit of 8 or 32 inputs, float
//                 combination per group. kernels_ref() is its scalar form; every ISA table
//                 must equal it to float rounding.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/types.h"

namespace lb {

struct WeightView {
    Type type = Type::f32;
    QParams p;
    uint64_t n = 0, k = 0;  // rows (outputs), cols (inputs)
    Layout lay;
    const uint8_t* data = nullptr;
    // optional, the CPU runtime copy of backends/cpu/tiled.h: rg and sign: the same weight in the
    // row-tiled layout (its first n / 16 * 16 rows), used by the kernel tables that have `tiles`;
    // a0: the decoded meta, used by every table
    const uint8_t* tiles = nullptr;

    const uint8_t* codes(uint64_t row) const { return data + lay.off_codes + row * lay.code_row_bytes; }
};

// Validates the parameters and computes the layout; `data` must hold tensor_nbytes() bytes.
WeightView make_view(Type t, const QParams& p, uint64_t n, uint64_t k, const void* data);

// ---- codes ----------------------------------------------------------------------------------
// One row of b-bit codes <-> one code per byte (kp entries, kp a multiple of code_chunk(bits)).
void unpack_codes_ref(const uint8_t* row, uint32_t bits, uint64_t kp, uint8_t* q);
void pack_codes_ref(const uint8_t* q, uint32_t bits, uint64_t kp, uint8_t* row);

// Meta fields: read field `col` of a meta row packed with `fbits` bits per entry (LSB first).
uint32_t meta_code(const uint8_t* row, uint32_t fbits, uint64_t col);
void set_meta_code(uint8_t* row, uint32_t fbits, uint64_t col, uint32_t code);

// Decodes one meta row into per-column (s, m) such that the weight is w = q * s + m:
//   rg: meta_row = weight row, columns = groups (k / group)
//   a0: meta_row = row class (row mod n/group), columns = inputs (k)
// s and m follow the sources' fp16 arithmetic for the second level; see blocktypes.md.
void decode_meta_ref(const WeightView& w, uint64_t meta_row, float* s, float* m);
// the same for columns [c0, c1) only (optimized decoders use it for their tails)
void decode_meta_cols_ref(const WeightView& w, uint64_t meta_row, uint64_t c0, uint64_t c1, float* s, float* m);
// one field: raw f16 (fbits 16), or a code through its table; `none` when fbits is 0
float decode_field_ref(const uint8_t* row, const uint8_t* tab, uint32_t fbits, const MetaMap& map, uint64_t meta_row,
                       uint64_t col, float none);
// True when f16(c - tz) == c - tz for every code c in 0..255: tz an integer of magnitude <= 1792
// (|c - tz| <= 2047 is then an integer f16 holds). Decoders may then skip the first rounding. The
// GPTQ-style quantizers round their zero points (GreenBit's second level: formats/blocktypes.md).
bool zero_exact(float tz);
// True when f16(f16(c - tz) * ts) == (c - tz) * ts for every code c in 0..255 (zero_exact(tz), ts
// a power of two in [2^-14, 16]): decoders may then skip both roundings.
bool second_level_exact(float ts, float tz);
// Calls fn(std::integral_constant<uint32_t, F>{}) for a meta field width F in 1..8, so that the
// ISA decoders instantiate their code readers per width; false for any other width.
template <class Fn>
bool with_field_bits(uint32_t fbits, Fn&& fn) {
    switch (fbits) {
        case 1:
            fn(std::integral_constant<uint32_t, 1>{});
            return true;
        case 2:
            fn(std::integral_constant<uint32_t, 2>{});
            return true;
        case 3:
            fn(std::integral_constant<uint32_t, 3>{});
            return true;
        case 4:
            fn(std::integral_constant<uint32_t, 4>{});
            return true;
        case 5:
            fn(std::integral_constant<uint32_t, 5>{});
            return true;
        case 6:
            fn(std::integral_constant<uint32_t, 6>{});
            return true;
        case 7:
            fn(std::integral_constant<uint32_t, 7>{});
            return true;
        case 8:
            fn(std::integral_constant<uint32_t, 8>{});
            return true;
        default:
            return false;
    }
}

// pointers of one meta row
struct MetaRow {
    const uint8_t *srow, *zrow, *stab, *ztab;
    uint64_t cols;
};
MetaRow meta_row_of(const WeightView& w, uint64_t meta_row);

// Row `row` of the weight as floats [k].
void dequant_row_ref(const WeightView& w, uint64_t row, float* out);

// y[j][0..n) = W x[j][0..k) for j < ncols; x and y are row-major (x row stride k, y row stride n).
void gemm_ref(const WeightView& w, const float* x, uint64_t ncols, float* y);

// ---- int8 activations (type q8a) -------------------------------------------------------------
// One activation row: kp int8 (zero beyond k), kp/32 float scales, kp/8 float sums
// (s8[u] = d[u/4] * sum of the 8 int8 of unit u). quantize_act leaves the sums out where s8 is
// null (for dot products without zero terms).
struct QActRow {
    int8_t* q;
    float* d;
    float* s8;
};
uint64_t act_kp(uint64_t k);              // k rounded up to 128
uint64_t act_row_bytes(uint64_t k);       // bytes of one row
QActRow act_row(void* base, uint64_t k);  // views into a buffer of act_row_bytes(k)

// ---- CPU kernel primitives -------------------------------------------------------------------
// One call of a tiled kernel: w (rg or sign, with w->tiles set), ncols activation columns, each a
// q8 row (act_row layout) at act + j * act_stride with its sums xsum + j * xsum_stride (rg:
// xsum[c] = sum of s8 over group c's units; sign: xsum[0] = sum of all s8), results
// y[j * n + row].
struct TiledArgs {
    const WeightView* w;
    uint64_t ncols;
    const uint8_t* act;
    uint64_t act_stride;
    const float* xsum;
    uint64_t xsum_stride;
    float* y;
};

// The code bit of row t < nrows, input i, in unit-interleaved 1-bit codes (CpuKernels::a0_bits1):
// unit i / 16 holds 2 bytes per row, row t's at 2 * (unit * nrows + t), input i at bit i % 8 of
// its (i / 8) % 2-th byte.
inline uint32_t a0_bit(const uint8_t* codes, uint64_t nrows, uint64_t t, uint64_t i) {
    return codes[2 * ((i / 16) * nrows + t) + (i / 8) % 2] >> (i % 8) & 1u;
}

// An ISA provides these; the matmul driver (backends/cpu/matmul.cpp) is shared by all ISAs.
struct CpuKernels {
    const char* isa;
    // x[k] -> q8 row (rounding half away from zero, scale = max|x| / 127)
    void (*quantize_act)(const float* x, uint64_t k, QActRow out);
    // sum over i < kp of codes[i] * xq[i] * xd[i / 32] * s[i / g], for b-bit codes (index = bits);
    // g is 8, 16 or a multiple of 32 and s holds at least ceil(kp / g) entries (zero beyond the
    // real groups); s == nullptr means every s is 1 (g ignored)
    float (*dot[9])(const uint8_t* codes, uint64_t kp, const int8_t* xq, const float* xd, const float* s, uint32_t g);
    // y = sum_i a[i] * b[i]  (float, n any)
    float (*dot_f32)(const float* a, const float* b, uint64_t n);
    // decode_meta_ref, vectorized (rg and a0 weights)
    void (*decode_meta)(const WeightView& w, uint64_t meta_row, float* s, float* m);
    // n binary16 values -> float (f16 weights and KV caches)
    void (*cvt_f16)(const uint16_t* src, float* dst, uint64_t n);
    // n floats -> binary16, rounding to nearest even as f32_to_f16 (NaN stays NaN)
    void (*cvt_to_f16)(const float* src, uint16_t* dst, uint64_t n);
    // y = sum_i f16(w[i]) * x[i], n any: GEMV of f16 weights without a converted copy (the
    // optimized ones prefetch 4 KiB ahead: a GEMV streams its rows from DRAM)
    float (*dot_f16)(const uint16_t* w, const float* x, uint64_t n);
    // the same for bf16 weights (the upper halves of f32 values)
    float (*dot_bf16)(const uint16_t* w, const float* x, uint64_t n);
    // y[j * ldy] = sum_i f16(w[i]) * x[j * ldx + i] for j < m, n any: one f16 row against m
    // columns, the row converted once (attention over an f16 KV cache: a key or value row and
    // the query heads that share it)
    void (*dot_f16_cols)(const uint16_t* w, uint64_t n, const float* x, uint64_t ldx, uint64_t m, float* y,
                         uint64_t ldy);
    // a0 with decoded meta (backends/cpu/tiled.h): xs[i] = s[i] * x[i] and returns the bias
    // sum_i m[i] * x[i], m = -(z * s) (code_zero) or -z, from one class's f16 scales and zeros
    float (*a0_scale)(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k, float* xs);
    // a0 with 1-bit codes, one class in float (no activation quantization): for rows t < nrows,
    // y[t * ystride] = sum over the set bits of s[i] x[i] plus the bias of a0_scale. The codes
    // are unit-interleaved (a0_bit): per unit of 16 inputs, the nrows rows' 2 code bytes, so one
    // step of a kernel reads its rows' bits from one place. The optimized ones prefetch
    // next_bytes from next (the next class) spread over the pass.
    void (*a0_bits1)(const uint16_t* s, const uint16_t* z, bool code_zero, const float* x, uint64_t k,
                     const uint8_t* codes, uint64_t nrows, float* y, uint64_t ystride, const uint8_t* next,
                     uint64_t next_bytes);
    // y[i] = e^(scale * x[i] - shift), returns the sum of y (softmax rows); the optimized ones use
    // swiglu's polynomial e^t
    float (*exp_sum)(const float* x, float scale, float shift, float* y, uint64_t n);
    // y[i] = silu(x[i]) * g[i] (g == nullptr: silu alone), silu(x) = x / (1 + e^-x). The
    // optimized ones (and exp_sum) evaluate e^t = 2^n * p(r), n = round(t / ln 2), r = t - n ln 2
    // in [-ln2/2, ln2/2] (ln 2 split in two so that r is exact), p the degree-6 Taylor polynomial
    // (truncation error below 7e-8 relative, within 3 ulp of std::exp in all); t below -87 is
    // taken as -87 (e^t < 2e-38: silu changes by less than 1e-36 absolute, a softmax weight stays
    // negligible), e^t is inf above 88, and NaN stays NaN.
    void (*swiglu)(const float* x, const float* g, float* y, uint64_t n);
    // rg and sign weights in the tiled layout (backends/cpu/tiled.h): rows of tiles [t0, t1) for every
    // column; scratch holds tiled_scratch_floats(*a.w) floats. nullptr where an ISA has no tiled kernel
    // (the driver then runs dot[] on the row layout).
    void (*tiles)(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) = nullptr;
};

// A kernel table from its primitives (dot by code bits 1, 2, 3, 4, 8).
using DotFn = float (*)(const uint8_t*, uint64_t, const int8_t*, const float*, const float*, uint32_t);
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
                                         uint64_t, float*, uint64_t, const uint8_t*, uint64_t));

const CpuKernels& kernels_ref();

}  // namespace lb
