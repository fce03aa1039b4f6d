// tiles_avx512_gfni.cpp: the AVX-512 kernels of rg and sign weights in the row-tiled layout
// (backends/cpu/tiled.h), CpuKernels::tiles of the avx512 table. Compiled with GFNI as well
// (one vgf2p8affineqb moves a code field of every byte to its low bits); the avx512 table uses
// it only on CPUs with GFNI (dispatch.cpp), the others run the AVX2 tiled kernels.
// Checked against the scalar q8 reference by tests/test_kernels.cpp.
#include <algorithm>
#include <utility>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/simd_avx512.h"
#include "backends/cpu/tiled.h"
#include "backends/cpu/tiles_common.h"

namespace lb {
namespace {

// ---- tiled rg weights (backends/cpu/tiled.h) ---------------------------------------------------
// A tile is 16 rows; every vector below has one lane per row. One vpdpbusd takes a 64-byte code
// vector (16 rows x 4 inputs, one quad) and the quad's 4 activation bytes broadcast to every
// lane, so each lane accumulates its own row's integer dot product. Per segment (a group, or a
// 32-input activation block when the group is longer) the int32 lanes are scaled by
// s[row] * xd[block] into float accumulators; the zero term adds m[row] * xsum[group] with
// m = -(z * s) (code zeros) or -z (value zeros), as the row kernels do.

// One meta field (scale or zero) of 16-row tiles, decoded per group c (the kinds: FieldKind in
// tiles_common.h). A lookup field's 16 values are one vector that vpermps indexes with the rows'
// codes (vpermps reads the low 4 bits of each lane, so fields above the one wanted need no
// masking: the 16 values repeat with the code's period).
// Table entries depend on (row / rdiv, group) only: begin_block() reads them, as floats, for the
// row block of a tile; tiles of one block share them. group(c) gives what the tiles share for
// group c (the lookup vector, built in registers or read from the copies that begin_block builds
// when asked, for GEMM's many columns; or the broadcast entry); get() decodes one tile's fields.
class TileField {
 public:
    struct Group {
        __m512 a, b;
    };

    // scratch: 18 floats per group
    TileField(const WeightView& w, const TiledLayout& lay, bool zero, float* scratch)
        : st_(w, lay, zero, scratch),
          f_(st_.f),
          kind_(st_.kind),
          none_(_mm512_set1_ps(zero ? 0.0f : 1.0f)),
          fcodes_(_mm512_cvtepi32_ps(
              _mm512_and_si512(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                               _mm512_set1_epi32(int((1u << (f_ < 8 ? f_ : 8)) - 1u))))) {
        if (kind_ == FieldKind::lookup) shift_per_ = f_ == 1 ? 3 : f_ == 2 ? 2 : 1;  // log2(8 / f)
    }

    // the row block of a tile (tiles of one block share every table entry)
    uint64_t block_of(uint64_t tile) const { return st_.block_of(tile); }

    void begin_block(uint64_t tile, bool luts) {
        auto fill16 = [](const uint8_t* e, float* ts, float* tz) {
            __m512 s, z;
            entries16(e, s, z);
            _mm512_storeu_ps(ts, s);
            _mm512_storeu_ps(tz, z);
            return zero_exact16(z) == 0xffff;
        };
        if (st_.begin(tile, luts, fill16))
            for (uint64_t c = 0; c < st_.groups; ++c)
                _mm512_storeu_ps(st_.vals + 16 * c, st_.int_zeros ? lookup_vector<true>(c) : lookup_vector<false>(c));
    }

    // the block's zeros are all zero_exact (FieldState::int_zeros)
    bool int_zeros() const { return st_.int_zeros; }

    // GEMM: every group's 16 values of the tile whose plane is `plane`, into FieldState::dec
    // (after begin_block(tile, true)), for get<FieldKind::decoded>
    template <bool IZ>
    void decode_tile(const uint8_t* plane) {
        for (uint64_t c = 0; c < st_.groups; ++c)
            _mm512_storeu_ps(st_.dec + 16 * c, get<FieldKind::any, 0, IZ>(group(c), plane, c));
    }

