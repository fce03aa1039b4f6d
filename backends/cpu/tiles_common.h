// tiles_common.h: what the x86 kernels of tiled weights (tiles_avx512_gfni.cpp, tiles_avx2.cpp)
// share and is not ISA code: compile-time loops, the meta field kinds and the kind pairs the
// kernels are specialised for, the table entries of a tile's row block, and the software
// prefetch of a run of tiles. Include only from x86 files compiled with F16C. Internal linkage
// on purpose: the two files are compiled with different ISA flags (see simd_avx512.h).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <utility>

#include "backends/cpu/tiled.h"

// the per-group decoders must be inlined into the kernel loops (a call returns its vectors
// through memory)
#define LB_INLINE inline __attribute__((always_inline))
#define LB_LAMBDA_INLINE __attribute__((always_inline))

namespace lb {
namespace {

template <class F, int... I>
LB_INLINE void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}
// f(integral_constant<int, 0>) .. f(integral_constant<int, N - 1>)
template <int N, class F>
LB_INLINE void static_for(F&& f) {
    static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// How a meta field is stored (tiled.h); `any`: known only at run time.
//   none:   a constant (scale 1, zero 0)
//   raw:    f16 values
//   lookup: a 1/2/4-bit code: the group's table entry gives the 16 values
//           v[i] = f16(f16((i & mask) - tz) * ts), indexed by the rows' codes
//   direct: an 8-bit code, decoded in the lanes with the group's (ts, tz)
//   decoded: (GEMM) the values of every group of the current tile, decoded once into scratch
//           (FieldState::dec) and read by every column
enum class FieldKind { any, none, raw, lookup, direct, decoded };

inline FieldKind field_kind(uint32_t bits) {
    return bits == 0    ? FieldKind::none
           : bits == 16 ? FieldKind::raw
           : bits == 8  ? FieldKind::direct
                        : FieldKind::lookup;
}

// What a kernel instance knows of the meta at compile time: the kind of each field, the width
// of a lookup field (0: run time) and whether zeros are codes (CZ 1) or values (0; -1: run time).
template <FieldKind SK_, int SB_, FieldKind ZK_, int ZB_, int CZ_>
struct Meta {
    static constexpr FieldKind SK = SK_, ZK = ZK_;
    static constexpr int SB = SB_, ZB = ZB_, CZ = CZ_;
};
using AnyMeta = Meta<FieldKind::any, 0, FieldKind::any, 0, -1>;
using DecodedMeta = Meta<FieldKind::decoded, 0, FieldKind::decoded, 0, -1>;

// Whether zeros are codes (m = -(z s)) or values (m = -z): compile-time where M knows it
template <class M>
LB_INLINE bool zeros_are_codes(const QParams& p) {
    return M::CZ < 0 ? p.zmode == ZeroMode::code : M::CZ == 1;
}

// Column j of a call: its q8 activation row, its sums (rg: one per group; sign: the total) and
// its outputs
LB_INLINE QActRow column_act(const TiledArgs& a, uint64_t j) {
    return act_row(const_cast<uint8_t*>(a.act + j * a.act_stride), a.w->k);
}
LB_INLINE const float* column_xsum(const TiledArgs& a, uint64_t j) { return a.xsum + j * a.xsum_stride; }
LB_INLINE float* column_y(const TiledArgs& a, uint64_t j) { return a.y + j * a.w->n; }

// f(Meta{}) specialised for the kind pairs of the common sources (a switch on the field kinds in
// the inner loop cost the GreenBit qstatistic 2-bit g8 AVX-512 kernel a fifth of its time),
// f(AnyMeta{}) for the others
// (the field widths of the tiles, lay.sbits and lay.zbits, not the weight's)
template <class F>
void with_meta(const QParams& p, const TiledLayout& lay, F&& f) {
    using K = FieldKind;
    const K sk = field_kind(lay.sbits), zk = field_kind(lay.zbits);
    const bool cz = p.zmode == ZeroMode::code;
    if (sk == K::lookup && zk == K::lookup && lay.sbits == 4 && lay.zbits == 4 && !cz)  // qstatistic
        return f(Meta<K::lookup, 4, K::lookup, 4, 0>{});
    if ((sk == K::direct || sk == K::raw) && zk == K::lookup && cz) {  // asym (v1: decoded scales)
        if (lay.zbits == 2)
            return sk == K::raw ? f(Meta<K::raw, 0, K::lookup, 2, 1>{}) : f(Meta<K::direct, 0, K::lookup, 2, 1>{});
        if (lay.zbits == 4)
            return sk == K::raw ? f(Meta<K::raw, 0, K::lookup, 4, 1>{}) : f(Meta<K::direct, 0, K::lookup, 4, 1>{});
    }
    if (sk == K::raw && zk == K::raw)  // HQQ plain (code zeros), GGUF (value zeros)
        return cz ? f(Meta<K::raw, 0, K::raw, 0, 1>{}) : f(Meta<K::raw, 0, K::raw, 0, 0>{});
    f(AnyMeta{});
}

// f(std::bool_constant<IZ>{}) with IZ = iz (both fields' entries have zero_exact zeros: the
// decoders skip the first rounding) where the meta M can have a table field; IZ = false where it
// cannot (nothing to skip: one instance)
template <class M, class F>
LB_INLINE void with_int_zeros(bool iz, F&& f) {
    constexpr auto table = [](FieldKind k) { return k != FieldKind::none && k != FieldKind::raw; };
    if constexpr (table(M::SK) || table(M::ZK))
        if (iz) return f(std::true_type{});
    f(std::false_type{});
}

// f(BITS, GK) as integral constants for the code width (1, 2, 3, 4, 8) and the group the kernels are
// written for (8, 16, or 32 for any multiple of 32) of an rg weight
template <class F>
void with_code_shape(const QParams& p, F&& f) {
    auto g = [&](auto bits) {
        if (p.group == 8) return f(bits, std::integral_constant<int, 8>{});
        if (p.group == 16) return f(bits, std::integral_constant<int, 16>{});
        return f(bits, std::integral_constant<int, 32>{});
    };
    switch (p.bits) {
        case 1:
            return g(std::integral_constant<int, 1>{});
        case 2:
            return g(std::integral_constant<int, 2>{});
        case 3:
            return g(std::integral_constant<int, 3>{});
        case 4:
            return g(std::integral_constant<int, 4>{});
        default:
            return g(std::integral_constant<int, 8>{});
    }
}

// What a tiled kernel keeps of one meta field (scale or zero), whatever its ISA: width, kind, and
// the table entries of the current row block as floats in scratch (34 floats per group: 16
// lookup values, then the entry's scale and zero for every group, then (GEMM) the 16 rows'
// decoded values of the current tile). Tiles whose first rows share (row / rdiv) share every
// group's entry.
class FieldState {
 public:
    FieldState(const WeightView& w, const TiledLayout& lay, bool zero, float* scratch)
        : f(zero ? lay.zbits : lay.sbits),
          kind(field_kind(f)),
          groups(w.k / w.p.group),
          vals(scratch),
          ts(scratch + 16 * groups),
          tz(ts + groups),
          dec(tz + groups),
          map_(zero ? w.p.zmap : w.p.smap),
          tab_(w.data + (zero ? w.lay.off_ztab : w.lay.off_stab)),
          n_(w.n) {}

    // the row block of a tile (0 for fields without a table)
    uint64_t block_of(uint64_t tile) const {
        if (kind != FieldKind::lookup && kind != FieldKind::direct) return 0;
        return map_.rdiv >= n_ || map_.rstride == 0 ? 0 : tile * kTileRows / map_.rdiv;
    }

    // Loads the entries of tile's row block into ts and tz unless they are there:
    // fill16(entry bytes, ts, tz) (the ISA's reader of 16 consecutive entries) where the table
    // has them consecutive, one by one elsewhere, and prefetches the next row block's entries
    // where they are consecutive. (A table with an entry per 32 rows and group is 1/13 of a
    // GreenBit 2-bit g8 weight; a 5632x2048 GEMV from DRAM took 101-103 us with one table for
    // all copies, cache-hot, 120-125 with a table per copy as in a model, 117-118 with this
    // prefetch; TinyLLaMA-1.1B q2_g8 decode 73% -> 74-77% of the ceiling.)
    // fill16 returns whether the 16 zeros are all zero_exact (core/quant.h); int_zeros says it of
    // every entry of the block.
    // Returns true when the caller must build every group's lookup values into vals (luts:
    // asked for, GEMM's many columns, and not built yet).
    template <class Fill16>
    bool begin(uint64_t tile, bool want_luts, Fill16&& fill16) {
        if (kind != FieldKind::lookup && kind != FieldKind::direct) return false;
        const uint64_t block = block_of(tile);
        want_luts = want_luts && kind == FieldKind::lookup;
        if (block == block_ && want_luts == luts) return false;
        const uint64_t step = map_.period ? map_.cstride % map_.period : map_.cstride;
        if (block != block_ && step == 1 && (block + 1) * map_.rdiv < n_) {
            const uint64_t next = map_.index((block + 1) * map_.rdiv, 0);
            if (!map_.period || next + groups <= map_.period)
                for (uint64_t o = 0; o < 4 * groups; o += 64)
                    _mm_prefetch(reinterpret_cast<const char*>(tab_ + 4 * next + o), _MM_HINT_T0);
        }
        block_ = block;
        luts = want_luts;
        uint64_t idx = map_.index(tile * kTileRows, 0);
        uint64_t c = 0;
        bool iz = true;
        if (step == 1)
            for (; c + 16 <= groups && (!map_.period || idx + 16 <= map_.period); c += 16, idx += 16)
                iz &= fill16(tab_ + 4 * idx, ts + c, tz + c);
        for (; c < groups; ++c) {
            if (map_.period && idx >= map_.period) idx -= map_.period;
            const uint8_t* e = tab_ + 4 * idx;
            ts[c] = _cvtsh_ss(uint16_t(e[0] | e[1] << 8));  // F16C: the software conversion
            tz[c] = _cvtsh_ss(uint16_t(e[2] | e[3] << 8));  // made AVX2 q2_g8 GEMV 15% slower
            iz &= zero_exact(tz[c]);
            idx += step;
        }
        int_zeros = iz;
        return luts;
    }

    const uint32_t f;
    const FieldKind kind;
    const uint64_t groups;
    float* const vals;     // lookup values of every group (GEMM)
    float *const ts, *tz;  // the table entry of each group
    float* const dec;      // GEMM: the 16 values of each group of the current tile
    bool luts = false;     // vals holds the current block's lookup values
    // every zero of the current block's entries is zero_exact (true without a table): the first
    // of the two fp16 roundings of a decoded field is a no-op (GreenBit's integer zero points)
    bool int_zeros = true;

 private:
    MetaMap map_;
    const uint8_t* tab_;
    uint64_t n_;
    uint64_t block_ = ~uint64_t(0);
};

// One call's shared state, with the ISA's meta field type: the weight, its layout, the two fields
// (their scratch: 34 floats per group each).
template <class Field>
struct TileCall {
    TileCall(const TiledArgs& args, uint64_t t1, float* scratch)
        : a(args),
          w(*args.w),
          lay(tiled_layout(w)),
          groups(w.k / w.p.group),
          nblk((w.k + 31) / 32),
          S(w, lay, false, scratch),
          Z(w, lay, true, scratch + 34 * groups),
          pf_end(w.tiles + t1 * lay.tile_bytes) {}
    const TiledArgs& a;
    const WeightView& w;
    const TiledLayout lay;
    const uint64_t groups, nblk;
    Field S, Z;
    const uint8_t* const pf_end;  // prefetches stop here (the end of this call's tiles)
};

// Software prefetch for a run of R tiles read block by block (the hardware prefetchers alone
// left a DRAM-resident GEMV at about half the read bandwidth), during column 0 (the one that
// reads the tiles first): R tiles of a later run into L2, spread evenly over its nblk blocks
// (each block's share rounded up by one to two lines reached a third into the run after, which
// the next run prefetches again: wasted prefetches, measured slower from DRAM), and
// the run's own codes a few blocks ahead into L1 (the first run of a range was not prefetched
// by an earlier one; for the others this moves lines from L2 to L1 ahead of their use).
// The later run is the first one at least kRunAhead bytes ahead (runs_ahead): one core streams
// about 40 GB/s, and with the next run a run of two 4 KiB tiles (1-bit, K = 2048) left a single
// thread at 74-79% of its read bandwidth (now 85-88%). The runs in between, at the start of a
// range, are requested by prefetch_range_start.
constexpr uint64_t kRunAhead = 16384;
inline uint64_t runs_ahead(uint64_t run_bytes) { return (kRunAhead + run_bytes - 1) / run_bytes; }

// At the start of a GEMV range whose first run has R tiles: the runs after it that no run
// prefetches, into L2.
inline void prefetch_range_start(const uint8_t* first, uint64_t tile_bytes, int R, const uint8_t* end) {
    const uint64_t run = uint64_t(R) * tile_bytes;
    const uint8_t* hi = first + runs_ahead(run) * run;
    for (const uint8_t* p = first + run; p < hi && p < end; p += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
}

template <int R>
class RunPrefetch {
 public:
    RunPrefetch(const uint8_t* const* tiles, uint64_t tile_bytes, uint64_t blk_bytes, uint64_t nblk, const uint8_t* end,
                bool on)
        : tiles_(tiles),
          next_(tiles[0] + runs_ahead(R * tile_bytes) * R * tile_bytes),
          step_((R * tile_bytes + nblk - 1) / nblk),
          blk_bytes_(blk_bytes),
          ahead_(blk_bytes * ((1024 + blk_bytes - 1) / blk_bytes)),
          end_(end),
          on_(on) {}
    LB_INLINE void at(uint64_t b) const {
        if (!on_) return;
        const uint8_t* hi = next_ + (((b + 1) * step_) & ~uint64_t(63));
        for (const uint8_t* p = next_ + ((b * step_) & ~uint64_t(63)); p < hi && p < end_; p += 64)
            _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
        for (int r = 0; r < R; ++r)
            for (uint64_t i = 0; i < blk_bytes_; i += 64)
                _mm_prefetch(reinterpret_cast<const char*>(tiles_[r] + b * blk_bytes_ + ahead_ + i), _MM_HINT_T0);
    }

 private:
    const uint8_t* const* tiles_;
    const uint8_t* next_;
    uint64_t step_, blk_bytes_, ahead_;
    const uint8_t* end_;
    bool on_;
};

}  // namespace
}  // namespace lb
