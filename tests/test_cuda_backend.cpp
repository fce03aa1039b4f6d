// test_cuda_backend.cpp: the CUDA backend against the CPU backend (the reference), in the style of
// ggml's test-backend-ops: every op of core/ops.h on odd shapes, mul_mat and get_rows for every
// preset of core/types.cpp and every plain weight type, one column (the fused GEMV) and several
// (GEMV per column; the wmma tile GEMM and the dequantize + cuBLAS GEMM), and the logits of every tests/fixtures
// model (converted by formats/hf_import.h) for a batch and for decode steps. Tolerances:
// normalized MSE <= 5e-4 for mul_mat and the model logits, 1e-8 for the other float ops, exact
// for argmax and f16 copies.
//
// Where the build has no CUDA, or the machine no CUDA device, every case is skipped (doctest
// skip; the one case that runs only prints "skipped: ..." and ctest reports the test as skipped
// through SKIP_REGULAR_EXPRESSION): nothing is asserted as passed there.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/graph.h"
#include "core/half.h"
#include "core/random_weights.h"
#include "formats/hf_import.h"
#include "models/llama.h"
#if defined(LB_HAVE_CUDA)
#include "backends/cuda/cuda_backend.h"
#endif

using namespace lb;

namespace {

// evaluated once, when the test cases register (before main)
bool cuda_ready(std::string* why = nullptr) {
    static std::string reason;
    static const bool ok = [] {
#if defined(LB_HAVE_CUDA)
        return cuda::device_count(&reason) > 0;
#else
        reason = "this build has no CUDA backend";
        return false;
#endif
    }();
    if (why) *why = reason;
    return ok;
}

#if defined(LB_HAVE_CUDA)
double nmse(const std::vector<float>& ref, const std::vector<float>& got) {
    REQUIRE(ref.size() == got.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        num += (double(ref[i]) - got[i]) * (double(ref[i]) - got[i]);
        den += double(ref[i]) * ref[i];
    }
    return den > 0 ? num / den : num;
}

std::vector<float> as_floats(const Tensor& t) {
    REQUIRE(t.is_contiguous());
    std::vector<float> v(size_t(t.nelements()));
    for (size_t i = 0; i < v.size(); ++i) {
        const uint8_t* p = static_cast<const uint8_t*>(t.data) + i * type_size(t.type);
        switch (t.type) {
            case Type::f32:
                std::memcpy(&v[i], p, 4);
                break;
            case Type::f16:
                v[i] = f16_to_f32(uint16_t(p[0] | p[1] << 8));
                break;
            case Type::i32: {
                int32_t x;
                std::memcpy(&x, p, 4);
                v[i] = float(x);
                break;
            }
            default:
                FAIL("unexpected output type");
        }
    }
    return v;
}

// A graph built by `build` (which returns its outputs and fills its inputs in `fill`, called after
// plan), computed on the CPU and on the CUDA backend; returns (cpu, cuda) per output.
struct Case {
    Graph g;
    std::vector<Tensor*> outs;
    std::vector<std::function<void()>> fills;
    Tensor* input_f32(std::initializer_list<int64_t> ne, uint64_t seed, float scale = 1.0f) {
        Tensor* t = g.input(Type::f32, ne);
        fills.push_back([t, seed, scale] {
            Rng r{seed};
            float* d = static_cast<float*>(t->data);
            for (int64_t i = 0; i < t->nelements(); ++i) d[i] = scale * r.normal();
        });
        return t;
    }
    Tensor* input_i32(std::vector<int32_t> v, std::initializer_list<int64_t> ne) {
        Tensor* t = g.input(Type::i32, ne);
        fills.push_back([t, v] { std::memcpy(t->data, v.data(), v.size() * 4); });
        return t;
    }
    std::vector<std::pair<std::vector<float>, std::vector<float>>> run() {
        for (Tensor* o : outs) g.output(o);
        g.plan(2);
        for (auto& f : fills) f();
        auto be = cuda::make_backend(nullptr);
        auto ex = be->prepare(g);  // mirrors user memory before the CPU writes any of it
        ThreadPool pool(2);
        g.compute(pool);
        std::vector<std::vector<float>> cpu;
        for (Tensor* o : outs) cpu.push_back(as_floats(*o));
        for (Tensor* o : outs) std::memset(o->data, 0xff, o->nbytes());  // NaN-filled: must be overwritten
        ex->compute(g);
        std::vector<std::pair<std::vector<float>, std::vector<float>>> r;
        for (size_t i = 0; i < outs.size(); ++i) r.push_back({cpu[i], as_floats(*outs[i])});
        return r;
    }
};

std::vector<std::pair<uint64_t, uint64_t>> shapes_for(const Preset& pr) {
    const std::string name = pr.name;
    if (pr.type == Type::a0) {
        if (name == "q1_g8_a0") return {{64, 256}, {128, 96}};
        return {{64, 96}, {320, 40}};
    }
    if (name == "q4_g64_hqqm") return {{128, 128}};
    if (name.find("g64") != std::string::npos) return {{5, 64}, {33, 576}};
    if (name.find("g32") != std::string::npos) return {{1, 32}, {65, 576}, {3, 4096}};
    if (name.find("g16") != std::string::npos) return {{3, 16}, {17, 576}};
    if (name.find("g8") != std::string::npos) return {{1, 8}, {33, 576}, {70, 200}};
    return {{1, 8}, {31, 576}, {64, 1000}};  // sign
}
const std::string kFixtures = "fixtures/";
#endif

}  // namespace

