// tiles_avx512_gfni.cpp: the AVX-512 kernel of rg weights in the row-tiled layout
// (backends/cpu/tiled.h), CpuKernels::rg_tiles of the avx512 table. Compiled with GFNI as well
// (one vgf2p8affineqb moves a code field of every byte to its low bits); the avx512 table uses
// it only on CPUs with GFNI (dispatch.cpp), the others keep the row layout.
// Checked against the scalar q8 reference by tests/test_kernels.cpp.
#include <utility>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/simd_avx512.h"
#include "backends/cpu/tiled.h"

namespace lb {
namespace {

// ---- tiled rg weights (backends/cpu/tiled.h) ---------------------------------------------------
// A tile is 16 rows; every vector below has one lane per row. One vpdpbusd takes a 64-byte code
// vector (16 rows x 4 inputs, one quad) and the quad's 4 activation bytes broadcast to every
// lane, so each lane accumulates its own row's integer dot product. Per segment (a group, or a
// 32-input activation block when the group is longer) the int32 lanes are scaled by
// s[row] * xd[block] into float accumulators; the zero term adds m[row] * xsum[group] with
// m = -(z * s) (code zeros) or -z (value zeros), as the row kernels do.

template <class F, int... I>
inline void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}
// f(integral_constant<int, 0>) .. f(integral_constant<int, N - 1>)
template <int N, class F>
inline void static_for(F&& f) {
    static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// One meta field (scale or zero) of a tile's 16 rows, decoded per group.
//   raw:    f16 values
//   lookup: a 1/2/4-bit code; the table entry of the group is decoded once per tile block into
//           16 values v[i] = f16(f16((i & mask) - tz) * ts), which vpermps indexes with the
//           rows' codes (vpermps reads the low 4 bits of each lane, so fields above the one
//           wanted do not need masking: the 16 values repeat with the code's period)
//   direct: an 8-bit code, decoded in the lanes with the group's (ts, tz)
// The decoded values of a table entry depend only on (row / rdiv, group): they are rebuilt
// when a tile starts a new row block.
class TileField {
 public:
    // scratch: 18 floats per group
    TileField(const WeightView& w, bool zero, float* scratch)
        : f_(zero ? w.p.zbits : w.p.sbits),
          map_(zero ? w.p.zmap : w.p.smap),
          tab_(w.data + (zero ? w.lay.off_ztab : w.lay.off_stab)),
          n_(w.n),
          groups_(w.k / w.p.group),
          none_(_mm512_set1_ps(zero ? 0.0f : 1.0f)),
          vals_(scratch),
          ts_(scratch + 16 * groups_),
          tz_(ts_ + groups_) {
        kind_ = f_ == 0 ? Kind::none : f_ == 16 ? Kind::raw : f_ == 8 ? Kind::direct : Kind::lookup;
        if (kind_ == Kind::lookup) shift_per_ = f_ == 1 ? 3 : f_ == 2 ? 2 : 1;  // log2(8 / f)
    }

    void begin_tile(uint64_t tile, const uint8_t* plane) {
        plane_ = plane;
        if (kind_ != Kind::lookup && kind_ != Kind::direct) return;
        const uint64_t row = tile * kTileRows;
        const uint64_t block = map_.rdiv >= n_ ? 0 : row / map_.rdiv;
        if (block == block_) return;
        block_ = block;
        // the block's table entries of every group as floats: 16 at a time where they are
        // consecutive in the table, else one by one
        uint64_t idx = map_.index(row, 0);
        const uint64_t step = map_.period ? map_.cstride % map_.period : map_.cstride;
        uint64_t c = 0;
        if (step == 1)
            for (; c + 16 <= groups_ && (!map_.period || idx + 16 <= map_.period); c += 16, idx += 16) {
                __m512 ts, tz;
                entries16(tab_ + 4 * idx, ts, tz);
                _mm512_storeu_ps(ts_ + c, ts);
                _mm512_storeu_ps(tz_ + c, tz);
            }
        for (; c < groups_; ++c) {
            if (map_.period && idx >= map_.period) idx -= map_.period;
            const uint8_t* e = tab_ + 4 * idx;
            ts_[c] = _cvtsh_ss(uint16_t(e[0] | e[1] << 8));
            tz_[c] = _cvtsh_ss(uint16_t(e[2] | e[3] << 8));
            idx += step;
        }
        if (kind_ != Kind::lookup) return;
        const __m512i codes = _mm512_and_si512(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(int((1u << f_) - 1u)));
        const __m512 fcodes = _mm512_cvtepi32_ps(codes);
        for (c = 0; c < groups_; ++c)
            _mm512_storeu_ps(vals_ + 16 * c, field_value16(fcodes, _mm512_set1_ps(ts_[c]), _mm512_set1_ps(tz_[c])));
    }

    __m512 get(uint64_t c) const {
        switch (kind_) {
            case Kind::none:
                return none_;
            case Kind::raw:
                return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(plane_ + 32 * c)));
            case Kind::lookup: {
                __m512i q = _mm512_cvtepu8_epi32(
                    _mm_load_si128(reinterpret_cast<const __m128i*>(plane_ + 16 * (c >> shift_per_))));
                q = _mm512_srl_epi32(q, _mm_cvtsi32_si128(int(f_ * (c & ((1u << shift_per_) - 1u)))));
                return _mm512_permutexvar_ps(q, _mm512_loadu_ps(vals_ + 16 * c));
            }
            default: {
                const __m512 q = _mm512_cvtepi32_ps(
                    _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(plane_ + 16 * c))));
                return field_value16(q, _mm512_set1_ps(ts_[c]), _mm512_set1_ps(tz_[c]));
            }
        }
    }

 private:
    enum class Kind { none, raw, lookup, direct };
    Kind kind_;
    uint32_t f_, shift_per_ = 0;
    MetaMap map_;
    const uint8_t* tab_;
    uint64_t n_, groups_;
    __m512 none_;
    float* vals_;    // lookup: 16 values per group
    float *ts_, *tz_;  // the table entry of each group
    const uint8_t* plane_ = nullptr;
    uint64_t block_ = ~uint64_t(0);
};