    // K: the kind when the caller knows it (the GEMV kernels specialised per kind pair: no switch
    // in the loop, no lookup copies), else any; IZ: int_zeros() holds
    template <FieldKind K = FieldKind::any, bool IZ = false>
    LB_INLINE Group group(uint64_t c) const {
        const FieldKind kind = K == FieldKind::any ? kind_ : K;
        if (kind == FieldKind::lookup)
            return {K == FieldKind::any && st_.luts ? _mm512_loadu_ps(st_.vals + 16 * c) : lookup_vector<IZ>(c), none_};
        if (kind == FieldKind::direct) return {_mm512_set1_ps(st_.ts[c]), _mm512_set1_ps(st_.tz[c])};
        return {none_, none_};
    }

    // the fields of group c of the tile whose plane (of this field) is `plane`; FB: the width of
    // a lookup field when the caller knows it (0: run time), which makes the shift a constant
    // where c % (8 / FB) is one (groups of an activation block); IZ: int_zeros() holds
    template <FieldKind K = FieldKind::any, int FB = 0, bool IZ = false>
    LB_INLINE __m512 get(const Group& g, const uint8_t* plane, uint64_t c) const {
        switch (K == FieldKind::any ? kind_ : K) {
            case FieldKind::none:
                return none_;
            case FieldKind::decoded:
                return _mm512_loadu_ps(st_.dec + 16 * c);
            case FieldKind::raw:
                return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(plane + 32 * c)));
            case FieldKind::lookup: {
                if constexpr (FB > 0) {
                    constexpr uint64_t per = 8 / FB;
                    const __m512i q =
                        _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(plane + 16 * (c / per))));
                    // vpermps reads the low 4 bits of each lane: the fields above need no mask
                    return _mm512_permutexvar_ps(_mm512_srli_epi32(q, unsigned(FB * (c % per))), g.a);
                } else {
                    __m512i q = _mm512_cvtepu8_epi32(
                        _mm_load_si128(reinterpret_cast<const __m128i*>(plane + 16 * (c >> shift_per_))));
                    q = _mm512_srl_epi32(q, _mm_cvtsi32_si128(int(f_ * (c & ((1u << shift_per_) - 1u)))));
                    return _mm512_permutexvar_ps(q, g.a);
                }
            }
            default: {
                const __m512 q = _mm512_cvtepi32_ps(
                    _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(plane + 16 * c))));
                return field_value16<IZ>(q, g.a, g.b);
            }
        }
    }

 private:
    template <bool IZ>
    LB_INLINE __m512 lookup_vector(uint64_t c) const {
        return field_value16<IZ>(fcodes_, _mm512_set1_ps(st_.ts[c]), _mm512_set1_ps(st_.tz[c]));
    }

    FieldState st_;
    const uint32_t f_;
    const FieldKind kind_;
    uint32_t shift_per_ = 0;
    __m512 none_, fcodes_;  // fcodes_: the lookup's codes 0..15 masked to the field's width
};

// codes of quad QI (0..7) of a 32-input block of a tile: 64 bytes, byte 4r + j = row r, input 4*QI + j
template <int BITS, int QI>
inline __m512i tile_quad(const uint8_t* blk) {
    if constexpr (BITS == 3) {  // the low two bits (2-bit units), the high bit moved to bit 2
        constexpr uint64_t matrix = (uint64_t(1) << QI) << (8 * (7 - 2));
        const __m512i hi =
            _mm512_gf2p8affine_epi64_epi8(_mm512_load_si512(blk + 128), _mm512_set1_epi64(int64_t(matrix)), 0);
        return _mm512_or_si512(tile_quad<2, QI>(blk), hi);
    }
    constexpr int per_unit = 8 / BITS;  // quads per 64-byte unit
    constexpr int sh = BITS * (QI % per_unit);
    const __m512i v = _mm512_load_si512(blk + (QI / per_unit) * 64);
    if constexpr (BITS == 8) {
        return v;
    } else if constexpr (sh == 0) {
        return _mm512_and_si512(v, _mm512_set1_epi8(char((1 << BITS) - 1)));
    } else {
        // one affine transform over GF(2) per byte: output bit i = input bit sh + i for i < BITS,
        // 0 above (row i of the bit matrix is byte 7 - i of the qword)
        constexpr uint64_t matrix = [] {
            uint64_t m = 0;
            for (int i = 0; i < BITS; ++i) m |= (uint64_t(1) << (sh + i)) << (8 * (7 - i));
            return m;
        }();
        return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(int64_t(matrix)), 0);
    }
}

