// tiles_avx2.cpp: the AVX2 kernels of rg and sign weights in the row-tiled layout
// (backends/cpu/tiled.h), CpuKernels::tiles of the avx2 table (and of the avx512 table on CPUs
// without GFNI). Checked against the scalar q8 reference by tests/test_kernels.cpp.
//
// A 16-row tile is two halves of 8 rows (one lane per row, as the AVX-512 kernels have one
// 16-lane vector): the half's 32 bytes of a quad unit hold its 8 rows x 4 inputs, so maddubs
// (codes u8 x activations s8, the quad's 4 activation bytes broadcast) and madd give each lane
// its own row's dot product and nothing is reduced across lanes. The maddubs pairs of up to 8
// quads are summed in int16 before madd: a pair is at most 2 * 15 * 127, 8 quads 30480 < 2^15.
// 8-bit codes are split in nibbles (hi counted 16 times), so no pair saturates.
// Meta fields are decoded per group for the 8 rows of a half: raw f16 converted; 1/2/4-bit codes
// looked up in the group's 16 values (two 8-entry vpermps and a blend on the code's bit 3);
// 8-bit codes decoded in the lanes with the group's table entry.
#include <immintrin.h>

#include <algorithm>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/simd_avx2.h"
#include "backends/cpu/tiled.h"
#include "backends/cpu/tiles_common.h"
#include "backends/cpu/unaligned.h"

namespace lb {
namespace {

// One meta field (scale or zero) of the tiles, as tiled.h stores it (kinds: tiles_common.h).
class TileField {
 public:
    // what a group shares across the tile: the 16 looked-up values (lookup) or the table entry
    struct Group {
        __m256 a, b;
    };

    // scratch: 18 floats per group
    TileField(const WeightView& w, const TiledLayout& lay, bool zero, float* scratch)
        : st_(w, lay, zero, scratch), f_(st_.f), kind_(st_.kind), none_(_mm256_set1_ps(zero ? 0.0f : 1.0f)) {
        if (kind_ == FieldKind::lookup) per_ = 8 / f_;
    }

    // the table entries of every group for the row block of tile t, as floats, and a lookup
    // field's 16 values of every group (tiles of one block share them: built once per block,
    // then read by vpermps from memory; built per tile and group in registers, they were a
    // third of the GreenBit qstatistic 2-bit g8 GEMV's operations)
    void begin_tile(uint64_t t) {
        auto fill16 = [](const uint8_t* e, float* ts, float* tz) {  // (f16 scale, f16 zero) pairs
            bool iz = true;
            for (int h = 0; h < 16; h += 8) {
                __m256 s, z;
                entries8(e + 4 * h, s, z);
                _mm256_storeu_ps(ts + h, s);
                _mm256_storeu_ps(tz + h, z);
                iz = iz && zero_exact8(z);
            }
            return iz;
        };
        if (st_.begin(t, true, fill16))
            for (uint64_t c = 0; c < st_.groups; ++c) {
                const Group g = st_.int_zeros ? lookup_values<true>(c) : lookup_values<false>(c);
                _mm256_storeu_ps(st_.vals + 16 * c, g.a);
                _mm256_storeu_ps(st_.vals + 16 * c + 8, g.b);
            }
    }

    // K: the kind when the caller knows it (the GEMV kernels specialised per kind pair: no
    // switch in the loop), else any
    template <FieldKind K = FieldKind::any>
    LB_INLINE Group group(uint64_t c) const {
        const FieldKind kind = K == FieldKind::any ? kind_ : K;
        if (kind == FieldKind::lookup)
            return {_mm256_loadu_ps(st_.vals + 16 * c), _mm256_loadu_ps(st_.vals + 16 * c + 8)};
        if (kind == FieldKind::direct) return {_mm256_set1_ps(st_.ts[c]), _mm256_set1_ps(st_.tz[c])};
        return {none_, none_};
    }

    // the block's zeros are all zero_exact (FieldState::int_zeros)
    bool int_zeros() const { return st_.int_zeros; }

