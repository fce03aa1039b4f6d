// import_greenbit.cpp: one GreenBitAI low_bit_llama quantized linear -> lowbit `rg` tensor, with
// no loss (formats/greenbit.md sections 2-4; the layouts of formats/blocktypes.md, table "Source
// mappings").
//
// Everything is inferred from the tensors (greenbit.md 4.5): bits b = 32 * qweight.rows / K, the
// groups G from qscales / qstatistic, group size K / G, the second-level block dgs = N / nb.
//   qstatistic  byte = scale code << 4 | zero code; w = q * s - zf, s and zf through fp16 tables
//               per (dgs rows x group)              -> rg b-bit, 4/4-bit fields, value mode
//   asym        qscales u8 (or floats holding the codes: truncated, as the loader's cast does),
//               qzeros b-bit codes packed along the outputs, z = code + 1; s through an fp16
//               table per group (2-bit), per (dgs rows x group) (4-bit) or per row (v1)
//                                                  -> rg b-bit, 8/b-bit fields, code mode
// The scale/zero tables are the sources' fp16 second-level pairs; a table code c decodes to
// f16(f16(c - zero) * scale) exactly as the reference computes it, and the weight is then formed in
// f32 (the reference rounds it to fp16 once more: lowbit is within 1 fp16 ulp of it).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/half.h"
#include "formats/hf_common.h"