// integer dot products of quads Q0 .. Q0+NQ-1 of a block for the 16 rows (two chains from 4
// quads on; for fewer, other tiles' and groups' work hides the latency)
template <int BITS, int Q0, int NQ>
inline __m512i tile_isum(const uint8_t* blk, const int8_t* xb) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    static_for<NQ>([&](auto i) LB_LAMBDA_INLINE {
        constexpr int q = Q0 + decltype(i)::value;
        const __m512i x = _mm512_set1_epi32(int(load_u32(reinterpret_cast<const uint8_t*>(xb) + 4 * q)));
        if constexpr (NQ < 4 || decltype(i)::value % 2 == 0)
            a = _mm512_dpbusd_epi32(a, tile_quad<BITS, q>(blk), x);
        else
            b = _mm512_dpbusd_epi32(b, tile_quad<BITS, q>(blk), x);
    });
    if constexpr (NQ < 4) return a;
    return _mm512_add_epi32(a, b);
}

// Rows of the R consecutive tiles [t, t + R) (one row block: they share table entries and
// lookup vectors) for column j, into y. IZ: both fields' int_zeros() hold.
template <int BITS, int GK, int R, class M = AnyMeta, bool IZ = false>
void tile_run(TileCall<TileField>& k, uint64_t t, uint64_t j) {
    constexpr FieldKind SK = M::SK, ZK = M::ZK;
    constexpr uint64_t blk_bytes = 64 * BITS;  // codes of 32 inputs of 16 rows
    const bool code_zero = zeros_are_codes<M>(k.w.p);
    const QActRow x = column_act(k.a, j);
    const float* xsum = column_xsum(k.a, j);
    const uint8_t* tile[R];
    for (int r = 0; r < R; ++r) tile[r] = k.w.tiles + (t + uint64_t(r)) * k.lay.tile_bytes;
    const RunPrefetch<R> pf(tile, k.lay.tile_bytes, blk_bytes, k.nblk, k.pf_end, j == 0);
    __m512 acc[R], accm[R][2];
    for (int r = 0; r < R; ++r) acc[r] = accm[r][0] = accm[r][1] = _mm512_setzero_ps();
    // group c of tile r: its sum (int32 lanes as floats, times xd or not yet) times s goes into
    // `into`, its zero term into accm[r][slot]
    auto finish = [&](int r, int slot, uint64_t c, const TileField::Group& gs, const TileField::Group& gz, __m512 xs,
                      __m512 sum, __m512& into) LB_LAMBDA_INLINE {
        const __m512 s = k.S.template get<SK, M::SB, IZ>(gs, tile[r] + k.lay.off_scales, c);
        const __m512 z = k.Z.template get<ZK, M::ZB, IZ>(gz, tile[r] + k.lay.off_zeros, c);
        into = _mm512_fmadd_ps(sum, s, into);
        accm[r][slot] = _mm512_fnmadd_ps(code_zero ? _mm512_mul_ps(z, s) : z, xs, accm[r][slot]);
    };
    if constexpr (GK < 32) {
        // groups inside one activation block: sum_g s_g isum_g, then times the block's xd
        constexpr int per_blk = 32 / GK;
        // tail: the last block of a row with k % 32 != 0 has fewer groups
        auto block = [&](uint64_t b, auto tail) LB_LAMBDA_INLINE {
            pf.at(b);
            const int8_t* xb = x.q + 32 * b;
            __m512 bsum[R];
            for (int r = 0; r < R; ++r) bsum[r] = _mm512_setzero_ps();
            static_for<per_blk>([&](auto i) LB_LAMBDA_INLINE {
                constexpr int gi = decltype(i)::value;
                const uint64_t c = b * per_blk + gi;
                if (decltype(tail)::value && c >= k.groups) return;
                const TileField::Group gs = k.S.template group<SK, IZ>(c), gz = k.Z.template group<ZK, IZ>(c);
                const __m512 xs = _mm512_set1_ps(xsum[c]);
                static_for<R>([&](auto ri) LB_LAMBDA_INLINE {
                    constexpr int r = decltype(ri)::value;
                    const __m512i isum = tile_isum<BITS, gi * GK / 4, GK / 4>(tile[r] + b * blk_bytes, xb);
                    finish(r, gi % 2, c, gs, gz, xs, _mm512_cvtepi32_ps(isum), bsum[r]);
                });
            });
            const __m512 xd = _mm512_set1_ps(x.d[b]);
            for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(bsum[r], xd, acc[r]);
        };
        const uint64_t full = k.groups / per_blk;
        for (uint64_t b = 0; b < full; ++b) block(b, std::false_type{});
        if (full < k.nblk) block(full, std::true_type{});
    } else {
        const uint64_t per_group = k.w.p.group / 32;
        for (uint64_t c = 0; c < k.groups; ++c) {
            __m512 g[R];
            for (int r = 0; r < R; ++r) g[r] = _mm512_setzero_ps();
            for (uint64_t b = c * per_group; b < (c + 1) * per_group; ++b) {
                pf.at(b);
                const __m512 xd = _mm512_set1_ps(x.d[b]);
                static_for<R>([&](auto ri) LB_LAMBDA_INLINE {
                    constexpr int r = decltype(ri)::value;
                    const __m512i isum = tile_isum<BITS, 0, 8>(tile[r] + b * blk_bytes, x.q + 32 * b);
                    g[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), xd, g[r]);
                });
            }
            const TileField::Group gs = k.S.template group<SK, IZ>(c), gz = k.Z.template group<ZK, IZ>(c);
            const __m512 xs = _mm512_set1_ps(xsum[c]);
            static_for<R>([&](auto ri) LB_LAMBDA_INLINE {
                constexpr int r = decltype(ri)::value;
                finish(r, 0, c, gs, gz, xs, g[r], acc[r]);
            });
        }
    }
    for (int r = 0; r < R; ++r) {
        const __m512 y = _mm512_add_ps(acc[r], _mm512_add_ps(accm[r][0], accm[r][1]));
        _mm512_storeu_ps(column_y(k.a, j) + (t + uint64_t(r)) * kTileRows, y);
    }
}

