// types.h: the type-traits table. Every tensor element type of lowbit is one row of LB_TYPES;
// the enum, the names, the layout versions and the size rules all come from that one list.
//
// Quantized weights are matrices W[N][K] (N = rows = output features, K = cols = input features;
// dims[0] = K is the innermost dimension, as in ggml). Three geometries (see formats/blocktypes.md
// for the byte-by-byte layouts):
//   rg   groups of `group` consecutive inputs of one row; per group a scale field and a zero
//        field, each either raw fp16 or a small code decoded through a second-level fp16 table
//        (GreenBit asym / qstatistic, HQQ axis=1, GGUF Q4_0/Q4_1/Q8_0).
//   a0   HQQ axis=0: rows r and r + N/group share (scale, zero) at each input column.
//   sign OneBit: sign matrix S in {+1,-1} with an input vector g[K] and an output vector h[N]:
//        y = h * (S (g * x)).
// The geometry-specific numbers (bits, group, meta fields, second-level maps) live in QParams,
// which is stored with every tensor; a "preset" (q2_g8, q1_g8_a0, ...) is a named QParams.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lb {

// X(name, id, kind, layout_version, description)
// ids are stored in files: never reuse or renumber one.
#define LB_TYPES(X)                                                                      \
    X(f32, 0, Kind::plain, 1, "32-bit IEEE float")                                       \
    X(f16, 1, Kind::plain, 1, "16-bit IEEE float")                                       \
    X(bf16, 2, Kind::plain, 1, "bfloat16")                                               \
    X(q8a, 3, Kind::act, 1, "int8 activations, blocks of 32 with a float scale")         \
    X(i32, 4, Kind::ints, 1, "32-bit signed integer (token ids, positions)")             \
    X(rg, 16, Kind::quant, 1, "b-bit codes, groups along the input dim, two-level meta") \
    X(a0, 17, Kind::quant, 1, "b-bit codes, groups over strided rows (HQQ axis 0)")      \
    X(sign, 18, Kind::quant, 1, "1-bit sign matrix with input and output vectors (OneBit)")

enum class Kind : uint8_t { plain, ints, act, quant };  // plain: float element types

enum class Type : uint16_t {
#define LB_X(name, id, kind, ver, desc) name = id,
    LB_TYPES(LB_X)
#undef LB_X
};

struct TypeTraits {
    Type type;
    const char* name;
    Kind kind;
    uint32_t layout_version;
    const char* description;
};

// nullptr if `id` is not a type of this build
const TypeTraits* type_traits(uint32_t id);
const TypeTraits& traits(Type t);
const char* type_name(Type t);
// every row of the table, in order
const TypeTraits* all_types(size_t* count);

// ---------------------------------------------------------------------------------------------
// Quantization parameters of one tensor (stored in the .lbf tensor directory, 48 bytes, LE).

// How the zero field enters the weight:
//   code:  w = (q - z) * s      (GreenBit asym, HQQ: the zero is in code units)
//   value: w = q * s - z        (GreenBit qstatistic, GGUF Q4_1 with z = -m: a float offset)
enum class ZeroMode : uint8_t { code = 0, value = 1 };

// Second-level table lookup for a meta field given as a code: entry index for (row, col) is
//   idx = ((row / rdiv) * rstride + col * cstride) mod period      (no mod when period == 0)
// where (row, col) is (weight row, group index) for rg and (row class, input column) for a0.
// The table holds `count` (scale, zero) fp16 pairs; a code c decodes to
//   f16(f16(c - zero) * scale)    (the sources compute their second level in fp16, twice rounded).
struct MetaMap {
    uint32_t rdiv = 1, rstride = 0, cstride = 0, period = 0, count = 0;
    uint32_t index(uint64_t row, uint64_t col) const {
        uint64_t i = (row / rdiv) * rstride + col * cstride;
        return uint32_t(period ? i % period : i);
    }
};

struct QParams {
    uint8_t bits = 0;   // code bits: 1, 2, 3, 4, 8
    uint8_t sbits = 0;  // scale field per group: 0 none (scale 1), 4 or 8 code via smap, 16 raw fp16
    uint8_t zbits = 0;  // zero field per group: 0 none (zero 0), 1..8 code via zmap, 16 raw fp16
    ZeroMode zmode = ZeroMode::code;
    uint32_t group = 0;  // rg: inputs per group (divides K); a0: rows per group (divides N)
    MetaMap smap, zmap;
};
static_assert(sizeof(MetaMap) == 20 && sizeof(QParams) == 48, "QParams is stored in files");

bool operator==(const MetaMap& a, const MetaMap& b);
bool operator==(const QParams& a, const QParams& b);

// Byte layout of one tensor's data blob: planes, each starting 32-byte aligned.
//   codes:  N rows of `code_row_bytes` (codes of K inputs, padded to `kp` with zero codes)
//   scales: meta rows (N for rg, N/group for a0) of `scale_row_bytes`
//   zeros:  same with `zero_row_bytes`
//   stab, ztab: second-level tables, 4 bytes per entry (fp16 scale, fp16 zero)
//   gvec (f32 [K]) and hvec (f32 [N]): sign type only
struct Layout {
    uint64_t kp = 0;  // K rounded up to the code chunk
    uint64_t code_row_bytes = 0, scale_row_bytes = 0, zero_row_bytes = 0, meta_rows = 0;
    uint64_t off_codes = 0, off_scales = 0, off_zeros = 0, off_stab = 0, off_ztab = 0;
    uint64_t off_gvec = 0, off_hvec = 0;
    uint64_t nbytes = 0;  // total
};

// Inputs per code chunk for b-bit codes (the unit of the packed row layout, see blocktypes.md).
uint32_t code_chunk(uint32_t bits);
// Bytes per code chunk.
uint32_t code_chunk_bytes(uint32_t bits);

// Validates (type, params, N, K). Throws lb::Error naming the bad field otherwise.
void validate(Type t, const QParams& p, uint64_t n, uint64_t k);
// Byte layout (validates first).
Layout layout(Type t, const QParams& p, uint64_t n, uint64_t k);
// Bytes for an N x K tensor of this type (plain and quant types).
uint64_t tensor_nbytes(Type t, const QParams& p, uint64_t n, uint64_t k);
// Bits per stored weight, everything included.
double bits_per_weight(Type t, const QParams& p, uint64_t n, uint64_t k);

// ---------------------------------------------------------------------------------------------
// Presets: named parameter sets for the layouts the sources produce; used by the bench tool,
// the tests and the converters. `n` and `k` are needed because some maps depend on the shape.
struct Preset {
    const char* name;
    Type type;
    const char* source;  // which source layout this reproduces
    // the source rounds its second-level zero points to integers (GreenBit, GPTQ-style): the
    // synthetic weights of the benchmarks do the same (random_weight)
    bool int_zeros = false;
};
const Preset* all_presets(size_t* count);
const Preset* find_preset(const std::string& name);
// Parameters of a preset for an N x K matrix (throws if the shape does not fit the preset).
QParams preset_params(const Preset& p, uint64_t n, uint64_t k);

std::string describe(Type t, const QParams& p);

}  // namespace lb