// the one case that always runs: says why the others are skipped
TEST_CASE("CUDA backend: device") {
    std::string why;
    if (!cuda_ready(&why)) {
        MESSAGE("skipped: no CUDA device: " << why);
        return;
    }
#if defined(LB_HAVE_CUDA)
    MESSAGE("CUDA device 0: " << cuda::device_description(0));
#endif
}

#if defined(LB_HAVE_CUDA)
#define CUDA_CASE(name) TEST_CASE(name* doctest::skip(!cuda_ready()))

CUDA_CASE("CUDA mul_mat and get_rows equal the CPU for every preset, batch 1 and batch n, odd shapes") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    for (size_t ip = 0; ip < np; ++ip) {
        const Preset& pr = presets[ip];
        for (auto [n, k] : shapes_for(pr)) {
            const QParams p = preset_params(pr, n, k);
            const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n * 7 + k + ip);
            // 1 column: the fused GEMV; 3: GEMV per column; 17 and 70: the batch GEMM, both paths
            for (int64_t cols : {1, 3, 17, 70})
                for (int path = 0; path < (cols > 4 ? 2 : 1); ++path) {
                    INFO("preset " << std::string(pr.name) << " n " << n << " k " << k << " columns " << cols
                                   << (path ? " (dequant + cuBLAS)" : ""));
                    cuda::set_gemm_dequant_cublas(path == 1);
                    Case c;
                    Tensor* w = c.g.weight("w", pr.type, p, n, k, blob.data());
                    Tensor* x = c.input_f32({int64_t(k), cols}, 5);
                    c.outs.push_back(c.g.mul_mat(w, x));
                    std::vector<int32_t> ids;
                    for (int64_t i = 0; i < cols; ++i) ids.push_back(int32_t((i * 37) % int64_t(n)));
                    c.outs.push_back(c.g.get_rows(w, c.input_i32(ids, {cols})));
                    const auto r = c.run();
                    CHECK(nmse(r[0].first, r[0].second) <= 5e-4);
                    CHECK(nmse(r[1].first, r[1].second) == 0.0);  // the same decoder: bit for bit
                }
        }
    }
    cuda::set_gemm_dequant_cublas(false);
}

CUDA_CASE("CUDA mul_mat with f32 / f16 / bf16 weights: cuBLAS 2-D, and batched, broadcast, strided") {
    for (Type t : {Type::f32, Type::f16, Type::bf16}) {
        INFO("type " << type_name(t));
        const uint64_t n = 45, k = 77;
        const std::vector<uint8_t> blob = random_weight(t, QParams{}, n, k, 3);
        for (int64_t cols : {1, 9}) {
            Case c;
            Tensor* w = c.g.weight("w", t, QParams{}, n, k, blob.data());
            c.outs.push_back(c.g.mul_mat(w, c.input_f32({int64_t(k), cols}, 9)));
            const auto r = c.run();
            CHECK(nmse(r[0].first, r[0].second) <= 5e-4);
        }
    }
    // attention-like: K [hd, nkv, Hkv] a strided f16 view of a cache, q permuted [hd, n, H]; n = 1
    // takes the generic kernel, n = 5 cuBLAS strided batches (GQA: 3 query heads per kv head)
    const int64_t hd = 40, nkv = 19, Hkv = 2, H = 6, S = 23;
    std::vector<uint16_t> cache(size_t(S * hd * Hkv));
    Rng r{17};
    for (auto& h : cache) h = f32_to_f16(r.normal());
    for (int64_t n : {1, 5}) {
        INFO("attention columns " << n);
        Case c;
        Tensor* kc = c.g.external(Type::f16, {hd * Hkv, S}, cache.data(), "cache");
        Tensor* K = c.g.view(kc, {hd, nkv, Hkv}, {uint64_t(hd * Hkv * 2), uint64_t(hd * 2)}, 0);
        Tensor* q = c.input_f32({hd, H, n}, 4);
        c.outs.push_back(c.g.mul_mat(K, c.g.permute(q, 0, 2, 1, 3)));
        const auto res = c.run();
        CHECK(nmse(res[0].first, res[0].second) <= 5e-4);
    }
}

