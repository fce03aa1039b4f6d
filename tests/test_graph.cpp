// test_graph.cpp: the thread pool, graph planning (topological order, buffer reuse by liveness,
// cpy ordering) and the promise that compute() allocates nothing once planned. This file
// replaces the global allocation functions to count allocations.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "alloc_counter.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/matmul.h"
#include "core/error.h"
#include "core/graph.h"
#include "core/half.h"
#include "core/random_weights.h"

using namespace lb;

TEST_CASE("the allocation counter counts") {
    const long before = allocations();
    {
        volatile auto p = std::make_unique<int>(3);
        (void)p;
    }
#ifdef LB_COUNT_MALLOC
    const long mid = allocations();
    void* volatile m = std::malloc(24);
    std::free(m);
    CHECK(allocations() > mid);
#endif
    CHECK(allocations() > before);
}

// ---- thread pool ------------------------------------------------------------------------------
TEST_CASE("thread pool: every index exactly once, any size, many calls") {
    for (int nt = 1; nt <= 4; ++nt) {
        ThreadPool pool(nt);
        CHECK(pool.size() == nt);
        for (uint64_t n : {0ull, 1ull, 2ull, 3ull, 7ull, 100ull, 1001ull}) {
            for (int rep = 0; rep < 20; ++rep) {
                std::vector<std::atomic<int>> hits(n);
                std::atomic<int> bad_thread{0};
                pool.parallel_for(n, [&](uint64_t b, uint64_t e, int th) {
                    if (th < 0 || th >= nt) bad_thread++;
                    for (uint64_t i = b; i < e; ++i) hits[i]++;
                });
                int wrong = 0;
                for (auto& h : hits) wrong += h.load() != 1;
                CHECK(wrong == 0);
                CHECK(bad_thread.load() == 0);
            }
        }
    }
}

TEST_CASE("thread pool: grain, nested calls run inline, workers really run") {
    ThreadPool pool(3);
    std::atomic<int> ranges{0};
    pool.parallel_for(
        10,
        [&](uint64_t b, uint64_t e, int) {
            ranges++;
            CHECK((e - b >= 4 || e == 10));
        },
        4);
    CHECK(ranges.load() <= 3);
    std::atomic<long> total{0};
    pool.parallel_for(6, [&](uint64_t b, uint64_t e, int) {
        for (uint64_t i = b; i < e; ++i)
            pool.parallel_for(5, [&](uint64_t b2, uint64_t e2, int) { total += long(e2 - b2); });
    });
    CHECK(total.load() == 30);
    // more than one thread takes part: a range waits (2 s at most) until another thread has taken
    // one (a fixed amount of work per range failed on a loaded machine, where waking a worker can
    // take longer than the caller needs for every range)
    std::atomic<int> seen_mask{0};
    pool.parallel_for(64, [&](uint64_t, uint64_t, int th) {
        seen_mask |= 1 << th;
        const auto t0 = std::chrono::steady_clock::now();
        auto one_thread = [&] {
            const int m = seen_mask.load();
            return (m & (m - 1)) == 0;
        };
        while (one_thread() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2))
            std::this_thread::yield();
    });
    CHECK(seen_mask.load() != 1);
}

TEST_CASE("thread pool: no allocation per call; idle pool sleeps and wakes up") {
    ThreadPool pool(3);
    std::atomic<uint64_t> sum{0};
    pool.parallel_for(100, [&](uint64_t b, uint64_t e, int) { sum += e - b; });  // warm up
    const long before = allocations();
    for (int i = 0; i < 100; ++i) pool.parallel_for(100, [&](uint64_t b, uint64_t e, int) { sum += e - b; });
    CHECK(allocations() == before);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // workers go to sleep
    pool.parallel_for(100, [&](uint64_t b, uint64_t e, int) { sum += e - b; });
    CHECK(sum.load() == 102 * 100);
}

// ---- planning ---------------------------------------------------------------------------------
static size_t pos_of(const Graph& g, const Tensor* t) {
    const auto& o = g.order();
    for (size_t i = 0; i < o.size(); ++i)
        if (o[i] == t) return i;
    return SIZE_MAX;
}