// codes of quad QI (0..7) of a 32-input block of a tile: 64 bytes, byte 4r + j = row r, input 4*QI + j
template <int BITS, int QI>
inline __m512i tile_quad(const uint8_t* blk) {
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

// integer dot products of quads Q0 .. Q0+NQ-1 of a block for the 16 rows (two chains)
template <int BITS, int Q0, int NQ>
inline __m512i tile_isum(const uint8_t* blk, const int8_t* xb) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    static_for<NQ>([&](auto i) {
        constexpr int q = Q0 + decltype(i)::value;
        const __m512i x = _mm512_set1_epi32(int(load_u32(reinterpret_cast<const uint8_t*>(xb) + 4 * q)));
        if constexpr (decltype(i)::value % 2 == 0)
            a = _mm512_dpbusd_epi32(a, tile_quad<BITS, q>(blk), x);
        else
            b = _mm512_dpbusd_epi32(b, tile_quad<BITS, q>(blk), x);
    });
    return NQ > 1 ? _mm512_add_epi32(a, b) : a;
}

constexpr uint64_t kPrefetchAhead = 4096;

// GK: the group (8 or 16), or 32 for any multiple of 32
template <int BITS, int GK>
void rg_tiles_avx512(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    const WeightView& w = *a.w;
    const TiledLayout lay = tiled_layout(w);
    const uint64_t groups = w.k / w.p.group;
    const bool code_zero = w.p.zmode == ZeroMode::code;
    constexpr uint64_t blk_bytes = 64 * BITS;  // codes of 32 inputs of 16 rows
    TileField S(w, false, scratch), Z(w, true, scratch + 18 * groups);
    // Software prefetch, kPrefetchAhead bytes ahead of the tile being read, spread over its
    // blocks (pf_step bytes per block, at least the tile's bytes per block): the hardware
    // prefetchers alone left a DRAM-resident GEMV at about half the read bandwidth.
    const uint64_t nblk = (w.k + 31) / 32;
    const uint64_t pf_step = (lay.tile_bytes / nblk + 64) & ~uint64_t(63);
    const uint8_t* pf = w.tiles + t0 * lay.tile_bytes + kPrefetchAhead;
    const uint8_t* const pf_end = w.tiles + t1 * lay.tile_bytes;
    auto prefetch = [&] {
        for (uint64_t i = 0; i < pf_step; i += 64)
            if (pf + i < pf_end) _mm_prefetch(reinterpret_cast<const char*>(pf + i), _MM_HINT_T0);
        pf += pf_step;
    };
    for (uint64_t t = t0; t < t1; ++t) {
        const uint8_t* tile = w.tiles + t * lay.tile_bytes;
        S.begin_tile(t, tile + lay.off_scales);
        Z.begin_tile(t, tile + lay.off_zeros);
        for (uint64_t j = 0; j < a.ncols; ++j) {
            const QActRow x = act_row(const_cast<uint8_t*>(a.act + j * a.act_stride), w.k);
            const float* xsum = a.xsum + j * a.xsum_stride;
            __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
            __m512 accm[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
            // one group: its sum (times xd, or xd still to come) times s goes to acc[slot] (or
            // into a block sum), its zero term to accm
            auto finish = [&](__m512& into, uint64_t c, __m512 sum) {
                const __m512 s = S.get(c), z = Z.get(c);
                into = _mm512_fmadd_ps(sum, s, into);
                __m512& m = accm[c % 2];
                m = _mm512_fnmadd_ps(code_zero ? _mm512_mul_ps(z, s) : z, _mm512_set1_ps(xsum[c]), m);
            };
            if constexpr (GK < 32) {
                // groups inside one activation block: sum_g s_g isum_g, then times the block's xd
                constexpr int per_blk = 32 / GK;
                for (uint64_t b = 0; b < nblk; ++b) {
                    if (j == 0) prefetch();
                    const uint8_t* blk = tile + b * blk_bytes;
                    const int8_t* xb = x.q + 32 * b;
                    __m512 bsum = _mm512_setzero_ps();
                    static_for<per_blk>([&](auto i) {
                        constexpr int gi = decltype(i)::value;
                        const uint64_t c = b * per_blk + gi;
                        if (c >= groups) return;  // last block of a row with k % 32 != 0
                        const __m512i isum = tile_isum<BITS, gi * GK / 4, GK / 4>(blk, xb);
                        finish(bsum, c, _mm512_cvtepi32_ps(isum));
                    });
                    acc[b % 2] = _mm512_fmadd_ps(bsum, _mm512_set1_ps(x.d[b]), acc[b % 2]);
                }
            } else {
                const uint64_t per_group = w.p.group / 32;
                for (uint64_t c = 0; c < groups; ++c) {
                    __m512 g = _mm512_setzero_ps();
                    for (uint64_t b = c * per_group; b < (c + 1) * per_group; ++b) {
                        if (j == 0) prefetch();
                        const __m512i isum = tile_isum<BITS, 0, 8>(tile + b * blk_bytes, x.q + 32 * b);
                        g = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(x.d[b]), g);
                    }
                    finish(acc[c % 2], c, g);
                }
            }
            const __m512 y = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(accm[0], accm[1]));
            _mm512_storeu_ps(a.y + j * w.n + t * kTileRows, y);
        }
    }
}

template <int BITS>
void rg_tiles_bits(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    const uint32_t g = a.w->p.group;
    if (g == 8) return rg_tiles_avx512<BITS, 8>(a, t0, t1, scratch);
    if (g == 16) return rg_tiles_avx512<BITS, 16>(a, t0, t1, scratch);
    return rg_tiles_avx512<BITS, 32>(a, t0, t1, scratch);
}

void rg_tiles_dispatch(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    switch (a.w->p.bits) {
        case 1:
            return rg_tiles_bits<1>(a, t0, t1, scratch);
        case 2:
            return rg_tiles_bits<2>(a, t0, t1, scratch);
        case 4:
            return rg_tiles_bits<4>(a, t0, t1, scratch);
        default:
            return rg_tiles_bits<8>(a, t0, t1, scratch);
    }
}

}  // namespace

void rg_tiles_avx512(const TiledArgs& a, uint64_t t0, uint64_t t1, float* scratch) {
    rg_tiles_dispatch(a, t0, t1, scratch);
}

}  // namespace lb