    // GEMM: every group's 16 values of the tile whose plane is `plane`, into FieldState::dec
    // (after begin_tile), for get<FieldKind::decoded>
    template <bool IZ>
    void decode_tile(const uint8_t* plane) {
        for (uint64_t c = 0; c < st_.groups; ++c)
            for (int h = 0; h < 2; ++h)
                _mm256_storeu_ps(st_.dec + 16 * c + 8 * h, get<FieldKind::any, 0, IZ>(group(c), plane, c, h));
    }

    // the 16 values of group c's codes 0..15 (masked to the field's width)
    template <bool IZ>
    LB_INLINE Group lookup_values(uint64_t c) const {
        const __m256 ts = _mm256_set1_ps(st_.ts[c]), tz = _mm256_set1_ps(st_.tz[c]);
        const __m256i mask = _mm256_set1_epi32(int((1u << f_) - 1u));
        const __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        return {field_value8<IZ>(_mm256_cvtepi32_ps(_mm256_and_si256(i, mask)), ts, tz),
                field_value8<IZ>(_mm256_cvtepi32_ps(_mm256_and_si256(_mm256_add_epi32(i, _mm256_set1_epi32(8)), mask)),
                                 ts, tz)};
    }

    // the field of group c for rows 8h .. 8h+7 of the tile whose plane (of this field) is `plane`;
    // FB: the width of a lookup field when the caller knows it (0: run time); IZ: int_zeros() holds
    template <FieldKind K = FieldKind::any, int FB = 0, bool IZ = false>
    LB_INLINE __m256 get(const Group& g, const uint8_t* plane, uint64_t c, int h) const {
        switch (K == FieldKind::any ? kind_ : K) {
            case FieldKind::none:
                return none_;
            case FieldKind::decoded:
                return _mm256_loadu_ps(st_.dec + 16 * c + 8 * h);
            case FieldKind::raw:
                return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(plane + 32 * c + 16 * h)));
            case FieldKind::lookup: {
                const uint64_t per = FB ? 8 / FB : per_;
                const uint32_t f = FB ? FB : f_;
                const uint8_t* p = plane + 16 * (c / per) + 8 * h;
                const __m256i q = _mm256_srli_epi32(
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), int(f * (c % per)));
                // vpermps reads the low 3 bits of each lane (the values repeat with the code's
                // period, so bits of the fields above need no mask); bit 3 picks the upper 8
                if (f < 4) return _mm256_permutevar8x32_ps(g.a, q);
                return _mm256_blendv_ps(_mm256_permutevar8x32_ps(g.a, q), _mm256_permutevar8x32_ps(g.b, q),
                                        _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
            }
            default: {
                const uint8_t* p = plane + 16 * c + 8 * h;
                const __m256 q =
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
                return field_value8<IZ>(q, g.a, g.b);
            }
        }
    }

 private:
    FieldState st_;
    const uint32_t f_;
    const FieldKind kind_;
    uint32_t per_ = 1;
    __m256 none_;
};

// int32 lanes of rows 8h..8h+7: sum over quads Q0 .. Q0+NQ-1 (NQ <= 8) of a block of the codes
// times the activations (a quad unit of 64 bytes: byte 4r + j = row r, input 4 * quad + j)
template <int BITS, int Q0, int NQ>
LB_INLINE __m256i half_isum(const uint8_t* blk, int h, const int8_t* xb) {
    static_assert(NQ <= 8, "int16 sums of at most 8 quads");
    constexpr int LB = BITS == 3 ? 2 : BITS;  // 3 bits: two in 2-bit units, the third from the 1-bit unit at 128
    constexpr int per_unit = LB == 8 ? 1 : 8 / LB;
    const __m256i nib = _mm256_set1_epi8(LB == 8 ? 15 : char((1 << LB) - 1));
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    static_for<NQ>([&](auto i) LB_LAMBDA_INLINE {
        constexpr int q = Q0 + decltype(i)::value;
        constexpr int sh = LB == 8 ? 0 : LB * (q % per_unit);
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + (q / per_unit) * 64 + 32 * h));
        const __m256i x = _mm256_set1_epi32(int(load_u32(reinterpret_cast<const uint8_t*>(xb) + 4 * q)));
        __m256i f = _mm256_and_si256(sh ? _mm256_srli_epi16(v, sh) : v, nib);
        if constexpr (BITS == 3) {  // bit q of the high-bit byte to bit 2
            const __m256i v1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
            __m256i t;
            if constexpr (q >= 2)
                t = _mm256_srli_epi16(v1, q - 2);
            else
                t = _mm256_slli_epi16(v1, 2 - q);
            f = _mm256_or_si256(f, _mm256_and_si256(t, _mm256_set1_epi8(4)));
        }
        lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(f, x));
        if constexpr (BITS == 8)
            hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), nib), x));
    });
    const __m256i s = _mm256_madd_epi16(lo, _mm256_set1_epi16(1));
    if constexpr (BITS != 8) return s;
    return _mm256_add_epi32(s, _mm256_madd_epi16(hi, _mm256_set1_epi16(16)));
}

