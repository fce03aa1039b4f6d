// tiled.cpp: the CPU runtime copies (see tiled.h): the row-tiled layout of rg and sign weights
// (eligibility, sizes, the tiling and scalar readers) and the decoded meta of a0 weights. Portable
// scalar code; the kernels that read the copies are per ISA.
#include "backends/cpu/tiled.h"

#include <cstring>
#include <vector>

#include "backends/cpu/dispatch.h"
#include "core/error.h"
#include "core/half.h"

namespace lb {

static uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t(63); }

static bool code_field_ok(uint32_t f) { return f == 1 || f == 2 || f == 4 || f == 8; }

// the table entry of a coded field does not change within any tile
static bool tile_uniform(const MetaMap& m, uint64_t n) { return m.rstride == 0 || m.rdiv >= n || m.rdiv % 16 == 0; }

// the width of a meta field in the tiles: the weight's, or 16 (decoded f16 values) for a code
// of another width than 1/2/4/8 or whose table entry changes within a tile
static uint8_t tile_field_bits(uint32_t fbits, const MetaMap& m, uint64_t n) {
    if (fbits == 0 || fbits == 16 || (code_field_ok(fbits) && tile_uniform(m, n))) return uint8_t(fbits);
    return 16;
}

bool tiled_supported(const WeightView& w) {
    if (w.type == Type::a0) return true;
    if (w.n < kTileRows) return false;
    if (w.type == Type::sign) return true;  // 1-bit codes, no meta fields
    if (w.type != Type::rg) return false;
    const QParams& p = w.p;
    if (!code_field_ok(p.bits) && p.bits != 3) return false;
    return p.group == 8 || p.group == 16 || p.group % 32 == 0;
}

// bytes of one field plane of a tile
static uint64_t field_bytes(uint32_t fbits, uint64_t groups) {
    if (fbits == 0) return 0;
    if (fbits == 16) return 32 * groups;
    const uint64_t per = 8 / fbits;
    return 16 * ((groups + per - 1) / per);
}

bool runtime_copy_used(const WeightView& w, const CpuKernels& k) {
    return w.type == Type::a0 || (k.tiles && tiled_supported(w));
}

TiledLayout tiled_layout(const WeightView& w) {
    LB_CHECK(tiled_supported(w), "tiled layout: %s %llux%llu cannot be tiled", describe(w.type, w.p).c_str(),
             (unsigned long long)w.n, (unsigned long long)w.k);
    if (w.type == Type::a0) {  // class-major: scales, zeros, code rows
        TiledLayout t;
        t.ntiles = w.n / w.p.group;
        t.off_scales = 0;
        t.off_zeros = align64(2 * w.k);
        t.off_codes = t.off_zeros + align64(2 * w.k);
        t.code_bytes = w.p.group * w.lay.code_row_bytes;
        t.tile_bytes = t.off_codes + align64(t.code_bytes);
        t.nbytes = t.ntiles * t.tile_bytes;
        return t;
    }
    const uint64_t groups = tiled_groups(w);
    TiledLayout t;
    t.ntiles = w.n / kTileRows;
    t.code_bytes = w.lay.kp / 32 * 64 * w.p.bits;  // 64 * bits per 32 inputs
    t.sbits = tile_field_bits(w.p.sbits, w.p.smap, w.n);
    t.zbits = tile_field_bits(w.p.zbits, w.p.zmap, w.n);
    t.off_scales = t.code_bytes;
    t.off_zeros = t.off_scales + align64(field_bytes(t.sbits, groups));
    t.tile_bytes = t.off_zeros + align64(field_bytes(t.zbits, groups));
    t.nbytes = t.ntiles * t.tile_bytes;
    return t;
}

// position of (tile row r, input i) in a tile's codes: byte offset and bit shift (3 bits: of the
// low two bits; the high bit is at byte 192 * (i / 32) + 128 + 4r + i % 4, bit (i % 32) / 4)
static void code_pos(uint32_t bits, uint64_t r, uint64_t i, uint64_t& byte, uint32_t& shift) {
    if (bits == 3) {
        code_pos(2, r, i % 32, byte, shift);
        byte += 192 * (i / 32);
        return;
    }
    const uint64_t per_unit = 32 / bits;  // inputs per unit
    const uint64_t u = i / per_unit, in = i % per_unit;
    byte = u * 64 + 4 * r + in % 4;
    shift = uint32_t(bits * (in / 4));
}

