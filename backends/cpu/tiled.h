// tiled.h: the row-tiled runtime layout of rg and sign weights, for the CPU kernels that have one
// (CpuKernels::tiles). It is made from the file layout at load time and never stored.
//
// Why: in the row layout of formats/blocktypes.md a kernel computes one row at a time: each step
// of 64 inputs ends in 16 int32 lanes of that row that must be scaled per activation block and
// summed, and each row decodes its own meta codes through the second-level table (two fp16
// roundings per field). In the tiled layout 16 rows are interleaved so that one vpdpbusd
// (16 lanes x 4 inputs, the 4 activation bytes broadcast) advances 16 rows by 4 inputs: every
// lane is a row, nothing is reduced across lanes, and a meta field of the 16 rows is one vector.
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
//   scale plane, then zero plane (each 64-byte aligned), a field of F bits per row and group:
//          F = 1, 2, 4, 8: ceil(G / P) units of 16 bytes, P = 8 / F fields per byte; byte r of
//                          unit v holds the field of row r, group P*v + u at bits [F*u, F*u + F).
//          F = 16:         G units of 32 bytes: the 16 rows' raw f16 values, row r at 2r.
//          F = 0:          nothing.
// Second-level tables, the parameters and the untiled rows stay in the original blob.
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
    uint64_t tile_bytes = 0;
    uint64_t nbytes = 0;  // ntiles * tile_bytes
};

// True when w can be tiled: at least one tile, and either a sign weight (1-bit codes; the
// vectors stay in the blob) or an rg weight with code bits 1/2/4/8, group 8, 16 or a multiple
// of 32, and each meta field raw f16, absent, or a 1/2/4/8-bit code whose table entry is the
// same for the 16 rows of every tile (rstride 0, rdiv >= n, or rdiv a multiple of 16).
bool tiled_supported(const WeightView& w);
TiledLayout tiled_layout(const WeightView& w);

// Writes the tiles of w into out (tiled_layout(w).nbytes bytes).
void tile_weight(const WeightView& w, uint8_t* out);

// Scalar readers of the tiled layout (tests): the code of (row, input) and a meta field of
// (row, group) (zero = false: scale plane), row < ntiles * 16.
uint32_t tiled_code(const WeightView& w, const uint8_t* tiles, uint64_t row, uint64_t i);
uint32_t tiled_field(const WeightView& w, const uint8_t* tiles, bool zero, uint64_t row, uint64_t group);

// meta groups per row: k / group (rg), 0 (sign)
uint64_t tiled_groups(const WeightView& w);

// Floats of scratch a CpuKernels::tiles call needs: per meta field and group, the table entry
// (2 floats) and 16 lookup values.
uint64_t tiled_scratch_floats(const WeightView& w);

// An owned tiled copy of a weight (on 2 MiB pages where allowed, see core/buffer.h).
using TiledWeight = Buffer;
// The tiled copy of w, or an empty one when w cannot be tiled.
TiledWeight make_tiled(const WeightView& w);

}  // namespace lb