// The 16 rows of tile t for column j, into y. GK: the group (8 or 16), or 32 for any multiple
// of 32 (same scheme as the AVX-512 kernels: per segment, the int32 lanes scaled by s[row] and
// the block's xd; the zero term m[row] * xsum[group], m = -(z s) or -z). IZ: both fields'
// int_zeros() hold.
template <int BITS, int GK, class M = AnyMeta, bool IZ = false>
void tile_run(TileCall<TileField>& k, uint64_t t, uint64_t j) {
    constexpr uint64_t blk_bytes = 64 * BITS;  // codes of 32 inputs of 16 rows
    const bool code_zero = zeros_are_codes<M>(k.w.p);
    const QActRow x = column_act(k.a, j);
    const float* xsum = column_xsum(k.a, j);
    const uint8_t* tile = k.w.tiles + t * k.lay.tile_bytes;
    const RunPrefetch<1> pf(&tile, k.lay.tile_bytes, blk_bytes, k.nblk, k.pf_end, j == 0);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 accm[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    // group c's sum (int32 lanes as floats) times s into `into`, its zero term into accm
    auto finish = [&](int h, uint64_t c, const TileField::Group& gs, const TileField::Group& gz, __m256 xs, __m256 sum,
                      __m256& into) LB_LAMBDA_INLINE {
        const __m256 s = k.S.template get<M::SK, M::SB, IZ>(gs, tile + k.lay.off_scales, c, h);
        const __m256 z = k.Z.template get<M::ZK, M::ZB, IZ>(gz, tile + k.lay.off_zeros, c, h);
        into = _mm256_fmadd_ps(sum, s, into);
        accm[h] = _mm256_fnmadd_ps(code_zero ? _mm256_mul_ps(z, s) : z, xs, accm[h]);
    };
    if constexpr (GK < 32) {
        constexpr int per_blk = 32 / GK;
        for (uint64_t b = 0; b < k.nblk; ++b) {
            pf.at(b);
            const int8_t* xb = x.q + 32 * b;
            __m256 bsum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            static_for<per_blk>([&](auto i) LB_LAMBDA_INLINE {
                constexpr int gi = decltype(i)::value;
                const uint64_t c = b * per_blk + gi;
                if (c >= k.groups) return;  // last block of a row with k % 32 != 0
                const TileField::Group gs = k.S.template group<M::SK>(c), gz = k.Z.template group<M::ZK>(c);
                const __m256 xs = _mm256_set1_ps(xsum[c]);
                for (int h = 0; h < 2; ++h) {
                    const __m256i is = half_isum<BITS, gi * GK / 4, GK / 4>(tile + b * blk_bytes, h, xb);
                    finish(h, c, gs, gz, xs, _mm256_cvtepi32_ps(is), bsum[h]);
                }
            });
            const __m256 xd = _mm256_set1_ps(x.d[b]);
            for (int h = 0; h < 2; ++h) acc[h] = _mm256_fmadd_ps(bsum[h], xd, acc[h]);
        }
    } else {
        const uint64_t per_group = k.w.p.group / 32;
        for (uint64_t c = 0; c < k.groups; ++c) {
            __m256 g[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            for (uint64_t b = c * per_group; b < (c + 1) * per_group; ++b) {
                pf.at(b);
                const __m256 xd = _mm256_set1_ps(x.d[b]);
                for (int h = 0; h < 2; ++h) {
                    const __m256i is = half_isum<BITS, 0, 8>(tile + b * blk_bytes, h, x.q + 32 * b);
                    g[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), xd, g[h]);
                }
            }
            const TileField::Group gs = k.S.template group<M::SK>(c), gz = k.Z.template group<M::ZK>(c);
            const __m256 xs = _mm256_set1_ps(xsum[c]);
            for (int h = 0; h < 2; ++h) finish(h, c, gs, gz, xs, g[h], acc[h]);
        }
    }
    float* y = column_y(k.a, j) + t * kTileRows;
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y + 8 * h, _mm256_add_ps(acc[h], accm[h]));
}

