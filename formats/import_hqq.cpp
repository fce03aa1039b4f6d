// import_hqq.cpp: HQQ-quantized linears (formats/hqq.md) -> lowbit tensors, with no loss.
//
// The three layouts are first normalized into an HqqLayer (hf_common.h): the packed codes W_q, the
// layer shape, bits, group, axis, and the zero/scale fields (plain compute-dtype values, or uint8
// codes with an 8-bit sub-meta "meta quantization", possibly stacked in `zero_scale`).
//
// Then (hqq.md 2.1-2.3): with M = N*K/g, flat index f = o*K + i of weight (o, i),
//   axis 1: group G = f / g, position t = f % g: packed row G mod P, field G / P, column t
//   axis 0: grouped row r = f / M, column c = f % M: packed row r mod P, field r / P, column c
// where P = R/e packed rows (R = M rows for axis 1, g for axis 0; e codes per word; 3-bit: 10 per
// int32, R padded to a multiple of 10), field k of a byte at bits 8 - b(k+1) (3-bit: 27 - 3k), and
//   W[o][i] = (q - zero[m]) * scale[m]       (m = G for axis 1, c for axis 0)
// which maps onto
//   rg  (axis 1, g divides K): row o, group i / g; meta field m = o * (K/g) + i/g
//   a0  (axis 0, g divides N): row class o mod (N/g); meta field m = (o mod N/g) * K + i
// Zero and scale are raw f16 fields (16 bits) or 8-bit codes through a table of the sub-meta's
// (scale, zero) pairs (one pair, or entry m mod (M/128) for the group-128 meta: hqq.md 3.2), which
// decodes f16(f16(c - z) * s) exactly as hqq does. lowbit then forms (q - z) * s in f32; hqq rounds
// q - z and the product to fp16: lowbit is within 1 fp16 ulp of it.
// Other shapes (groups that span rows, or that lowbit's types do not take) and non-f16 compute
// dtypes whose meta does not fit f16 exactly keep the source's exact dequantization, dense, in the
// compute dtype.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "formats/hf_common.h"
#include "formats/pickle.h"

