// test_hf_import.cpp: `lowbit convert` of publisher checkpoints (formats/hf_import.h) against the
// fixtures of tests/fixtures (made by the gen_*.py scripts there: GreenBit and OneBit per the
// format specs, HQQ by the real hqq package). Each fixture directory has a sibling
// <name>.expected.safetensors with the source's own dequantized weights and the logits of a
// PyTorch reference forward for a fixed token sequence. Checked per fixture:
//   - every quantized projection: the source's own formula and fp16 roundings applied to the codes
//     and meta lowbit stored give the reference bit for bit; lowbit's f32 dequantization is within
//     the source's rounding error of it (1 fp16 ulp of the weight + 1 of the rounded intermediate
//     q - z or q * s: GreenBit qstatistic and HQQ round the intermediate, which can cancel);
//     OneBit: the dense h * sign * g exactly, and the signs;
//   - no bloat: bytes of the lowbit quantized tensors <= the source's bytes for them + 2%;
//   - logits of the converted model with its weights dequantized to f32 (isolates conversion and
//     graph, e.g. the OneBit LayerNorm and the LoRA adapter, from the int8 activations of the
//     fast kernels) agree with the reference within 1e-2 (the reference uses the fp16-rounded
//     weights, lowbit the exact ones: a few ulp of 1e-4 per weight over K <= 256 inputs);
//     and have the reference's top-1 token at every position;
//   - logits of the converted model as it runs (int8 activation blocks: relative error ~1/254
//     per block, which adds up to a few hundredths here) stay within 5% of the largest reference
//     logit. Its top-1 token is reported, not required: the random fixture models have near-ties
//     (top-2 margins of 0.01-0.02) that this error can flip.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/threadpool.h"
#include "formats/hf_import.h"
#include "formats/safetensors.h"
#include "models/llama.h"

using namespace lb;

namespace {

const std::string kFixtures = "fixtures/";

std::vector<std::string> fixture_names() {
    std::vector<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator(kFixtures)) {
        const std::string f = e.path().filename().string();
        const std::string sfx = ".expected.safetensors";
        if (f.size() > sfx.size() && f.compare(f.size() - sfx.size(), sfx.size(), sfx) == 0)
            v.push_back(f.substr(0, f.size() - sfx.size()));
    }
    std::sort(v.begin(), v.end());
    return v;
}

float f16_ulp(float x) {
    const float a = std::fabs(x);
    if (a < 6.103515625e-05f) return 5.960464477539063e-08f;  // subnormal spacing
    int e;
    std::frexp(a, &e);                // a = m * 2^e, m in [0.5, 1)
    return std::ldexp(1.0f, e - 11);  // 10 mantissa bits
}

std::vector<float> floats(const SourceTensor& t) {
    std::vector<float> v(size_t(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) {
        if (t.dtype == DType::f16) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            v[i] = f16_to_f32(h);
        } else {
            REQUIRE(t.dtype == DType::f32);
            std::memcpy(&v[i], t.data + 4 * i, 4);
        }
    }
    return v;
}

struct Logits {
    std::vector<float> v;
};
Logits run(LlamaCheckpoint&& ck, const std::vector<int32_t>& toks) {
    auto m = LlamaModel::from_checkpoint(std::move(ck));
    KvCache cache(m->hp, 32);
    LlamaGraphOptions o;
    o.n_tokens = int64_t(toks.size());
    LlamaGraph g(*m, cache, o);
    ThreadPool pool(1);
    const float* l = g.eval(toks.data(), 0, pool);
    return {std::vector<float>(l, l + toks.size() * size_t(m->hp.n_vocab))};
}

