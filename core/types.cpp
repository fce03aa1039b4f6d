// types.cpp: the type-traits table, parameter validation, byte layouts and presets.
#include "core/types.h"

#include <cstring>

#include "core/error.h"
#include "core/quant.h"

namespace lb {

static const TypeTraits kTypes[] = {
#define LB_X(name, id, kind, ver, desc) {Type::name, #name, kind, ver, desc},
    LB_TYPES(LB_X)
#undef LB_X
};

const TypeTraits* all_types(size_t* count) {
    *count = sizeof kTypes / sizeof kTypes[0];
    return kTypes;
}

const TypeTraits* type_traits(uint32_t id) {
    for (const auto& t : kTypes)
        if (uint32_t(t.type) == id) return &t;
    return nullptr;
}

const TypeTraits& traits(Type t) {
    const TypeTraits* r = type_traits(uint32_t(t));
    LB_CHECK(r, "type id %u is not a type of this build", unsigned(t));
    return *r;
}

const char* type_name(Type t) {
    const TypeTraits* r = type_traits(uint32_t(t));
    return r ? r->name : "?";
}

bool operator==(const MetaMap& a, const MetaMap& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool operator==(const QParams& a, const QParams& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

uint32_t code_chunk(uint32_t bits) {
    switch (bits) {
        case 1:
            return 32;
        case 2:
            return 128;
        case 3:
            return 128;
        case 4:
            return 64;
        case 8:
            return 32;
    }
    throw Error(strfmt("code bits %u not supported (1, 2, 3, 4, 8)", bits));
}

uint32_t code_chunk_bytes(uint32_t bits) { return bits == 1 ? 4 : bits == 3 ? 48 : 32; }

static constexpr uint64_t kMaxDim = uint64_t(1) << 28;
static constexpr uint64_t kMaxElems = uint64_t(1) << 40;

static uint64_t align32(uint64_t x) { return (x + 31) & ~uint64_t(31); }

// checks one meta field (sbits or zbits) and its map over `rows` x `cols` lookups
static void validate_field(const char* what, uint32_t fbits, const MetaMap& m, uint64_t rows, uint64_t cols,
                           bool allow_small_codes) {
    const bool ok_bits =
        fbits == 0 || fbits == 16 || fbits == 4 || fbits == 8 || (allow_small_codes && fbits >= 1 && fbits <= 8);
    LB_CHECK(ok_bits, "%s field bits %u not supported (0, 4, 8 or 16%s)", what, fbits,
             allow_small_codes ? ", or 1..8 for zero codes" : "");
    if (fbits == 0 || fbits == 16) return;
    LB_CHECK(m.count >= 1 && m.count <= (uint32_t(1) << 30), "%s table count %u out of range", what, m.count);
    LB_CHECK(m.rdiv >= 1, "%s map rdiv is 0", what);
    uint64_t max_idx;
    if (m.period) {
        max_idx = m.period - 1;
    } else {
        max_idx = ((rows - 1) / m.rdiv) * uint64_t(m.rstride) + (cols - 1) * uint64_t(m.cstride);
    }
    LB_CHECK(max_idx < m.count, "%s map reaches table entry %llu but the table has %u entries", what,
             (unsigned long long)max_idx, m.count);
}

void validate(Type t, const QParams& p, uint64_t n, uint64_t k) {
    const TypeTraits* tr = type_traits(uint32_t(t));
    LB_CHECK(tr, "type id %u is not a type of this build", unsigned(t));
    LB_CHECK(n >= 1 && k >= 1 && n <= kMaxDim && k <= kMaxDim && n * k <= kMaxElems,
             "tensor shape %llu x %llu out of range (each dim 1..2^28, at most 2^40 elements)", (unsigned long long)n,
             (unsigned long long)k);
    if (tr->kind != Kind::quant) {
        LB_CHECK(p == QParams{}, "type %s takes no quantization parameters", tr->name);
        return;
    }
    LB_CHECK(p.bits == 1 || p.bits == 2 || p.bits == 3 || p.bits == 4 || p.bits == 8,
             "%s: code bits %u not supported (1, 2, 3, 4, 8)", tr->name, p.bits);
    LB_CHECK(p.zmode == ZeroMode::code || p.zmode == ZeroMode::value, "%s: zero mode %u unknown", tr->name,
             unsigned(p.zmode));
    switch (t) {
        case Type::rg: {
            const uint32_t g = p.group;
            LB_CHECK(g == 8 || g == 16 || (g >= 32 && g % 32 == 0 && g <= 4096),
                     "rg: group %u not supported (8, 16 or a multiple of 32 up to 4096)", g);
            LB_CHECK(k % g == 0, "rg: group %u does not divide the row length %llu", g, (unsigned long long)k);
            validate_field("rg scale", p.sbits, p.smap, n, k / g, false);
            validate_field("rg zero", p.zbits, p.zmap, n, k / g, true);
            break;
        }
        case Type::a0: {
            const uint32_t g = p.group;
            LB_CHECK(g >= 1 && g <= 1024 && n % g == 0, "a0: group %u must divide the row count %llu (1..1024)", g,
                     (unsigned long long)n);
            validate_field("a0 scale", p.sbits, p.smap, n / g, k, false);
            validate_field("a0 zero", p.zbits, p.zmap, n / g, k, true);
            break;
        }
        case Type::sign:
            LB_CHECK(p.bits == 1 && p.sbits == 0 && p.zbits == 0 && p.group == 0,
                     "sign: parameters must be bits=1 and nothing else");
            break;
        default:
            break;
    }
}

Layout layout(Type t, const QParams& p, uint64_t n, uint64_t k) {
    validate(t, p, n, k);
    Layout L;
    const TypeTraits& tr = traits(t);
    if (tr.kind == Kind::plain || tr.kind == Kind::ints) {
        const uint64_t es = t == Type::f16 || t == Type::bf16 ? 2 : 4;
        L.kp = k;
        L.code_row_bytes = k * es;
        L.nbytes = n * k * es;
        return L;
    }
    if (tr.kind == Kind::act) {
        // per row: kp int8, kp/32 float scales, kp/8 float sums (see quant.h QAct)
        L.kp = act_kp(k);
        L.code_row_bytes = act_row_bytes(k);
        L.nbytes = n * L.code_row_bytes;
        return L;
    }
    const uint64_t chunk = code_chunk(p.bits);
    L.kp = (k + chunk - 1) / chunk * chunk;
    L.code_row_bytes = L.kp / chunk * code_chunk_bytes(p.bits);
    uint64_t off = align32(n * L.code_row_bytes);
    if (t == Type::sign) {
        L.off_gvec = off;
        off = align32(off + 4 * k);
        L.off_hvec = off;
        L.nbytes = off + 4 * n;
        return L;
    }
    const uint64_t cols = t == Type::rg ? k / p.group : k;
    L.meta_rows = t == Type::rg ? n : n / p.group;
    L.scale_row_bytes = (cols * p.sbits + 7) / 8;
    L.zero_row_bytes = (cols * p.zbits + 7) / 8;
    L.off_scales = off;
    off = align32(off + L.meta_rows * L.scale_row_bytes);
    L.off_zeros = off;
    off = align32(off + L.meta_rows * L.zero_row_bytes);
    L.off_stab = off;
    const bool stab = p.sbits && p.sbits <= 8, ztab = p.zbits && p.zbits <= 8;
    off = align32(off + (stab ? 4ull * p.smap.count : 0));
    L.off_ztab = off;
    off += ztab ? 4ull * p.zmap.count : 0;
    L.nbytes = off;
    return L;
}

uint64_t tensor_nbytes(Type t, const QParams& p, uint64_t n, uint64_t k) { return layout(t, p, n, k).nbytes; }

double bits_per_weight(Type t, const QParams& p, uint64_t n, uint64_t k) {
    return 8.0 * double(tensor_nbytes(t, p, n, k)) / (double(n) * double(k));
}

// ---------------------------------------------------------------------------------------------
// presets

static const Preset kPresets[] = {
    {"q2_g8", Type::rg, "GreenBit qstatistic 2-bit g8 (4-bit meta codes, fp16 second level per 32 rows)", true},
    {"q2_g16", Type::rg, "GreenBit qstatistic 2-bit g16 (second level per 64 rows)", true},
    {"q2_g32", Type::rg, "GreenBit asym 2-bit g32 (8-bit scale codes, 2-bit zero codes, second level per group)", true},
    {"q2_g32_v1", Type::rg, "GreenBit asym v1 2-bit g32 (second level per output row)", true},
    {"q2_g32_qs", Type::rg, "GreenBit qstatistic 2-bit g32 (TinyLLaMA)", true},
    {"q4_g32", Type::rg, "GreenBit asym 4-bit g32 (second level per 64 rows)", true},
    {"q4_g32_f16", Type::rg, "fp16 scale and offset per 32 (GGUF Q4_1)"},
    {"q4_g32_z8", Type::rg, "fp16 scale per 32, zero 8 (GGUF Q4_0)"},
    {"q8_g32_f16", Type::rg, "fp16 scale and offset per 32"},
    {"q8_g32_z128", Type::rg, "fp16 scale per 32, zero 128 (GGUF Q8_0, codes = int8 + 128)"},
    {"q1_g8_hqq", Type::rg, "HQQ 1-bit g8 axis 1, fp16 scale and zero"},
    {"q2_g16_hqq", Type::rg, "HQQ 2-bit g16 axis 1, fp16 scale and zero"},
    {"q3_g64_hqq", Type::rg, "HQQ 3-bit g64 axis 1, fp16 scale and zero"},
    {"q4_g64_hqq", Type::rg, "HQQ 4-bit g64 axis 1, fp16 scale and zero"},
    {"q4_g64_hqqm", Type::rg, "HQQ 4-bit g64 axis 1, 8-bit scale and zero codes, group-128 second level"},
    {"q1_g8_a0", Type::a0, "HQQ+ 1-bit g8 axis 0, 8-bit meta codes, group-128 second level (the published model)"},
    {"q2_g16_a0", Type::a0, "HQQ 2-bit g16 axis 0, fp16 scale and zero"},
    {"q4_g64_a0", Type::a0, "HQQ 4-bit g64 axis 0, fp16 scale and zero"},
    {"b1_sign", Type::sign, "OneBit sign matrix with fp32 input and output vectors"},
};

const Preset* all_presets(size_t* count) {
    *count = sizeof kPresets / sizeof kPresets[0];
    return kPresets;
}

const Preset* find_preset(const std::string& name) {
    for (const auto& p : kPresets)
        if (name == p.name) return &p;
    return nullptr;
}

static MetaMap map_blocks(uint64_t n, uint64_t cols, uint32_t rows_per_entry) {
    MetaMap m;
    m.rdiv = rows_per_entry;
    m.rstride = uint32_t(cols);
    m.cstride = 1;
    m.count = uint32_t((n + rows_per_entry - 1) / rows_per_entry * cols);
    return m;
}

static MetaMap map_const() {
    MetaMap m;
    m.count = 1;
    return m;
}

// HQQ 8-bit meta quantization with group 128 over the flattened meta vector of length m:
// element c belongs to second-level entry c mod (m/128).
static MetaMap map_hqq128(uint64_t cols_per_row, uint64_t m_total) {
    LB_CHECK(m_total % 128 == 0, "HQQ group-128 meta needs a meta count divisible by 128, got %llu",
             (unsigned long long)m_total);
    MetaMap m;
    m.rdiv = 1;
    m.rstride = uint32_t(cols_per_row);
    m.cstride = 1;
    m.period = uint32_t(m_total / 128);
    m.count = m.period;
    return m;
}

QParams preset_params(const Preset& pr, uint64_t n, uint64_t k) {
    const std::string name = pr.name;
    QParams p;
    auto rg = [&](uint8_t bits, uint32_t g, uint8_t sb, uint8_t zb, ZeroMode zm) {
        LB_CHECK(k % g == 0, "preset %s needs K divisible by %u, got %llu", pr.name, g, (unsigned long long)k);
        p.bits = bits;
        p.group = g;
        p.sbits = sb;
        p.zbits = zb;
        p.zmode = zm;
    };
    if (name == "q2_g8" || name == "q2_g16" || name == "q2_g32_qs") {
        const uint32_t g = name == "q2_g8" ? 8 : name == "q2_g16" ? 16 : 32;
        const uint32_t dgs = name == "q2_g16" ? 64 : 32;
        rg(2, g, 4, 4, ZeroMode::value);
        p.smap = p.zmap = map_blocks(n, k / g, dgs);
    } else if (name == "q2_g32" || name == "q2_g32_v1") {
        rg(2, 32, 8, 2, ZeroMode::code);
        if (name == "q2_g32") {
            p.smap.rdiv = uint32_t(n);
            p.smap.cstride = 1;
            p.smap.count = uint32_t(k / 32);
        } else {
            p.smap.rdiv = 1;
            p.smap.rstride = 1;
            p.smap.count = uint32_t(n);
        }
        p.zmap = map_const();
    } else if (name == "q4_g32") {
        rg(4, 32, 8, 4, ZeroMode::code);
        p.smap = map_blocks(n, k / 32, 64);
        p.zmap = map_const();
    } else if (name == "q4_g32_f16") {
        rg(4, 32, 16, 16, ZeroMode::value);
    } else if (name == "q8_g32_f16") {
        rg(8, 32, 16, 16, ZeroMode::value);
    } else if (name == "q4_g32_z8" || name == "q8_g32_z128") {
        // one constant zero for the tensor: a 1-bit zero code through a one-entry table
        rg(name == "q4_g32_z8" ? 4 : 8, 32, 16, 1, ZeroMode::code);
        p.zmap = map_const();
    } else if (name == "q1_g8_hqq") {
        rg(1, 8, 16, 16, ZeroMode::code);
    } else if (name == "q2_g16_hqq") {
        rg(2, 16, 16, 16, ZeroMode::code);
    } else if (name == "q3_g64_hqq") {
        rg(3, 64, 16, 16, ZeroMode::code);
    } else if (name == "q4_g64_hqq") {
        rg(4, 64, 16, 16, ZeroMode::code);
    } else if (name == "q4_g64_hqqm") {
        rg(4, 64, 8, 8, ZeroMode::code);
        p.smap = p.zmap = map_hqq128(k / 64, n * k / 64);
    } else if (name == "q1_g8_a0" || name == "q2_g16_a0" || name == "q4_g64_a0") {
        const uint32_t g = name == "q1_g8_a0" ? 8 : name == "q2_g16_a0" ? 16 : 64;
        LB_CHECK(n % g == 0, "preset %s needs N divisible by %u, got %llu", pr.name, g, (unsigned long long)n);
        p.bits = uint8_t(name == "q1_g8_a0" ? 1 : name == "q2_g16_a0" ? 2 : 4);
        p.group = g;
        p.zmode = ZeroMode::code;
        if (name == "q1_g8_a0") {
            p.sbits = p.zbits = 8;
            p.smap = p.zmap = map_hqq128(k, n * k / g);
        } else {
            p.sbits = p.zbits = 16;
        }
    } else if (name == "b1_sign") {
        p.bits = 1;
    } else {
        throw Error(strfmt("preset %s has no parameter rule", pr.name));
    }
    validate(pr.type, p, n, k);
    return p;
}

std::string describe(Type t, const QParams& p) {
    const TypeTraits& tr = traits(t);
    if (tr.kind != Kind::quant) return tr.name;
    if (t == Type::sign) return "sign(1-bit, f32 g/h vectors)";
    auto field = [](uint32_t b) -> std::string {
        if (b == 0) return "none";
        if (b == 16) return "f16";
        return "u" + std::to_string(b) + "+tab";
    };
    return strfmt("%s(q%u, group %u, scale %s, zero %s, %s)", tr.name, p.bits, p.group, field(p.sbits).c_str(),
                  field(p.zbits).c_str(), p.zmode == ZeroMode::code ? "w=(q-z)s" : "w=qs-z");
}

}  // namespace lb