// GEMV: two tiles of one row block at a time, sharing the group's decoded table entry and the
// activation loads; one where the scales are raw f16 (HQQ, GGUF). Each tile of a run is three
// streams (codes, scales, zeros), and more concurrent streams per thread read DRAM slower:
// 4096x14336, DRAM (3 interleaved rounds, low-bandwidth state), runs of 4 / 2 / 1 tiles:
// q4_g32 0.81-0.86 / 0.70-0.72 / 0.67 ms, q2_g32 0.39-0.41 / 0.34-0.36 / 0.34-0.35 ms,
// q2_g8 0.48-0.49 / 0.48-0.52 / 0.62-0.64 ms (its 16-entry lookups are worth sharing);
// L3-resident q2_g32 0.22-0.31 / 0.24-0.25 / 0.30-0.31 ms; LLaMA-2-7B q2_g32 decode 76-79% /
// 83% / 83-87% of the bandwidth ceiling. Raw f16 scales, 4-bit: 0.86-0.90 ms with runs of 1,
// 0.88-0.92 with 2, 1.00-1.03 with 4 (the L3-resident case gains nothing from sharing there).
template <int BITS, int GK, class M>
void rg_gemv(TileCall<TileField>& k, uint64_t t0, uint64_t t1) {
    const bool raw = M::SK == FieldKind::raw || (M::SK == FieldKind::any && field_kind(k.lay.sbits) == FieldKind::raw);
    // (the first run pairs two tiles unless raw or at a block edge; a wrong guess moves the burst a tile)
    prefetch_range_start(k.w.tiles + t0 * k.lay.tile_bytes, k.lay.tile_bytes, raw ? 1 : 2, k.pf_end);
    for (uint64_t t = t0; t < t1;) {
        const bool two =
            !raw && t + 1 < t1 && k.S.block_of(t + 1) == k.S.block_of(t) && k.Z.block_of(t + 1) == k.Z.block_of(t);
        k.S.begin_block(t, false);
        k.Z.begin_block(t, false);
        with_int_zeros<M>(k.S.int_zeros() && k.Z.int_zeros(), [&](auto iz) {
            if (two)
                tile_run<BITS, GK, 2, M, decltype(iz)::value>(k, t, 0);
            else
                tile_run<BITS, GK, 1, M, decltype(iz)::value>(k, t, 0);
        });
        t += two ? 2 : 1;
    }
}