namespace lb {

namespace {

// packing name -> (storage bits of one code, codes per word, word bytes)
struct Packing {
    int bits, per_word, word_bytes;
};
Packing packing_of(const std::string& packing, const std::string& where) {
    if (packing == "8bit_u8" || packing.empty()) return {8, 1, 1};
    if (packing == "4bit_u8") return {4, 2, 1};
    if (packing == "2bit_u8") return {2, 4, 1};
    if (packing == "1bit_u8") return {1, 8, 1};
    if (packing == "3bit_32") return {3, 10, 4};
    throw Error(strfmt("%s: packing '%s' is not supported (1bit_u8, 2bit_u8, 3bit_32, 4bit_u8, 8bit_u8)", where.c_str(),
                       packing.c_str()));
}

DType dtype_from_name(const std::string& s, const std::string& where) {
    if (s == "torch.float16" || s == "float16") return DType::f16;
    if (s == "torch.bfloat16" || s == "bfloat16") return DType::bf16;
    if (s == "torch.float32" || s == "float32") return DType::f32;
    throw Error(
        strfmt("%s: compute dtype '%s' is not supported (float16, bfloat16, float32)", where.c_str(), s.c_str()));
}

// the compute dtype's rounding (PyTorch half/bfloat16 ops compute in f32 and round per op)
float round_to(DType d, float v) {
    if (d == DType::f16) return round_f16(v);
    if (d == DType::bf16) return bf16_to_f32(f32_to_bf16(v));
    return v;
}

SourceTensor slice(const SourceTensor& t, uint64_t index, uint64_t count) {
    SourceTensor s = t;
    s.shape = {int64_t(count)};
    s.data = t.data + index * count * dtype_size(t.dtype);
    s.nbytes = count * dtype_size(t.dtype);
    return s;
}

// bits from a python nbits value (int, or 1.58 for ternary)
int bits_of(double nbits, const std::string& where) {
    if (nbits > 1.5 && nbits < 1.6) return 2;  // 1.58-bit: codes 0..2 in 2bit_u8
    const int b = int(nbits);
    LB_CHECK(double(b) == nbits && b >= 1 && b <= 8 && b != 7, "%s: nbits %g is not supported (1, 1.58, 2..6, 8)",
             where.c_str(), nbits);
    return b;
}

void finish(HqqLayer& l, double nbits, const std::string& packing, bool have_group, int64_t group,
            const std::string& where) {
    const Packing pk = packing_of(packing, where);
    const int want = bits_of(nbits, where);
    LB_CHECK(want <= pk.bits, "%s: nbits %g does not fit packing '%s'", where.c_str(), nbits, packing.c_str());
    l.bits = pk.bits;
    l.pack_fields = pk.per_word;
    LB_CHECK(l.n > 0 && l.k > 0 && l.n <= (int64_t(1) << 28) && l.k <= (int64_t(1) << 28),
             "%s: shape [%lld, %lld] out of range", where.c_str(), (long long)l.n, (long long)l.k);
    LB_CHECK(l.axis == 0 || l.axis == 1, "%s: axis %d, expected 0 or 1", where.c_str(), l.axis);
    l.group = have_group ? group : (l.axis == 1 ? l.k : l.n);
    LB_CHECK(l.group >= 1 && (l.n * l.k) % l.group == 0, "%s: group size %lld does not divide N*K = %lld",
             where.c_str(), (long long)l.group, (long long)(l.n * l.k));
}

// a (sub-)meta dict of a quantized zero/scale: codes + (scale, zero) table
void sub_meta(HqqMetaField& f, const PyObj& sub, const std::string& where) {
    f.quantized = true;
    const PyObj* nb = sub.get("nbits");
    LB_CHECK(!nb || nb->as_number() == 8, "%s: meta quantization with %g bits is not supported (8)", where.c_str(),
             nb ? nb->as_number() : 0.0);
    const PyObj* pk = sub.get("packing");
    LB_CHECK(!pk || pk->is_none() || pk->as_str() == "8bit_u8", "%s: meta packing '%s' is not supported (8bit_u8)",
             where.c_str(), pk && !pk->is_none() ? pk->as_str().c_str() : "");
    const PyObj* gs = sub.get("group_size");
    f.tgroup = gs && !gs->is_none() ? gs->as_int() : 0;
    const PyObj* ax = sub.get("axis");
    LB_CHECK(f.tgroup == 0 || !ax || ax->as_int() == 0, "%s: meta quantization along axis %lld is not supported (0)",
             where.c_str(), (long long)(ax ? ax->as_int() : 0));
    f.tscale = sub.at("scale").as_source();
    f.tzero = sub.at("zero").as_source();
}

std::string torch_str(const SourceTensor& t) {  // an encoded string (uint8 character codes)
    std::string s;
    for (uint64_t i = 0; i < t.numel(); ++i) s += char(read_int(t, i));
    return s;
}

}  // namespace

HqqLayer hqq_layer_from_pickle(const PyObj& e, const std::string& name) {
    HqqLayer l;
    l.name = name;
    const std::string where = "HQQ layer '" + name + "'";
    try {
        const PyObj* metap = e.get("meta");
        const bool nested = metap && !metap->is_none();
        const PyObj& m = nested ? *metap : e;
        l.layout = nested ? "hqq 0.1.x nested meta" : "hqq 0.2.x flat";
        l.wq = e.at("W_q").as_source();
        const auto& shape = m.at("shape").items();
        LB_CHECK(shape.size() == 2, "%s: shape has %zu dims, expected 2", where.c_str(), shape.size());
        l.n = shape[0]->as_int();
        l.k = shape[1]->as_int();
        l.axis = int(m.at("axis").as_int());
        const PyObj* cd = m.get("compute_dtype");
        if (cd && !cd->is_none()) l.compute = dtype_from_name(cd->global_name(), where);
        const PyObj& pk = m.at("packing");
        const PyObj& gs = m.at("group_size");
        finish(l, m.at("nbits").as_number(), pk.is_none() ? "" : pk.as_str(), !gs.is_none(),
               gs.is_none() ? 0 : gs.as_int(), where);
        auto flag = [&](const char* key) {
            const PyObj* v = m.get(key);
            return v && !v->is_none() && v->as_bool();
        };
        if (const PyObj* zs = m.get("zero_scale")) {  // offloaded meta: stack(zero, scale)
            const SourceTensor& t = zs->as_source();
            LB_CHECK(!t.shape.empty() && t.shape[0] == 2, "%s: zero_scale shape %s, expected [2, ...]", where.c_str(),
                     shape_str(t.shape).c_str());
            const uint64_t per = t.numel() / 2;
            if (t.dtype == DType::u8) {
                l.zero.codes = slice(t, 0, per);
                l.scale.codes = slice(t, 1, per);
                sub_meta(l.zero, m.at("meta_zero"), where + " meta_zero");
                sub_meta(l.scale, m.at("meta_scale"), where + " meta_scale");
            } else {
                l.zero.values = slice(t, 0, per);
                l.scale.values = slice(t, 1, per);
            }
        } else {
            auto field = [&](HqqMetaField& f, const char* plain, const char* q, const char* sub, bool quant) {
                if (quant || m.get(q)) {
                    f.codes = m.at(q).as_source();
                    sub_meta(f, m.at(sub), where + " " + sub);
                } else {
                    f.values = m.at(plain).as_source();
                }
            };
            field(l.zero, "zero", "zero_q", "meta_zero", flag("quant_zero"));
            field(l.scale, "scale", "scale_q", "meta_scale", flag("quant_scale"));
        }
        const PyObj* b = e.get("bias");
        if (b && !b->is_none()) l.bias = &b->as_source();
    } catch (const Error& err) {
        const std::string msg = err.what();
        if (msg.rfind(where, 0) == 0) throw;
        throw Error(where + ": " + msg);
    }
    return l;
}

HqqLayer hqq_layer_from_safetensors(const TensorLookup& find, const std::string& prefix) {
    HqqLayer l;
    l.name = prefix;
    l.layout = "transformers HqqConfig safetensors";
    const std::string where = "HQQ layer '" + prefix + "'";
    auto need = [&](const char* sfx) -> const SourceTensor& {
        const SourceTensor* t = find(prefix + sfx);
        LB_CHECK(t, "tensor '%s%s' not found (HQQ safetensors layout)", prefix.c_str(), sfx);
        return *t;
    };
    auto scalar = [&](const char* sfx) {
        const SourceTensor& t = need(sfx);
        LB_CHECK(t.numel() == 1, "tensor '%s%s': %llu elements, expected a scalar", prefix.c_str(), sfx,
                 (unsigned long long)t.numel());
        return t;
    };
    l.wq = need(".W_q");
    const SourceTensor& shape = need(".shape");
    expect_tensor(shape, prefix + ".shape", {DType::i64, DType::i32}, {2});
    l.n = read_int(shape, 0);
    l.k = read_int(shape, 1);
    l.axis = int(read_int(scalar(".axis"), 0));
    if (const SourceTensor* cd = find(prefix + ".compute_dtype")) l.compute = dtype_from_name(torch_str(*cd), where);
    const SourceTensor& nb = scalar(".nbits");
    const double nbits = is_float_dtype(nb.dtype) ? double(read_float(nb, 0)) : double(read_int(nb, 0));
    const SourceTensor* gs = find(prefix + ".group_size");
    const bool have_group = gs && gs->numel() == 1;
    finish(l, nbits, torch_str(need(".packing")), have_group, have_group ? read_int(*gs, 0) : 0, where);
    for (const char* q : {".quant_zero", ".quant_scale"})
        if (const SourceTensor* t = find(prefix + q))
            LB_CHECK(t->numel() != 1 || read_int(*t, 0) == 0,
                     "%s: quantized meta in the safetensors layout is not supported", where.c_str());
    l.zero.values = need(".zero");
    l.scale.values = need(".scale");
    l.bias = find(prefix + ".bias");
    return l;
}

// ---- checks shared by both paths ------------------------------------------------------------------
namespace {

struct Geometry {
    uint64_t m;      // meta entries N*K/g
    uint64_t rows;   // grouped rows R (axis 1: M, axis 0: g)
    uint64_t cols;   // grouped columns (axis 1: g, axis 0: M)
    uint64_t prows;  // packed rows
};

Geometry check_layer(const HqqLayer& l) {
    const std::string where = "HQQ layer '" + l.name + "'";
    Geometry g;
    g.m = uint64_t(l.n) * uint64_t(l.k) / uint64_t(l.group);
    g.rows = l.axis == 1 ? g.m : uint64_t(l.group);
    g.cols = l.axis == 1 ? uint64_t(l.group) : g.m;
    const uint64_t e = uint64_t(l.pack_fields);
    LB_CHECK(l.bits == 3 || g.rows % e == 0, "%s: %llu grouped rows are not a multiple of %llu codes per byte",
             where.c_str(), (unsigned long long)g.rows, (unsigned long long)e);
    g.prows = (g.rows + e - 1) / e;
    const uint64_t wb = l.bits == 3 ? 4 : 1;
    LB_CHECK(l.wq.nbytes == g.prows * g.cols * wb && l.wq.data,
             "%s: W_q has %llu bytes (%s %s), the shape [%lld, %lld] with group %lld, axis %d and %d-bit packing needs "
             "%llu",
             where.c_str(), (unsigned long long)l.wq.nbytes, dtype_name(l.wq.dtype), shape_str(l.wq.shape).c_str(),
             (long long)l.n, (long long)l.k, (long long)l.group, l.axis, l.bits,
             (unsigned long long)(g.prows * g.cols * wb));
    auto field = [&](const HqqMetaField& f, const char* what) {
        if (!f.quantized) {
            expect_tensor(f.values, l.name + "." + what, {DType::f16, DType::bf16, DType::f32});
            LB_CHECK(f.values.numel() == g.m, "%s: %s has %llu values, expected N*K/group = %llu", where.c_str(), what,
                     (unsigned long long)f.values.numel(), (unsigned long long)g.m);
            return;
        }
        expect_tensor(f.codes, l.name + "." + what + "_q", {DType::u8});
        LB_CHECK(f.codes.numel() == g.m, "%s: %s codes: %llu, expected N*K/group = %llu", where.c_str(), what,
                 (unsigned long long)f.codes.numel(), (unsigned long long)g.m);
        const uint64_t count = f.tgroup ? g.m / uint64_t(f.tgroup) : 1;
        LB_CHECK(f.tgroup >= 0 && (f.tgroup == 0 || g.m % uint64_t(f.tgroup) == 0),
                 "%s: %s meta group %lld does not divide %llu", where.c_str(), what, (long long)f.tgroup,
                 (unsigned long long)g.m);
        for (const SourceTensor* t : {&f.tscale, &f.tzero}) {
            expect_tensor(*t, l.name + "." + what + " meta", {DType::f16, DType::bf16, DType::f32});
            LB_CHECK(t->numel() == count, "%s: %s meta has %llu values, expected %llu", where.c_str(), what,
                     (unsigned long long)t->numel(), (unsigned long long)count);
        }
    };
    field(l.zero, "zero");
    field(l.scale, "scale");
    if (l.bias) expect_tensor(*l.bias, l.name + ".bias", {DType::f16, DType::bf16, DType::f32}, {l.n});
    return g;
}

// code of weight (o, i), generic formula
struct CodeReader {
    const HqqLayer& l;
    Geometry g;
    uint32_t operator()(uint64_t o, uint64_t i) const {
        const uint64_t f = o * uint64_t(l.k) + i;
        uint64_t row, col;
        if (l.axis == 1) {
            row = f / uint64_t(l.group);
            col = f % uint64_t(l.group);
        } else {
            row = f / g.m;
            col = f % g.m;
        }
        return at(row, col);
    }
    // grouped (row, col) -> code
    uint32_t at(uint64_t row, uint64_t col) const {
        const uint64_t pr = row % g.prows, field = row / g.prows, idx = pr * g.cols + col;
        if (l.bits == 3) {
            uint32_t w;
            std::memcpy(&w, l.wq.data + 4 * idx, 4);
            return (w >> (27 - 3 * field)) & 7u;
        }
        return (uint32_t(l.wq.data[idx]) >> (8 - l.bits * int(field + 1))) & ((1u << l.bits) - 1);
    }
};

// meta entry m as the source computes it (compute dtype, two roundings for quantized meta)
float meta_value(const HqqLayer& l, const HqqMetaField& f, uint64_t m) {
    if (!f.quantized) return read_float(f.values, m);
    const uint64_t e = f.tgroup ? m % f.tscale.numel() : 0;
    const float c = float(f.codes.data[m]);
    return round_to(l.compute, round_to(l.compute, c - read_float(f.tzero, e)) * read_float(f.tscale, e));
}

}  // namespace

std::vector<float> hqq_dequant(const HqqLayer& l) {
    const Geometry g = check_layer(l);
    const CodeReader code{l, g};
    std::vector<float> w(size_t(l.n * l.k));
    for (int64_t o = 0; o < l.n; ++o)
        for (int64_t i = 0; i < l.k; ++i) {
            const uint64_t f = uint64_t(o * l.k + i);
            const uint64_t m = l.axis == 1 ? f / uint64_t(l.group) : f % g.m;
            const float q = float(code(uint64_t(o), uint64_t(i)));
            const float t = round_to(l.compute, q - meta_value(l, l.zero, m));
            w[size_t(f)] = round_to(l.compute, t * meta_value(l, l.scale, m));
        }
    return w;
}

ImportedTensor hqq_linear(const HqqLayer& l, const std::string& lb_name) {
    const Geometry g = check_layer(l);
    ImportedTensor r;
    r.src_bytes = l.wq.nbytes;
    for (const HqqMetaField* f : {&l.zero, &l.scale})
        r.src_bytes += f->quantized ? f->codes.nbytes + f->tscale.nbytes + f->tzero.nbytes : f->values.nbytes;
    const std::string bits = l.bits == 2 && l.pack_fields == 4 ? "2" : std::to_string(l.bits);
    r.src_desc = l.layout + ", " + bits + "-bit g" + std::to_string(l.group) + " axis " + std::to_string(l.axis) +
                 (l.zero.quantized || l.scale.quantized ? ", 8-bit meta" : "");

    // Which lowbit geometry holds it exactly?
    const uint64_t G = uint64_t(l.group);
    const bool rg_ok = l.axis == 1 && uint64_t(l.k) % G == 0 && (G == 8 || G == 16 || (G % 32 == 0 && G <= 4096));
    const bool a0_ok = l.axis == 0 && uint64_t(l.n) % G == 0 && G <= 1024;
    bool exact_meta = true;  // every meta value (plain) fits f16 exactly; quantized meta needs f16 compute
    for (const HqqMetaField* f : {&l.zero, &l.scale}) {
        if (f->quantized) {
            exact_meta =
                exact_meta && l.compute == DType::f16 && f->tscale.dtype == DType::f16 && f->tzero.dtype == DType::f16;
        } else if (f->values.dtype != DType::f16) {
            for (uint64_t m = 0; m < g.m && exact_meta; ++m) {
                const float v = read_float(f->values, m);
                exact_meta = round_f16(v) == v || std::isnan(v);
            }
        }
    }
    const uint64_t n = uint64_t(l.n), k = uint64_t(l.k);
    if (!(rg_ok || a0_ok) || !exact_meta) {  // dense, the source's own dequantization
        const std::vector<float> w = hqq_dequant(l);
        r.t.name = lb_name;
        r.t.dims = {k, n};
        r.t.type = l.compute == DType::f16 ? Type::f16 : l.compute == DType::bf16 ? Type::bf16 : Type::f32;
        const size_t es = r.t.type == Type::f32 ? 4 : 2;
        r.t.data.resize(w.size() * es);
        for (size_t i = 0; i < w.size(); ++i) {
            if (r.t.type == Type::f32) {
                std::memcpy(r.t.data.data() + 4 * i, &w[i], 4);
            } else {
                const uint16_t h = r.t.type == Type::f16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
                std::memcpy(r.t.data.data() + 2 * i, &h, 2);
            }
        }
        r.src_desc += ", dense " + std::string(type_name(r.t.type)) + " (" +
                      (!exact_meta ? "meta not exact in f16" : "groups do not fit a lowbit block type") + ")";
        return r;
    }

    QParams p;
    p.bits = uint8_t(l.bits);
    p.group = uint32_t(G);
    p.zmode = ZeroMode::code;
    const uint64_t meta_cols = rg_ok ? k / G : k;  // meta fields per meta row
    auto field_params = [&](const HqqMetaField& f, uint8_t* fbits, MetaMap* map) {
        *fbits = f.quantized ? 8 : 16;
        if (f.quantized) {
            map->count = f.tgroup ? uint32_t(g.m / uint64_t(f.tgroup)) : 1;
            if (f.tgroup) {
                map->rdiv = 1;
                map->rstride = uint32_t(meta_cols);
                map->cstride = 1;
                map->period = map->count;
            }
        }
    };
    field_params(l.scale, &p.sbits, &p.smap);
    field_params(l.zero, &p.zbits, &p.zmap);
    const Type type = rg_ok ? Type::rg : Type::a0;
    QuantBuilder qb(type, p, n, k);
    const uint64_t meta_rows = rg_ok ? n : n / G;
    for (const HqqMetaField* f : {&l.scale, &l.zero}) {
        const bool is_scale = f == &l.scale;
        for (uint64_t mr = 0; mr < meta_rows; ++mr)
            for (uint64_t c = 0; c < meta_cols; ++c) {
                const uint64_t m = mr * meta_cols + c;
                const uint32_t v = f->quantized ? f->codes.data[m] : read_as_f16(f->values, m, l.name);
                is_scale ? qb.set_scale(mr, c, v) : qb.set_zero(mr, c, v);
            }
        if (f->quantized)
            for (uint64_t e = 0; e < f->tscale.numel(); ++e) {
                const uint16_t ts = read_as_f16(f->tscale, e, l.name), tz = read_as_f16(f->tzero, e, l.name);
                is_scale ? qb.set_stab(e, ts, tz) : qb.set_ztab(e, ts, tz);
            }
    }
    const CodeReader code{l, g};
    std::vector<uint8_t> q(static_cast<size_t>(k));
    const uint64_t R = n / G;  // a0 row classes
    for (uint64_t o = 0; o < n; ++o) {
        if (rg_ok) {  // grouped row (o*K + i) / g = o*(K/g) + i/g, column i % g
            for (uint64_t i = 0; i < k; ++i) q[i] = uint8_t(code.at(o * (k / G) + i / G, i % G));
        } else {  // grouped row o / R, column (o % R) * K + i
            for (uint64_t i = 0; i < k; ++i) q[i] = uint8_t(code.at(o / R, (o % R) * k + i));
        }
        qb.set_codes(o, q.data());
    }
    r.t = qb.take(lb_name);
    return r;
}

}  // namespace lb