CUDA_CASE("CUDA element ops, norms, rope, softmax, copies and argmax equal the CPU") {
    const int64_t K = 75, n = 6, H = 3;
    Case c;
    Tensor* a = c.input_f32({K, n}, 1);
    Tensor* b = c.input_f32({K, n}, 2);
    std::vector<uint16_t> bias16(static_cast<size_t>(K));
    Rng rr{5};
    for (auto& h : bias16) h = f32_to_f16(rr.normal());
    Tensor* bias = c.g.external(Type::f16, {K}, bias16.data(), "bias16");
    Tensor* row = c.input_f32({K}, 3);
    c.outs.push_back(c.g.rms_norm(a, 1e-5f));
    c.outs.push_back(c.g.layer_norm(a, 1e-6f));
    c.outs.push_back(c.g.add(a, b));
    c.outs.push_back(c.g.add(a, bias));
    c.outs.push_back(c.g.mul(a, row));
    c.outs.push_back(c.g.scale(a, 0.37f));
    c.outs.push_back(c.g.silu(a));
    c.outs.push_back(c.g.swiglu(a, b));
    // rope on a permuted view, neox and interleaved, n_dims < D (a tail that passes through)
    const int64_t D = 18;
    Tensor* qk = c.input_f32({D, n, H}, 6);
    std::vector<int32_t> pos;
    for (int64_t i = 0; i < n; ++i) pos.push_back(int32_t(11 + 3 * i));
    Tensor* ps = c.input_i32(pos, {n});
    c.outs.push_back(c.g.rope(c.g.permute(qk, 0, 2, 1, 3), ps, 14, rope_neox, 10000.0f));
    c.outs.push_back(c.g.rope(c.g.permute(qk, 0, 2, 1, 3), ps, 14, rope_interleaved, 500000.0f, 0.5f));
    // softmax: causal by position (some rows see nothing), and plain
    Tensor* sc = c.input_f32({20, n, H}, 7, 3.0f);
    std::vector<int32_t> qpos = {-1, 0, 4, 9, 19, 30};
    c.outs.push_back(c.g.softmax(sc, c.input_i32(qpos, {n}), 0.125f));
    c.outs.push_back(c.g.softmax(sc, nullptr, 1.0f));
    // cpy into every other row of an f16 buffer, read back through cont; cont of a permute
    Tensor* dst = c.g.input(Type::f16, {K, 2 * n});
    c.fills.push_back([dst] { std::memset(dst->data, 0, dst->nbytes()); });
    Tensor* v = c.g.view(dst, {K, n}, {uint64_t(2 * K * 2)}, uint64_t(K * 2));
    c.outs.push_back(c.g.cont(c.g.cpy(a, v)));
    c.outs.push_back(c.g.cont(c.g.permute(qk, 1, 2, 0, 3)));
    c.outs.push_back(c.g.argmax(a));
    const char* names[] = {"rms_norm",       "layer_norm", "add",     "add f16",   "mul",
                           "scale",          "silu",       "swiglu",  "rope neox", "rope interleaved",
                           "softmax causal", "softmax",    "cpy f16", "cont",      "argmax"};
    const auto r = c.run();
    REQUIRE(r.size() == sizeof names / sizeof names[0]);
    for (size_t i = 0; i < r.size(); ++i) {
        INFO("op " << names[i]);
        const bool exact =
            std::string(names[i]) == "argmax" || std::string(names[i]) == "cpy f16" || std::string(names[i]) == "cont";
        if (exact)
            CHECK(r[i].first == r[i].second);
        else
            CHECK(nmse(r[i].first, r[i].second) <= 1e-8);
    }
}

CUDA_CASE("CUDA logits of every fixture model equal the CPU: one batch, then decode steps") {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(kFixtures))
        if (e.is_directory() && std::filesystem::exists(e.path() / "config.json"))
            names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    REQUIRE(!names.empty());
    for (const std::string& name : names) {
        INFO("fixture " << name);
        HfImportResult imp = import_hf_model(kFixtures + name, HfImportOptions{});
        auto m = LlamaModel::from_checkpoint(std::move(imp.ck));
        const int64_t V = m->hp.n_vocab;
        const std::vector<int32_t> toks = {1, 17, 99, 3, 250 % int32_t(V), 42, 7};
        const int64_t T = int64_t(toks.size());
        ThreadPool pool(2);
        auto w = cuda::upload_weights(*m, 0);
        auto be = cuda::make_backend(w);
        std::vector<float> cpu, gpu;
        for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
            KvCache cache(m->hp, 32);
            LlamaGraphOptions o;
            o.n_tokens = T - 2;
            o.n_kv = 32;
            o.backend = on_gpu ? be.get() : nullptr;
            LlamaGraph g(*m, cache, o);
            const float* l = g.eval(toks.data(), 0, pool);
            std::vector<float>& out = on_gpu ? gpu : cpu;
            out.assign(l, l + (T - 2) * V);
            LlamaDecoder dec(*m, cache, 2, on_gpu ? be.get() : nullptr);
            for (int64_t p = T - 2; p < T; ++p) {
                const float* d = dec.eval(toks[size_t(p)], p, pool);
                out.insert(out.end(), d, d + V);
            }
        }
        CHECK(nmse(cpu, gpu) <= 5e-4);
    }
}
#endif