template <int BITS, int GK>
void rg_tiles(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    TileCall<TileField> k(a, t1, scratch);
    if (a.ncols > 1) {  // GEMM: one tile at a time, all columns, its fields decoded once
        for (uint64_t t = t0; t < t1; ++t) {
            k.S.begin_tile(t);
            k.Z.begin_tile(t);
            const uint8_t* tile = k.w.tiles + t * k.lay.tile_bytes;
            with_int_zeros<AnyMeta>(k.S.int_zeros() && k.Z.int_zeros(), [&](auto iz) {
                k.S.template decode_tile<decltype(iz)::value>(tile + k.lay.off_scales);
                k.Z.template decode_tile<decltype(iz)::value>(tile + k.lay.off_zeros);
            });
            for (uint64_t j = 0; j < a.ncols; ++j) tile_run<BITS, GK, DecodedMeta>(k, t, j);
        }
        return;
    }
    prefetch_range_start(k.w.tiles + t0 * k.lay.tile_bytes, k.lay.tile_bytes, 1, k.pf_end);
    with_meta(k.w.p, k.lay, [&](auto m) {  // GEMV: specialised per meta kind pair (tiles_common.h)
        for (uint64_t t = t0; t < t1; ++t) {
            k.S.begin_tile(t);
            k.Z.begin_tile(t);
            with_int_zeros<decltype(m)>(k.S.int_zeros() && k.Z.int_zeros(), [&](auto iz) {
                tile_run<BITS, GK, decltype(m), decltype(iz)::value>(k, t, 0);
            });
        }
    });
}

// sign weights: y = h * (total - 2 * sum over the set bits of xq * xd) (matmul.cpp's row form;
// total = sum of all s8, from the driver)
void sign_tiles(const TiledArgs& a, uint64_t t0, uint64_t t1) {
    const WeightView& w = *a.w;
    const TiledLayout lay = tiled_layout(w);
    const uint64_t nblk = w.lay.kp / 32;  // 1-bit rows are padded to 32 with zero codes
    const float* hv = reinterpret_cast<const float*>(w.data + w.lay.off_hvec);
    const uint8_t* end = w.tiles + t1 * lay.tile_bytes;
    if (a.ncols == 1) prefetch_range_start(w.tiles + t0 * lay.tile_bytes, lay.tile_bytes, 1, end);
    for (uint64_t t = t0; t < t1; ++t) {
        const uint8_t* tile = w.tiles + t * lay.tile_bytes;
        for (uint64_t j = 0; j < a.ncols; ++j) {
            const QActRow x = column_act(a, j);
            const RunPrefetch<1> pf(&tile, lay.tile_bytes, 64, nblk, end, j == 0);
            __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            for (uint64_t b = 0; b < nblk; ++b) {
                pf.at(b);
                const __m256 xd = _mm256_set1_ps(x.d[b]);
                for (int h = 0; h < 2; ++h)
                    acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(half_isum<1, 0, 8>(tile + b * 64, h, x.q + 32 * b)), xd,
                                             acc[h]);
            }
            const __m256 total = _mm256_set1_ps(*column_xsum(a, j));
            const uint64_t row = t * kTileRows;
            for (int h = 0; h < 2; ++h) {
                const __m256 v = _mm256_fnmadd_ps(_mm256_set1_ps(2.0f), acc[h], total);
                _mm256_storeu_ps(column_y(a, j) + row + 8 * h, _mm256_mul_ps(_mm256_loadu_ps(hv + row + 8 * h), v));
            }
        }
    }
}

}  // namespace

void tiles_avx2(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    if (a.w->type == Type::sign) return sign_tiles(a, t0, t1);
    with_code_shape(
        a.w->p, [&](auto bits, auto gk) { rg_tiles<decltype(bits)::value, decltype(gk)::value>(a, t0, t1, scratch); });
}

}  // namespace lb