// position of (tile row r, group c) in a field plane
static void field_pos(uint32_t fbits, uint64_t r, uint64_t c, uint64_t& byte, uint32_t& shift) {
    if (fbits == 16) {
        byte = 32 * c + 2 * r;
        shift = 0;
        return;
    }
    const uint64_t per = 8 / fbits;
    byte = 16 * (c / per) + r;
    shift = uint32_t(fbits * (c % per));
}

// field c of a meta row of the file layout (f bits: a code, or 16: raw f16 bits)
static uint32_t row_field(const uint8_t* r, uint32_t f, uint64_t c) {
    if (f == 16) return uint32_t(r[2 * c] | r[2 * c + 1] << 8);
    return meta_code(r, f, c);
}

const uint16_t* a0_scales(const uint8_t* copy, const TiledLayout& lay, uint64_t r) {
    return reinterpret_cast<const uint16_t*>(copy + r * lay.tile_bytes + lay.off_scales);
}
const uint16_t* a0_zeros(const uint8_t* copy, const TiledLayout& lay, uint64_t r) {
    return reinterpret_cast<const uint16_t*>(copy + r * lay.tile_bytes + lay.off_zeros);
}
const uint8_t* a0_codes(const uint8_t* copy, const TiledLayout& lay, uint64_t r) {
    return copy + r * lay.tile_bytes + lay.off_codes;
}

void a0_interleave_bits1(const WeightView& w, uint64_t r, uint8_t* out) {
    const uint64_t R = w.n / w.p.group, units = w.lay.code_row_bytes / 2;
    for (uint64_t t = 0; t < w.p.group; ++t) {
        const uint8_t* row = w.codes(r + t * R);
        for (uint64_t u = 0; u < units; ++u) std::memcpy(out + 2 * (u * w.p.group + t), row + 2 * u, 2);
    }
}

void decode_a0_class(const WeightView& w, const CpuKernels& kern, uint64_t r, float* s, float* m, uint16_t* s16,
                     uint16_t* z16) {
    // decode_meta gives m = -z for value zeros: decoding as value zeros yields z itself,
    // whatever the weight's zero mode (the mode only says how the kernels combine z and s)
    WeightView wz = w;
    wz.p.zmode = ZeroMode::value;
    kern.decode_meta(wz, r, s, m);
    for (uint64_t i = 0; i < w.k; ++i) m[i] = -m[i];
    kern.cvt_to_f16(s, s16, w.k);
    kern.cvt_to_f16(m, z16, w.k);
}

static void copy_a0(const WeightView& w, uint8_t* out) {
    const TiledLayout t = tiled_layout(w);
    const uint64_t R = t.ntiles;
    std::memset(out, 0, t.nbytes);
    std::vector<float> s(w.k), m(w.k);
    for (uint64_t r = 0; r < R; ++r) {
        uint8_t* c = out + r * t.tile_bytes;
        decode_a0_class(w, kernels_best(), r, s.data(), m.data(), reinterpret_cast<uint16_t*>(c + t.off_scales),
                        reinterpret_cast<uint16_t*>(c + t.off_zeros));
        if (w.p.bits == 1) {
            a0_interleave_bits1(w, r, c + t.off_codes);
            continue;
        }
        for (uint64_t i = 0; i < w.p.group; ++i)
            std::memcpy(c + t.off_codes + i * w.lay.code_row_bytes, w.codes(r + i * R), w.lay.code_row_bytes);
    }
}