namespace lb {

namespace {

const SourceTensor& need(const TensorLookup& find, const std::string& name) {
    const SourceTensor* t = find(name);
    LB_CHECK(t, "tensor '%s' not found (GreenBit layout)", name.c_str());
    return *t;
}

// A code stored as u8, or as a float holding an integer (fp16-stored qscales, greenbit.md 2b):
// converted as torch's float -> uint8 cast does for in-range values (truncation).
uint32_t code_u8(const SourceTensor& t, uint64_t i, const std::string& name) {
    if (t.dtype == DType::u8) return t.data[i];
    const float v = read_float(t, i);
    LB_CHECK(v >= 0.0f && v < 256.0f, "tensor '%s': element %llu = %g is not a code in 0..255", name.c_str(),
             (unsigned long long)i, double(v));
    return uint32_t(v);
}

// second-level tensors: numel G * nb in (G, nb[, 1]) order, or per row (v1: (1, N[, 1]))
void expect_second_level(const SourceTensor& t, const std::string& name, int64_t a, int64_t b) {
    expect_tensor(t, name, {DType::f16, DType::bf16, DType::f32});
    const bool ok = (t.shape.size() == 3 && t.shape[0] == a && t.shape[1] == b && t.shape[2] == 1) ||
                    (t.shape.size() == 2 && t.shape[0] == a && t.shape[1] == b);
    LB_CHECK(ok, "tensor '%s': shape %s, expected [%lld, %lld, 1]", name.c_str(), shape_str(t.shape).c_str(),
             (long long)a, (long long)b);
}

}  // namespace

bool greenbit_present(const TensorLookup& find, const std::string& prefix) { return find(prefix + ".qweight"); }

ImportedTensor greenbit_linear(const TensorLookup& find, const std::string& prefix, int64_t k,
                               const std::string& lb_name) {
    const std::string qwn = prefix + ".qweight";
    const SourceTensor& qw = need(find, qwn);
    expect_tensor(qw, qwn, {DType::i32});
    LB_CHECK(qw.shape.size() == 2 && qw.shape[0] > 0 && qw.shape[1] > 0, "tensor '%s': shape %s, expected 2-D",
             qwn.c_str(), shape_str(qw.shape).c_str());
    const int64_t n = qw.shape[1];
    LB_CHECK(k > 0 && (qw.shape[0] * 32) % k == 0, "tensor '%s': %lld packed rows do not fit K = %lld inputs",
             qwn.c_str(), (long long)qw.shape[0], (long long)k);
    const int64_t bits = qw.shape[0] * 32 / k;
    LB_CHECK(bits == 2 || bits == 4 || bits == 8,
             "tensor '%s': %lld rows for K = %lld give %lld bits, supported 2, 4, 8", qwn.c_str(),
             (long long)qw.shape[0], (long long)k, (long long)bits);
    const int64_t per_word = 32 / bits;
    const uint32_t mask = (1u << bits) - 1;

    const SourceTensor* qstat = find(prefix + ".qstatistic");
    const SourceTensor* qzeros = find(prefix + ".qzeros");
    LB_CHECK((qstat != nullptr) != (qzeros != nullptr),
             "GreenBit layer '%s': %s; expected either qstatistic (qstatistic layout) or qzeros (asym layout)",
             prefix.c_str(), qstat ? "both qstatistic and qzeros present" : "neither qstatistic nor qzeros present");
    const bool asym = qzeros != nullptr;
    const std::string scn = prefix + (asym ? ".qscales" : ".qstatistic");
    const SourceTensor& sc = asym ? need(find, scn) : *qstat;
    expect_tensor(sc, scn, {DType::u8, DType::f16, DType::bf16, DType::f32});
    LB_CHECK(!sc.shape.empty() && sc.shape[0] > 0 && k % sc.shape[0] == 0 && uint64_t(sc.shape[0] * n) == sc.numel(),
             "tensor '%s': shape %s, expected [G, %lld] or [G, nb, dgs] with G dividing K = %lld", scn.c_str(),
             shape_str(sc.shape).c_str(), (long long)n, (long long)k);
    const int64_t G = sc.shape[0], gs = k / G;
    LB_CHECK(gs == 8 || gs == 16 || gs == 32 || gs == 64 || gs == 128 || gs == 256,
             "GreenBit layer '%s': group size %lld (K %lld / %lld groups), supported 8..256 (powers of two)",
             prefix.c_str(), (long long)gs, (long long)k, (long long)G);
    if (const SourceTensor* gi = find(prefix + ".g_idx")) {  // must be the identity grouping i / gs
        const std::string gin = prefix + ".g_idx";
        expect_tensor(*gi, gin, {DType::i32, DType::i64}, {k});
        for (int64_t i = 0; i < k; ++i)
            LB_CHECK(read_int(*gi, uint64_t(i)) == i / gs,
                     "tensor '%s': g_idx[%lld] = %lld, but group size %lld needs %lld (act-order checkpoints are "
                     "not supported)",
                     gin.c_str(), (long long)i, (long long)read_int(*gi, uint64_t(i)), (long long)gs,
                     (long long)(i / gs));
    }

    ImportedTensor r;
    r.src_bytes = qw.nbytes + sc.nbytes;
    QParams p;
    p.bits = uint8_t(bits);
    p.group = uint32_t(gs);
    // second level: (scale, zero) fp16 pairs; entry index ((o / rdiv) * rstride + g * cstride)
    auto block_map = [&](int64_t nb) {
        MetaMap m;
        m.rdiv = uint32_t(n / nb);
        m.rstride = uint32_t(G);
        m.cstride = 1;
        m.count = uint32_t(nb * G);
        return m;
    };
    struct Table {
        const SourceTensor* s;
        const SourceTensor* z;
        std::string sname;
        bool per_row;  // v1: (1, N) pairs, one per output row
        int64_t nb;
    };
    auto table = [&](const std::string& sfx_s, const std::string& sfx_z) {
        Table t;
        t.sname = prefix + sfx_s;
        t.s = &need(find, t.sname);
        t.z = &need(find, prefix + sfx_z);
        t.per_row = t.s->shape.size() >= 2 && t.s->shape[0] == 1 && t.s->shape[1] == n && G > 1;
        t.nb = t.per_row ? n : t.s->shape.size() >= 2 ? t.s->shape[1] : 0;
        LB_CHECK(t.nb > 0 && n % t.nb == 0, "tensor '%s': shape %s, expected [%lld, nb, 1] with nb dividing %lld",
                 t.sname.c_str(), shape_str(t.s->shape).c_str(), (long long)G, (long long)n);
        const int64_t rows = t.per_row ? 1 : G;
        expect_second_level(*t.s, t.sname, rows, t.nb);
        expect_second_level(*t.z, prefix + sfx_z, rows, t.nb);
        r.src_bytes += t.s->nbytes + t.z->nbytes;
        return t;
    };
    // writes table entries in lowbit order (entry blk * G + g, or o for v1)
    auto fill_table = [&](QuantBuilder& qb, const Table& t, bool zero_table) {
        const uint64_t count = t.per_row ? uint64_t(n) : uint64_t(t.nb * G);
        for (uint64_t e = 0; e < count; ++e) {
            const uint64_t src = t.per_row ? e : (e % uint64_t(G)) * uint64_t(t.nb) + e / uint64_t(G);
            const uint16_t ts = read_as_f16(*t.s, src, t.sname), tz = read_as_f16(*t.z, src, t.sname);
            zero_table ? qb.set_ztab(e, ts, tz) : qb.set_stab(e, ts, tz);
        }
    };

    std::unique_ptr<QuantBuilder> qb;
    if (!asym) {
        const Table ts = table(".qscales_scales", ".qscales_zeros");
        const Table tz = table(".qzeros_scales", ".qzeros_zeros");
        LB_CHECK(!ts.per_row && !tz.per_row && ts.nb == tz.nb,
                 "GreenBit layer '%s': qstatistic second levels must both be [G, nb, 1]", prefix.c_str());
        p.sbits = p.zbits = 4;
        p.zmode = ZeroMode::value;
        p.smap = p.zmap = block_map(ts.nb);
        qb = std::make_unique<QuantBuilder>(Type::rg, p, uint64_t(n), uint64_t(k));
        fill_table(*qb, ts, false);
        fill_table(*qb, tz, true);
        for (int64_t g = 0; g < G; ++g)
            for (int64_t o = 0; o < n; ++o) {
                const uint32_t b = code_u8(sc, uint64_t(g * n + o), scn);
                qb->set_scale(uint64_t(o), uint64_t(g), b >> 4);
                qb->set_zero(uint64_t(o), uint64_t(g), b & 15);
            }
        r.src_desc = "GreenBit qstatistic " + std::to_string(bits) + "-bit g" + std::to_string(gs) + " dgs " +
                     std::to_string(n / ts.nb);
    } else {
        const std::string qzn = prefix + ".qzeros";
        LB_CHECK(n % per_word == 0, "GreenBit layer '%s': N = %lld is not a multiple of %lld (packed qzeros)",
                 prefix.c_str(), (long long)n, (long long)per_word);
        expect_tensor(*qzeros, qzn, {DType::i32}, {G, n / per_word});
        r.src_bytes += qzeros->nbytes;
        const Table ts = table(".qscales_scales", ".qscales_zeros");
        p.sbits = 8;
        p.zbits = uint8_t(bits);
        p.zmode = ZeroMode::code;
        if (ts.per_row) {
            p.smap.rdiv = 1;
            p.smap.rstride = 1;
            p.smap.count = uint32_t(n);
        } else {
            p.smap = block_map(ts.nb);
        }
        p.zmap.count = 1;  // one entry (scale 1, zero -1): z = code + 1
        qb = std::make_unique<QuantBuilder>(Type::rg, p, uint64_t(n), uint64_t(k));
        fill_table(*qb, ts, false);
        qb->set_ztab(0, f32_to_f16(1.0f), f32_to_f16(-1.0f));
        const uint8_t* zw = qzeros->data;
        for (int64_t g = 0; g < G; ++g)
            for (int64_t o = 0; o < n; ++o) {
                qb->set_scale(uint64_t(o), uint64_t(g), code_u8(sc, uint64_t(g * n + o), scn));
                uint32_t w;
                std::memcpy(&w, zw + 4 * (g * (n / per_word) + o / per_word), 4);
                qb->set_zero(uint64_t(o), uint64_t(g), (w >> (bits * (o % per_word))) & mask);
            }
        r.src_desc = "GreenBit asym " + std::to_string(bits) + "-bit g" + std::to_string(gs) +
                     (ts.per_row ? " v1" : " dgs " + std::to_string(n / ts.nb));
    }

    // codes: qweight[i / P][o] holds input i of output o at bits b * (i % P); tiles of 64 outputs
    // so that the word rows are read contiguously
    const int64_t tile = 64, wrows = qw.shape[0];
    std::vector<uint8_t> q(size_t(tile * k));
    for (int64_t o0 = 0; o0 < n; o0 += tile) {
        const int64_t o1 = std::min(n, o0 + tile);
        for (int64_t wr = 0; wr < wrows; ++wr) {
            const uint8_t* src = qw.data + 4 * (wr * n + o0);
            for (int64_t o = o0; o < o1; ++o, src += 4) {
                uint32_t w;
                std::memcpy(&w, src, 4);
                uint8_t* dst = q.data() + (o - o0) * k + wr * per_word;
                for (int64_t j = 0; j < per_word; ++j) dst[j] = uint8_t((w >> (bits * j)) & mask);
            }
        }
        for (int64_t o = o0; o < o1; ++o) qb->set_codes(uint64_t(o), q.data() + (o - o0) * k);
    }
    r.t = qb->take(lb_name);
    return r;
}

}  // namespace lb