TEST_CASE("plan: topological order of a diamond, unreachable nodes left out") {
    std::vector<float> xs(16, 1.0f);
    Graph g;
    Tensor* x = g.external(Type::f32, {16}, xs.data(), "x");
    Tensor* a = g.silu(x);
    Tensor* b = g.scale(x, 2.0f);
    Tensor* dead = g.scale(a, 3.0f);  // nobody needs it
    Tensor* d = g.add(a, b);
    g.output(d);
    g.plan(1);
    const auto& o = g.order();
    CHECK(o.size() == 4);
    CHECK(pos_of(g, dead) == SIZE_MAX);
    for (Tensor* t : {x, a, b, d}) CHECK(pos_of(g, t) != SIZE_MAX);
    CHECK(pos_of(g, x) < pos_of(g, a));
    CHECK(pos_of(g, x) < pos_of(g, b));
    CHECK(pos_of(g, a) < pos_of(g, d));
    CHECK(pos_of(g, b) < pos_of(g, d));
    ThreadPool pool(1);
    g.compute(pool);
    const float* y = static_cast<const float*>(d->data);
    for (int i = 0; i < 16; ++i) CHECK(y[i] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0)) + 2.0));
}

TEST_CASE("plan: buffers are reused along a chain, views extend their source's life") {
    const int64_t n = 1000;
    std::vector<float> xs(n);
    for (int64_t i = 0; i < n; ++i) xs[size_t(i)] = float(i % 7) - 3.0f;
    Graph g;
    Tensor* x = g.external(Type::f32, {n}, xs.data(), "x");
    // the chain starts from a view of `early`, read again at the very end: the view keeps the
    // buffer of `early` alive across the chain
    Tensor* early = g.scale(x, 0.5f);
    Tensor* early_view = g.reshape(early, {10, 100});
    Tensor* y = early_view;  // the view is placed early, its last reader comes late
    const int steps = 12;
    for (int s = 0; s < steps; ++s) y = g.scale(y, 2.0f);
    Tensor* z = y;
    for (int s = 0; s < 4; ++s) z = g.scale(z, 1.0f);
    Tensor* out = g.add(z, early_view);
    g.output(out);
    g.plan(2);
    const uint64_t buf = (n * 4 + 63) / 64 * 64;
    MESSAGE("arena " << g.arena_bytes() << " bytes vs " << g.buffer_bytes_sum() << " bytes of buffers");
    CHECK(g.buffer_bytes_sum() == uint64_t(steps + 4 + 2) * buf);
    CHECK(g.arena_bytes() < g.buffer_bytes_sum());
    CHECK(g.arena_bytes() <= 4 * buf);
    ThreadPool pool(2);
    for (int rep = 0; rep < 2; ++rep) {
        std::memset(out->data, 0xff, n * 4);
        g.compute(pool);
        const float* o = static_cast<const float*>(out->data);
        int wrong = 0;
        for (int64_t i = 0; i < n; ++i) wrong += o[i] != xs[size_t(i)] * 2048.0f + xs[size_t(i)] * 0.5f;
        CHECK(wrong == 0);
    }
}

TEST_CASE("plan: a chain of non-elementwise ops through reused buffers matches a naive forward") {
    // z = W2 softmax(W1 x) + x, then argmax; x [9, 3], W1 [9 -> 11], W2 [11 -> 9]
    const int64_t K = 9, H = 11, M = 3;
    Rng r{5};
    std::vector<float> x(K * M), w1(K * H), w2(H * K);
    for (auto* v : {&x, &w1, &w2})
        for (auto& e : *v) e = r.normal();
    Graph g;
    Tensor* X = g.external(Type::f32, {K, M}, x.data(), "x");
    Tensor* h = g.mul_mat(g.external(Type::f32, {K, H}, w1.data(), "w1"), X);
    Tensor* s = g.softmax(g.scale(h, 0.5f), nullptr, 1.0f);
    Tensor* z = g.add(g.mul_mat(g.external(Type::f32, {H, K}, w2.data(), "w2"), s), X);
    Tensor* out = g.rms_norm(z, 1e-6f);
    g.output(out);
    g.plan(2);
    CHECK(g.arena_bytes() < g.buffer_bytes_sum());
    ThreadPool pool(2);
    std::memset(out->data, 0xff, size_t(out->nbytes()));
    g.compute(pool);
    const float* o = static_cast<const float*>(out->data);
    for (int64_t j = 0; j < M; ++j) {
        double hv[H], sv[H], zv[K], mx = -1e300, sum = 0, ss = 0;
        for (int64_t a = 0; a < H; ++a) {
            hv[a] = 0;
            for (int64_t i = 0; i < K; ++i) hv[a] += double(w1[a * K + i]) * x[j * K + i];
            mx = std::max(mx, 0.5 * hv[a]);
        }
        for (int64_t a = 0; a < H; ++a) sum += sv[a] = std::exp(0.5 * hv[a] - mx);
        for (int64_t a = 0; a < H; ++a) sv[a] /= sum;
        for (int64_t b = 0; b < K; ++b) {
            zv[b] = x[j * K + b];
            for (int64_t a = 0; a < H; ++a) zv[b] += double(w2[b * H + a]) * sv[a];
            ss += zv[b] * zv[b];
        }
        for (int64_t b = 0; b < K; ++b)
            CHECK(o[j * K + b] == doctest::Approx(zv[b] / std::sqrt(ss / K + 1e-6)).epsilon(1e-5));
    }
}