void tile_weight(const WeightView& w, uint8_t* out) {
    if (w.type == Type::a0) return copy_a0(w, out);
    const TiledLayout t = tiled_layout(w);
    const QParams& p = w.p;
    const uint64_t groups = tiled_groups(w), kp = w.lay.kp;
    std::memset(out, 0, t.nbytes);
    std::vector<uint8_t> q(kp);
    for (uint64_t row = 0; row < t.ntiles * kTileRows; ++row) {
        uint8_t* tile = out + row / kTileRows * t.tile_bytes;
        const uint64_t r = row % kTileRows;
        unpack_codes_ref(w.codes(row), p.bits, kp, q.data());
        if (p.bits == 3) {  // per 32 inputs: their low two bits as 2-bit units, then the high bits
            for (uint64_t b = 0; b < kp / 32; ++b)
                for (uint32_t t = 0; t < 8; ++t)
                    for (uint32_t j = 0; j < 4; ++j) {
                        const uint32_t v = q[32 * b + 4 * t + j];
                        uint8_t* lo = tile + 192 * b + 64 * (t / 4) + 4 * r + j;
                        uint8_t* hi = tile + 192 * b + 128 + 4 * r + j;
                        *lo = uint8_t(*lo | (v & 3u) << (2 * (t % 4)));
                        *hi = uint8_t(*hi | (v >> 2) << t);
                    }
        } else {
            const uint32_t per_unit = 32 / p.bits, quads = 8 / p.bits;  // code_pos, unrolled
            for (uint64_t u = 0; u < kp / per_unit; ++u) {
                uint8_t* dst = tile + u * 64 + 4 * r;
                const uint8_t* src = q.data() + u * per_unit;
                for (uint32_t t = 0; t < quads; ++t)
                    for (uint32_t j = 0; j < 4; ++j) dst[j] = uint8_t(dst[j] | src[4 * t + j] << (p.bits * t));
            }
        }
        for (int zero = 0; zero < 2; ++zero) {
            const uint32_t f = zero ? t.zbits : t.sbits, wf = zero ? p.zbits : p.sbits;
            if (f == 0) continue;
            const MetaRow m = meta_row_of(w, row);
            const uint8_t* src = zero ? m.zrow : m.srow;
            uint8_t* plane = tile + (zero ? t.off_zeros : t.off_scales);
            for (uint64_t c = 0; c < groups; ++c) {
                // a code whose tiles hold its decoded value: that value is an f16 (the second
                // level rounds to f16), so f32_to_f16 is exact
                const uint32_t v = f == wf ? row_field(src, f, c)
                                           : f32_to_f16(decode_field_ref(src, zero ? m.ztab : m.stab, wf,
                                                                         zero ? p.zmap : p.smap, row, c, 0.0f));
                uint64_t byte;
                uint32_t shift;
                field_pos(f, r, c, byte, shift);
                if (f == 16) {
                    plane[byte] = uint8_t(v);
                    plane[byte + 1] = uint8_t(v >> 8);
                } else {
                    plane[byte] = uint8_t(plane[byte] | v << shift);
                }
            }
        }
    }
}

uint32_t tiled_code(const WeightView& w, const uint8_t* tiles, uint64_t row, uint64_t i) {
    LB_CHECK(w.type != Type::a0, "tiled_code: a0 copies hold no codes");
    const TiledLayout t = tiled_layout(w);
    uint64_t byte;
    uint32_t shift;
    const uint8_t* tile = tiles + row / kTileRows * t.tile_bytes;
    code_pos(w.p.bits, row % kTileRows, i, byte, shift);
    if (w.p.bits == 3)
        return ((tile[byte] >> shift) & 3u) |
               ((tile[192 * (i / 32) + 128 + 4 * (row % kTileRows) + i % 4] >> (i % 32 / 4)) & 1u) << 2;
    return (tile[byte] >> shift) & ((1u << w.p.bits) - 1u);
}

uint32_t tiled_field(const WeightView& w, const uint8_t* tiles, bool zero, uint64_t row, uint64_t group) {
    LB_CHECK(w.type != Type::a0, "tiled_field: a0 copies hold decoded meta (a0_scales, a0_zeros)");
    const TiledLayout t = tiled_layout(w);
    const uint32_t f = zero ? t.zbits : t.sbits;
    if (f == 0) return 0;
    const uint8_t* plane = tiles + row / kTileRows * t.tile_bytes + (zero ? t.off_zeros : t.off_scales);
    uint64_t byte;
    uint32_t shift;
    field_pos(f, row % kTileRows, group, byte, shift);
    if (f == 16) return uint32_t(plane[byte] | plane[byte + 1] << 8);
    return (plane[byte] >> shift) & ((1u << f) - 1u);
}

uint64_t tiled_scratch_floats(const WeightView& w) { return 2 * 34 * tiled_groups(w); }

uint64_t tiled_groups(const WeightView& w) { return w.type == Type::rg ? w.k / w.p.group : 0; }

TiledWeight make_tiled(const WeightView& w) {
    if (!tiled_supported(w)) return TiledWeight{};
    TiledWeight t = make_buffer(tiled_layout(w).nbytes);
    tile_weight(w, t.data.get());
    return t;
}

}  // namespace lb
