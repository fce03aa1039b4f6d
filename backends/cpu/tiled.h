// tiled.h: the CPU runtime copies of weights (WeightView::tiles), made from the file layout at
// load time and never stored: the row-tiled layout of rg and sign weights, for the CPU kernels
// that have one (CpuKernels::tiles), and the decoded meta of a0 weights, for every kernel table.
//
// Why: in the row layout of formats/blocktypes.md a kernel computes one row at a time: each step
// of 64 inputs ends in 16 int32 lanes of that row that must be scaled per activation block and
// summed, and each row decodes its own meta codes through the second-level table (two fp16
// roundings per field). In the tiled layout 16 rows are interleaved so that one vpdpbusd
// (16 lanes x 4 inputs, the 4 activation bytes broadcast) advances 16 rows by 4 inputs (AVX2:
// maddubs + madd on each 8-row half): every lane is a row, nothing is reduced across lanes, and
// a meta field of the 16 rows is one vector (two halves).
// The layout is accepted only where the 16 rows of a tile share their second-level table entry
// (see tiled_supported), so a table entry is decoded once per tile, or once per 16 codes into a
// lookup vector (fields of 1, 2 or 4 bits) that vpermps indexes with the rows' codes.
//
// Layout: ntiles = n / 16 tiles of 16 rows (tile T = rows 16T .. 16T+15), each tile_bytes long
// and 64-byte aligned; the n % 16 rows after the last tile are not tiled (the kernels take them
// from the row layout). Inside a tile:
//   codes (bits b = 1, 2, 4, 8): kp / U units of 64 bytes, U = 32 / b inputs per unit. Byte 4r + j
//          of unit u holds, at bits [b*t, b*t + b), the code of tile row r at input u*U + 4t + j,
//          for t < 8 / b ("quad" t of the unit: 4 inputs of 16 rows).
//          b = 3: per 32 inputs, 192 bytes: the codes' low two bits as two 2-bit units, then
//          their high bits as one 1-bit unit (the kernels put the two together per quad).
//   scale plane, then zero plane (each 64-byte aligned), a field of F bits per row and group:
//          F = 1, 2, 4, 8: ceil(G / P) units of 16 bytes, P = 8 / F fields per byte; byte r of
//                          unit v holds the field of row r, group P*v + u at bits [F*u, F*u + F).
//          F = 16:         G units of 32 bytes: the 16 rows' raw f16 values, row r at 2r.
//          F = 0:          nothing.
//          F is the weight's field width (TiledLayout::sbits, zbits), or 16 where the weight has
//          a code of another width or one whose table entry changes within a tile (GreenBit
//          asym v1: an entry per row; HQQ's group-128 meta: an entry per row and group): the
//          tiles then hold the decoded values, which are f16 (the second level rounds to f16).
//          (Such weights ran the row kernels before: 4096x14336 GEMV from DRAM, GreenBit v1
//          2-bit g32 20-30% -> 87-90%, HQQ 4-bit g64 with 8-bit meta 46% -> 83-84% of the read
//          bandwidth, counting the file's 2.3 and 4.27 bits per weight; the copies hold 2.56
//          and 4.5.)
// Second-level tables, the parameters and the untiled rows stay in the original blob.
//
// a0 weights (HQQ axis 0, formats/blocktypes.md): the copy is class-major with the meta decoded.
// For each of the R = n / group row classes, tile_bytes long and 64-byte aligned: k f16 scales,
// k f16 zeros (at off_zeros), then the codes of the class's `group` rows r, r + R, ... (at
// off_codes, group * code_row_bytes bytes): 1-bit codes unit-interleaved (a0_bit in
// core/quant.h: per 16 inputs the rows' 2 bytes side by side, so a step of a0_bits1 reads one
// place instead of `group` rows each a stream of its own: 4096x4096 from DRAM 0.22-0.23 ->
// 0.21-0.22 ms), wider codes row after row as the blob has them (the dot kernels read rows).
// Why the decoded meta: every (class, column) has its own 8-bit scale and zero code, each
// decoded through its own table entry with two fp16 roundings (HQQ's group-128 meta): about 25
// vector operations per 16 columns, shared by only `group` (8) rows of 1-bit codes, so the GEMV
// was compute-bound at a fifth of the read bandwidth. Decoded scales and zeros are f16 values
// (the second level rounds to f16), so f16 holds them exactly: the kernel reads 4 bytes per
// class and column instead of 2 (5 bits per 1-bit weight instead of 3), only converts them, and
// reads everything of a class from one region (classes follow each other: one sequential pass).
#pragma once
#include <cstdint>
#include <memory>