TEST_CASE("plan: decode projections of one input run as one job, with the results of running them alone") {
    // a = W1 x, then an op on a, then W2 x and W3 x (the q, k, v pattern: k's rope and cache
    // write come between the projections in topological order); a GEMM is never grouped
    const int64_t K = 96, N1 = 40, N2 = 24, N3 = 33;
    const Preset& q2 = *find_preset("q2_g32");
    const Preset& b1 = *find_preset("b1_sign");
    const QParams p1 = preset_params(q2, N1, K), p2 = preset_params(q2, N2, K), p3 = preset_params(b1, N3, K);
    const std::vector<uint8_t> w1 = random_weight(q2.type, p1, N1, K, 1), w2 = random_weight(q2.type, p2, N2, K, 2),
                               w3 = random_weight(b1.type, p3, N3, K, 3);
    for (int64_t ncols : {1, 2}) {
        CAPTURE(ncols);
        std::vector<float> x(size_t(K * ncols));
        Rng r{7};
        for (float& v : x) v = r.normal();
        Graph g;
        Tensor* X = g.external(Type::f32, {K, ncols}, x.data(), "x");
        Tensor* W1 = g.weight("w1", q2.type, p1, N1, K, w1.data());
        Tensor* a = g.mul_mat(W1, X);
        Tensor* b = g.scale(a, 2.0f);
        Tensor* c = g.mul_mat(g.weight("w2", q2.type, p2, N2, K, w2.data()), X);
        Tensor* d = g.mul_mat(g.weight("w3", b1.type, p3, N3, K, w3.data()), X);
        for (Tensor* t : {b, c, d}) g.output(t);
        g.plan(2);
        size_t pa = 0, pb = 0, pc = 0, pd = 0;
        for (size_t i = 0; i < g.order().size(); ++i) {
            const Tensor* t = g.order()[i];
            pa = t == a ? i : pa, pb = t == b ? i : pb, pc = t == c ? i : pc, pd = t == d ? i : pd;
        }
        // the topological order alone puts b right after a; the group puts c and d (and their
        // weights) there first
        CHECK((ncols == 1) == (pa < pc && pc < pb && pd < pb && pa < pd));
        ThreadPool pool(2);
        g.compute(pool);
        const CpuKernels& kern = kernels_best();
        for (auto [t, blob, type, p, n] : {std::tuple{c, &w2, q2.type, p2, N2}, std::tuple{d, &w3, b1.type, p3, N3},
                                           std::tuple{a, &w1, q2.type, p1, N1}}) {
            std::vector<float> want(size_t(n * ncols));
            matmul_simple(make_view(type, p, uint64_t(n), uint64_t(K), blob->data()), kern, x.data(), uint64_t(ncols),
                          want.data());
            const float* got = static_cast<const float*>(t == a ? b->data : t->data);
            int bad = 0;
            for (size_t i = 0; i < want.size(); ++i) bad += got[i] != (t == a ? 2.0f * want[i] : want[i]);
            CHECK(bad == 0);
        }
    }
}