void check_fixture(const std::string& name, const std::string& adapter, const char* logits_key) {
    INFO("fixture " << name << (adapter.empty() ? "" : " + adapter " + adapter));
    const auto exp = SafetensorsFile::open(kFixtures + name + ".expected.safetensors");
    HfImportOptions opt;
    opt.adapter = adapter;
    HfImportResult r = import_hf_model(kFixtures + name, opt);
    const LlamaCheckpoint& ck = r.ck;

    // per tensor: within 1 fp16 ulp of the source's dequantization
    uint64_t qbytes = 0, qsrc = 0, checked = 0;
    double worst_all = 0;  // largest |lowbit - reference| in fp16 ulps of the reference
    for (size_t i = 0; i < ck.tensors.size(); ++i) {
        const CheckpointTensor& t = ck.tensors[i];
        if (traits(t.type).kind == Kind::quant) {
            qbytes += t.data.size();
            qsrc += r.src_bytes[i];
        }
    }
    for (const auto& [key, st] : exp->tensors()) {
        // "<module>.weight": the dequantized W[N][K]; OneBit: "<module>.sign" (+ .g, .h), W = h * sign * g
        auto ends = [&](const std::string& sfx) {
            return key.size() > sfx.size() && key.compare(key.size() - sfx.size(), sfx.size(), sfx) == 0;
        };
        if (!ends(".weight") && !ends(".sign")) continue;
        const std::string mod = key.substr(0, key.rfind('.'));
        const std::string lb = hf_to_lb(mod) + ".weight";
        const CheckpointTensor* t = ck.find(lb);
        REQUIRE_MESSAGE(t, "no converted tensor " << lb << " for " << key);
        const uint64_t k = t->dims[0], n = t->dims[1];
        REQUIRE(st.shape == std::vector<int64_t>({int64_t(n), int64_t(k)}));
        std::vector<float> want;
        if (ends(".sign")) {
            const SourceTensor *g = exp->find(mod + ".g"), *h = exp->find(mod + ".h");
            REQUIRE(g);
            REQUIRE(h);
            const std::vector<float> gv = floats(*g), hv = floats(*h);
            for (uint64_t o = 0; o < n; ++o)
                for (uint64_t j = 0; j < k; ++j)
                    want.push_back(hv[size_t(o)] * float(int8_t(st.data[o * k + j])) * gv[size_t(j)]);
        } else {
            want = floats(st);
        }
        std::vector<float> got(size_t(n * k));
        if (traits(t->type).kind == Kind::quant) {
            const WeightView v = make_view(t->type, t->params, n, k, t->data.data());
            for (uint64_t row = 0; row < n; ++row) dequant_row_ref(v, row, got.data() + row * k);
        } else {  // dense: f16 / bf16 / f32 as stored
            for (uint64_t j = 0; j < n * k; ++j) {
                uint16_t h;
                if (t->type == Type::f32) {
                    std::memcpy(&got[j], t->data.data() + 4 * j, 4);
                } else {
                    std::memcpy(&h, t->data.data() + 2 * j, 2);
                    got[j] = t->type == Type::f16 ? f16_to_f32(h) : bf16_to_f32(h);
                }
            }
        }
        // (1) the source's formula with the source's fp16 roundings, on the codes and decoded meta
        //     lowbit stored: must give the reference bit for bit (the conversion lost nothing);
        // (2) lowbit's own f32 evaluation: within the source's rounding error of the reference,
        //     1 fp16 ulp of the weight plus 1 of the rounded intermediate (q - z, or q * s)
        size_t bad_exact = 0, bad_near = 0;
        double worst_ulps = 0;
        const bool quant = traits(t->type).kind == Kind::quant && t->type != Type::sign;
        std::vector<uint8_t> q(size_t(k + 256));
        const WeightView v = quant ? make_view(t->type, t->params, n, k, t->data.data()) : WeightView{};
        for (uint64_t o = 0; o < n; ++o) {
            if (quant) unpack_codes_ref(v.codes(o), t->params.bits, v.lay.kp, q.data());
            for (uint64_t j = 0; j < k; ++j) {
                const size_t at = size_t(o * k + j);
                const float want_v = want[at], got_v = got[at];
                float inter = 0;
                if (quant) {
                    const bool rg = t->type == Type::rg;
                    const uint64_t mrow = rg ? o : o % (n / t->params.group), col = rg ? j / t->params.group : j;
                    const MetaRow mr = meta_row_of(v, mrow);
                    const float sc = decode_field_ref(mr.srow, mr.stab, t->params.sbits, t->params.smap, mrow, col, 1);
                    const float z = decode_field_ref(mr.zrow, mr.ztab, t->params.zbits, t->params.zmap, mrow, col, 0);
                    const float qq = float(q[size_t(j)]);
                    inter = t->params.zmode == ZeroMode::code ? round_f16(qq - z) : round_f16(qq * sc);
                    const float emul = t->params.zmode == ZeroMode::code ? round_f16(inter * sc) : round_f16(inter - z);
                    if (emul != want_v && bad_exact++ == 0)
                        MESSAGE(key << " [" << o << ", " << j << "]: source formula on the stored codes gives " << emul
                                    << ", the reference " << want_v);
                }
                const double d = std::fabs(double(got_v) - double(want_v));
                const float ulp = f16_ulp(want_v);
                const double tol = st.dtype != DType::f16 ? 0.0 : double(ulp) + (quant ? f16_ulp(inter) : 0.0f);
                worst_ulps = std::max(worst_ulps, d / double(ulp));
                if (!(d <= tol) && bad_near++ == 0)
                    MESSAGE(key << " [" << o << ", " << j << "]: lowbit " << got_v << ", reference " << want_v);
            }
        }
        CHECK_MESSAGE(bad_exact == 0, key << ": " << bad_exact << " weights differ from the source's formula");
        CHECK_MESSAGE(bad_near == 0, key << ": " << bad_near << " weights beyond the source's rounding error");
        worst_all = std::max(worst_all, worst_ulps);
        if (ends(".sign")) {  // OneBit: the sign bits themselves
            const SourceTensor* sg = &st;
            REQUIRE(t->type == Type::sign);
            const Layout lay = layout(t->type, t->params, n, k);
            size_t wrong = 0;
            for (uint64_t o = 0; o < n; ++o)
                for (uint64_t j = 0; j < k; ++j) {
                    const int bit = (t->data[lay.off_codes + o * lay.code_row_bytes + j / 8] >> (j % 8)) & 1;
                    wrong += (bit ? -1 : 1) != int8_t(sg->data[o * k + j]);
                }
            CHECK_MESSAGE(wrong == 0, key << ": " << wrong << " signs differ");
        }
        ++checked;
    }
    CHECK(checked == 7 * uint64_t(ck.hp.n_layer));
    MESSAGE(name << ": " << checked << " tensors, lowbit's f32 dequantization vs the reference: at most " << worst_all
                 << " fp16 ulp");
    if (qsrc) {
        MESSAGE(name << ": quantized tensors " << qbytes << " bytes, source " << qsrc << " bytes ("
                     << 100.0 * (double(qbytes) / double(qsrc) - 1) << "%)");
        CHECK(double(qbytes) <= 1.02 * double(qsrc));
    }

    // logits
    const SourceTensor* tk = exp->find("tokens");
    const SourceTensor* lg = exp->find(logits_key);
    REQUIRE(tk);
    REQUIRE(lg);
    std::vector<int32_t> toks(size_t(tk->numel()));
    std::memcpy(toks.data(), tk->data, toks.size() * 4);
    const std::vector<float> ref = floats(*lg);
    const int64_t V = ck.hp.n_vocab;
    REQUIRE(ref.size() == toks.size() * size_t(V));
    double mx = 0;
    for (float x : ref) mx = std::max(mx, double(std::fabs(x)));
    const Logits ld = run(dequantize_checkpoint(ck), toks);
    const Logits lq = run(std::move(r.ck), toks);
    // largest difference to the reference, and positions whose top-1 token differs
    auto compare = [&](const Logits& l, double* worst, size_t* flips, const char* what) {
        *worst = 0;
        *flips = 0;
        for (size_t p = 0; p < toks.size(); ++p) {
            const float* a = l.v.data() + p * size_t(V);
            const float* b = ref.data() + p * size_t(V);
            for (int64_t j = 0; j < V; ++j) *worst = std::max(*worst, double(std::fabs(a[j] - b[j])));
            const int64_t ta = std::max_element(a, a + V) - a, tb = std::max_element(b, b + V) - b;
            if (ta == tb) continue;
            ++*flips;
            MESSAGE(name << ", " << std::string(what) << ", position " << p << ": top-1 " << ta << " (reference logit "
                         << b[ta] << ", lowbit " << a[ta] << ") instead of " << tb << " (" << b[tb] << ", lowbit "
                         << a[tb] << ")");
        }
    };
    double dd = 0, dq = 0;
    size_t flips_d = 0, flips_q = 0;
    compare(ld, &dd, &flips_d, "dequantized-f32 model");
    compare(lq, &dq, &flips_q, "quantized model (int8 activations)");
    MESSAGE(name << std::string(adapter.empty() ? "" : " + adapter") << ": largest |logit| " << mx
                 << "; dequantized-f32 model: max diff " << dd << ", top-1 differs at " << flips_d
                 << " of 16; as it runs (int8 activations): max diff " << dq << ", top-1 differs at " << flips_q
                 << " (near-ties of the random fixture model)");
    CHECK(dd <= 1e-2);
    CHECK(flips_d == 0);
    CHECK(dq <= 0.05 * mx);
}

bool exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("publisher fixtures: weights within 1 fp16 ulp, no bloat, logits agree with the PyTorch reference") {
    const std::vector<std::string> names = fixture_names();
    REQUIRE(names.size() >= 8);  // 10 committed; gen_*.py also make qstat g16/g32 and onebit-train
    for (const std::string& name : names) {
        check_fixture(name, "", exists(kFixtures + name + "/adapter_v0.1.lora") ? "logits_no_adapter" : "logits");
        if (exists(kFixtures + name + "/adapter_v0.1.lora")) {
            check_fixture(name, kFixtures + name + "/adapter_v0.1.lora", "logits");
            const std::string flat = kFixtures + name + ".adapter-v01-flat.lora";
            if (exists(flat)) check_fixture(name, flat, "logits");
        }
    }
}