// GK: the group (8 or 16), or 32 for any multiple of 32
template <int BITS, int GK>
void rg_tiles_avx512(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    TileCall<TileField> k(a, t1, scratch);
    if (a.ncols > 1) {
        // GEMM: one tile at a time, all columns; the lookup vectors are built once per row block,
        // the tile's fields decoded once for all columns (per column, as the GEMV does, the GEMM
        // of 4096x14336 q2_g8 x 512 took 0.34 s, the row kernels 0.27 s; now 0.13 s)
        for (uint64_t t = t0; t < t1; ++t) {
            k.S.begin_block(t, true);
            k.Z.begin_block(t, true);
            const uint8_t* tile = k.w.tiles + t * k.lay.tile_bytes;
            with_int_zeros<AnyMeta>(k.S.int_zeros() && k.Z.int_zeros(), [&](auto iz) {
                k.S.template decode_tile<decltype(iz)::value>(tile + k.lay.off_scales);
                k.Z.template decode_tile<decltype(iz)::value>(tile + k.lay.off_zeros);
            });
            for (uint64_t j = 0; j < a.ncols; ++j) tile_run<BITS, GK, 1, DecodedMeta>(k, t, j);
        }
        return;
    }
    // GEMV: specialised per meta kind pair (tiles_common.h)
    with_meta(k.w.p, k.lay, [&](auto m) { rg_gemv<BITS, GK, decltype(m)>(k, t0, t1); });
}

// ---- sign weights: y = h * (total - 2 * sum over the set bits of xq * xd) ------------------
// (matmul.cpp's row form; total = sum of all s8, from the driver)

template <int R>
void sign_run(const TiledArgs& a, const TiledLayout& lay, const uint8_t* pf_end, uint64_t t, uint64_t j) {
    const WeightView& w = *a.w;
    const uint64_t nblk = w.lay.kp / 32;  // 1-bit rows are padded to 32 with zero codes
    const QActRow x = column_act(a, j);
    const uint8_t* tile[R];
    for (int r = 0; r < R; ++r) tile[r] = w.tiles + (t + uint64_t(r)) * lay.tile_bytes;
    const RunPrefetch<R> pf(tile, lay.tile_bytes, 64, nblk, pf_end, j == 0);
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (uint64_t b = 0; b < nblk; ++b) {
        pf.at(b);
        const __m512 xd = _mm512_set1_ps(x.d[b]);
        static_for<R>([&](auto ri) LB_LAMBDA_INLINE {
            constexpr int r = decltype(ri)::value;
            const __m512i isum = tile_isum<1, 0, 8>(tile[r] + b * 64, x.q + 32 * b);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), xd, acc[r]);
        });
    }
    const float* h = reinterpret_cast<const float*>(w.data + w.lay.off_hvec);
    const __m512 total = _mm512_set1_ps(*column_xsum(a, j));
    for (int r = 0; r < R; ++r) {
        const uint64_t row = (t + uint64_t(r)) * kTileRows;
        const __m512 y = _mm512_mul_ps(_mm512_loadu_ps(h + row), _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), acc[r], total));
        _mm512_storeu_ps(column_y(a, j) + row, y);
    }
}

void sign_tiles(const TiledArgs& a, uint64_t t0, uint64_t t1) {
    const TiledLayout lay = tiled_layout(*a.w);
    const uint8_t* end = a.w->tiles + t1 * lay.tile_bytes;
    if (a.ncols > 1) {
        for (uint64_t t = t0; t < t1; ++t)
            for (uint64_t j = 0; j < a.ncols; ++j) sign_run<1>(a, lay, end, t, j);
        return;
    }
    prefetch_range_start(a.w->tiles + t0 * lay.tile_bytes, lay.tile_bytes, 2, end);
    // GEMV: two tiles at a time share the activation loads (4096x14336 L3-resident: 0.118 ms one
    // at a time, 0.091 two, 0.088-0.094 four; from DRAM the three are equal)
    for (uint64_t t = t0; t < t1;) {
        if (t + 1 < t1) {
            sign_run<2>(a, lay, end, t, 0);
            t += 2;
        } else {
            sign_run<1>(a, lay, end, t++, 0);
        }
    }
}

}  // namespace

void tiles_avx512(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    if (a.w->type == Type::sign) return sign_tiles(a, t0, t1);
    with_code_shape(a.w->p, [&](auto bits, auto gk) {
        rg_tiles_avx512<decltype(bits)::value, decltype(gk)::value>(a, t0, t1, scratch);
    });
}

}  // namespace lb