TEST_CASE("plan: a cpy into a cache runs before later readers of that cache") {
    // cache f16 [4, 6]; write rows 2..3 and read the whole cache in the same graph
    std::vector<uint16_t> cache(24, f32_to_f16(1.0f));
    std::vector<float> knew = {1, 2, 3, 4, 5, 6, 7, 8};
    std::vector<float> q = {1, 1, 1, 1};
    Graph g;
    Tensor* c = g.external(Type::f16, {4, 6}, cache.data(), "cache");
    Tensor* k = g.external(Type::f32, {4, 2}, knew.data(), "knew");
    Tensor* qq = g.external(Type::f32, {4, 1}, q.data(), "q");
    Tensor* all = g.view(c, {4, 6}, {8}, 0);  // built before the cpy, read after it
    g.cpy(k, g.view(c, {4, 2}, {8}, 2 * 8));
    Tensor* s = g.mul_mat(all, qq);  // [6, 1]: row sums of the cache
    g.output(s);
    g.plan(1);
    ThreadPool pool(1);
    g.compute(pool);
    const float* y = static_cast<const float*>(s->data);
    CHECK(y[0] == 4.0f);
    CHECK(y[1] == 4.0f);
    CHECK(y[2] == 10.0f);
    CHECK(y[3] == 26.0f);
    CHECK(y[5] == 4.0f);
}

TEST_CASE("plan/compute: errors") {
    std::vector<float> xs(4);
    Graph g;
    Tensor* x = g.external(Type::f32, {4}, xs.data(), "x");
    Tensor* y = g.silu(x);
    g.output(y);
    ThreadPool pool(2);
    CHECK_THROWS_AS(g.compute(pool), Error);
    g.plan(1);
    CHECK_THROWS_AS(g.compute(pool), Error);  // more threads than planned for
    CHECK_THROWS_AS(g.add(x, g.external(Type::f32, {5}, xs.data(), "x5")), Error);
    CHECK_THROWS_AS(g.mul_mat(x, g.external(Type::f32, {5}, xs.data(), "x5b")), Error);
    CHECK_THROWS_AS(g.rope(x, x, 4, rope_neox, 1e4f), Error);
}

// ---- a decode step: allocation-free and thread-count independent -----------------------------
// One LLaMA-like layer at batch 1 with a KV cache: embedding, norm, quantized and f16
// projections, rope, cache write, masked attention, SwiGLU, residual, argmax.
struct DecodeStep {
    static constexpr int64_t D = 64, H = 4, Dh = 16, Hkv = 2, S = 12, F = 96, V = 50;
    std::vector<uint16_t> emb, kcache, vcache, wv16;
    std::vector<float> norm_w, wo;
    std::vector<uint8_t> wq_blob, wk_blob, wup_blob, wgate_blob, wdown_blob;
    Graph g;
    Tensor *tok, *pos, *logits_arg, *hidden;