#include "core/buffer.h"
#include "core/quant.h"

namespace lb {

constexpr uint64_t kTileRows = 16;

struct TiledLayout {
    uint64_t ntiles = 0;
    uint64_t code_bytes = 0;  // per tile
    uint64_t off_scales = 0, off_zeros = 0;
    uint64_t off_codes = 0;        // a0: the class's code rows
    uint8_t sbits = 0, zbits = 0;  // rg: the meta field widths of the tiles (see above)
    uint64_t tile_bytes = 0;
    uint64_t nbytes = 0;  // ntiles * tile_bytes
};

// True when w can be tiled: at least one tile, and either a sign weight (1-bit codes; the
// vectors stay in the blob) or an rg weight with code bits 1/2/3/4/8 and group 8, 16 or a
// multiple of 32 (any meta: see the field widths of the layout). Every a0 weight (its decoded
// meta).
bool tiled_supported(const WeightView& w);
// The copy the CPU driver uses with kernel table `k`: a0 always, rg and sign where k has tiled
// kernels and tiled_supported(w).
bool runtime_copy_used(const WeightView& w, const CpuKernels& k);
TiledLayout tiled_layout(const WeightView& w);

// Writes the tiles of w (a0: the decoded meta) into out (tiled_layout(w).nbytes bytes).
void tile_weight(const WeightView& w, uint8_t* out);

// a0: decodes class r's meta (decode_meta of `kern` into s and m, k floats of scratch each) into
// k f16 scales and zeros, as the copy holds them (decoded values are f16, so exactly)
void decode_a0_class(const WeightView& w, const CpuKernels& kern, uint64_t r, float* s, float* m, uint16_t* s16,
                     uint16_t* z16);
// a0: class r of a copy: its decoded meta (k f16 each; zmode as in the weight) and its codes
// (1-bit: unit-interleaved; wider: the code row of its t-th row, row r + t * R, at t *
// code_row_bytes)
const uint16_t* a0_scales(const uint8_t* copy, const TiledLayout& lay, uint64_t r);
const uint16_t* a0_zeros(const uint8_t* copy, const TiledLayout& lay, uint64_t r);
const uint8_t* a0_codes(const uint8_t* copy, const TiledLayout& lay, uint64_t r);
// a0 with 1-bit codes: class r's codes from the blob, unit-interleaved into out (group *
// code_row_bytes bytes)
void a0_interleave_bits1(const WeightView& w, uint64_t r, uint8_t* out);

// Scalar readers of the tiled layout (tests): the code of (row, input) and a meta field of
// (row, group) (zero = false: scale plane), row < ntiles * 16.
uint32_t tiled_code(const WeightView& w, const uint8_t* tiles, uint64_t row, uint64_t i);
uint32_t tiled_field(const WeightView& w, const uint8_t* tiles, bool zero, uint64_t row, uint64_t group);

// meta groups per row: k / group (rg), 0 (sign)
uint64_t tiled_groups(const WeightView& w);

// Floats of scratch a CpuKernels::tiles call needs: per meta field and group, the table entry
// (2 floats), 16 lookup values and (GEMM) the 16 rows' decoded values.
uint64_t tiled_scratch_floats(const WeightView& w);

// An owned tiled copy of a weight (on 2 MiB pages where allowed, see core/buffer.h).
using TiledWeight = Buffer;
// The tiled copy of w, or an empty one when w cannot be tiled.
TiledWeight make_tiled(const WeightView& w);

}  // namespace lb