    explicit DecodeStep(int64_t p) {
        Rng r{42};
        auto rnd16 = [&](size_t n) {
            std::vector<uint16_t> v(n);
            for (auto& x : v) x = f32_to_f16(r.normal() * 0.3f);
            return v;
        };
        emb = rnd16(size_t(V * D));
        kcache = rnd16(size_t(S * Hkv * Dh));
        vcache = rnd16(size_t(S * Hkv * Dh));
        wv16 = rnd16(size_t(Hkv * Dh * D));
        norm_w.resize(D);
        for (auto& x : norm_w) x = 1.0f + 0.1f * r.normal();
        wo.resize(size_t(D * H * Dh));
        for (auto& x : wo) x = 0.1f * r.normal();
        const Preset& q4 = *find_preset("q4_g32_f16");
        const Preset& q2 = *find_preset("q2_g16_hqq");
        const QParams pq = preset_params(q4, H * Dh, D), pk = preset_params(q4, Hkv * Dh, D);
        const QParams pu = preset_params(q2, F, D), pd = preset_params(q4, D, F);
        wq_blob = random_weight(q4.type, pq, H * Dh, D, 1);
        wk_blob = random_weight(q4.type, pk, Hkv * Dh, D, 2);
        wup_blob = random_weight(q2.type, pu, F, D, 3);
        wgate_blob = random_weight(q2.type, pu, F, D, 4);
        wdown_blob = random_weight(q4.type, pd, D, F, 5);

        tok = g.input(Type::i32, {1}, "tok");
        pos = g.input(Type::i32, {1}, "pos");
        Tensor* E = g.external(Type::f16, {D, V}, emb.data(), "emb");
        Tensor* Kc = g.external(Type::f16, {Dh, Hkv, S}, kcache.data(), "kcache");
        Tensor* Vc = g.external(Type::f16, {Dh, Hkv, S}, vcache.data(), "vcache");
        Tensor* x = g.get_rows(E, tok);  // [D, 1]
        Tensor* h = g.mul(g.rms_norm(x, 1e-5f), g.external(Type::f32, {D}, norm_w.data(), "norm"));
        Tensor* q = g.mul_mat(g.weight("wq", q4.type, pq, H * Dh, D, wq_blob.data()), h);
        Tensor* k = g.mul_mat(g.weight("wk", q4.type, pk, Hkv * Dh, D, wk_blob.data()), h);
        Tensor* v = g.mul_mat(g.external(Type::f16, {D, Hkv * Dh}, wv16.data(), "wv"), h);
        q = g.rope(g.reshape(q, {Dh, H, 1}), pos, Dh, rope_neox, 10000.0f);
        k = g.rope(g.reshape(k, {Dh, Hkv, 1}), pos, Dh, rope_neox, 10000.0f);
        // write this token's k, v at row p of the caches
        const uint64_t row = uint64_t(Hkv * Dh * 2);
        g.cpy(k, g.view(Kc, {Dh, Hkv, 1}, {Dh * 2, row}, uint64_t(p) * row));
        g.cpy(g.reshape(v, {Dh, Hkv, 1}), g.view(Vc, {Dh, Hkv, 1}, {Dh * 2, row}, uint64_t(p) * row));
        // attention over the whole cache (masked by position): K as [Dh, S, Hkv], q as [Dh, 1, H]
        Tensor* Kv = g.permute(Kc, 0, 2, 1, 3);
        Tensor* qh = g.permute(q, 0, 2, 1, 3);
        Tensor* sc = g.softmax(g.mul_mat(Kv, qh), pos, 0.25f);  // [S, 1, H]
        Tensor* Vt = g.cont(g.permute(Vc, 1, 2, 0, 3));         // [S, Dh, Hkv]
        Tensor* att = g.mul_mat(Vt, sc);                        // [Dh, 1, H]
        Tensor* o = g.mul_mat(g.external(Type::f32, {H * Dh, D}, wo.data(), "wo"), g.reshape(att, {H * Dh, 1}));
        Tensor* x2 = g.add(x, o);
        Tensor* up = g.mul_mat(g.weight("wup", q2.type, pu, F, D, wup_blob.data()), x2);
        Tensor* gate = g.mul_mat(g.weight("wgate", q2.type, pu, F, D, wgate_blob.data()), x2);
        Tensor* dn = g.mul_mat(g.weight("wdown", q4.type, pd, D, F, wdown_blob.data()), g.swiglu(gate, up));
        hidden = g.add(x2, dn);
        Tensor* logits = g.mul_mat(E, hidden);  // tied embeddings: [V, 1]
        logits_arg = g.argmax(logits);
        g.output(hidden);
        g.output(logits_arg);
        g.plan(3);
        static_cast<int32_t*>(tok->data)[0] = 7;
        static_cast<int32_t*>(pos->data)[0] = int32_t(p);
    }
};

TEST_CASE("compute: a planned decode step allocates nothing, results independent of threads") {
    std::vector<float> ref;
    std::vector<uint16_t> ref_cache;
    int32_t ref_arg = -1;
    for (int nt : {1, 2, 3}) {
        DecodeStep st(5);
        ThreadPool pool(nt);
        std::memset(st.hidden->data, 0xff, DecodeStep::D * 4);
        st.g.compute(pool);
        const long before = allocations();
        std::memset(st.hidden->data, 0xff, DecodeStep::D * 4);
        st.g.compute(pool);
        const long after = allocations();
        CHECK_MESSAGE(after == before, "threads " << nt << ": " << (after - before) << " allocations");
        const float* h = static_cast<const float*>(st.hidden->data);
        std::vector<float> got(h, h + DecodeStep::D);
        for (float v : got) REQUIRE(std::isfinite(v));
        const int32_t arg = static_cast<int32_t*>(st.logits_arg->data)[0];
        CHECK(arg >= 0);
        CHECK(arg < DecodeStep::V);
        if (ref.empty()) {
            ref = got;
            ref_cache = st.kcache;
            ref_arg = arg;
        } else {
            CHECK(std::memcmp(ref.data(), got.data(), got.size() * 4) == 0);
            CHECK(ref_cache == st.kcache);
            CHECK(ref_arg == arg);
        }
        MESSAGE("decode step: " << st.g.order().size() << " nodes, arena " << st.g.arena_bytes() << " of "
                                << st.g.buffer_bytes_sum() << " bytes of buffers, scratch " << st.g.work_bytes());
    }
}
