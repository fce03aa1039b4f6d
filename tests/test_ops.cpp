// test_ops.cpp: every graph op (core/ops.h) on the CPU against a naive implementation written
// here (double precision where useful), on random data with odd shapes. Each graph runs with
// 1, 2 and 3 threads, outputs pre-filled with NaN; the three results must be bitwise equal.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/matmul.h"
#include "core/error.h"
#include "core/graph.h"
#include "core/half.h"
#include "core/random_weights.h"

using namespace lb;

namespace {

ThreadPool& pool(int n) {
    static ThreadPool p1(1), p2(2), p3(3);
    return n == 1 ? p1 : n == 2 ? p2 : p3;
}

// Builds the graph with `build` (returns its output), runs it with 1, 2, 3 threads and returns
// the output as floats (f32, f16 and bf16 outputs converted; i32 outputs as values).
std::vector<float> run3(const std::function<Tensor*(Graph&)>& build) {
    std::vector<uint8_t> first;
    Type type = Type::f32;
    for (int nt = 1; nt <= 3; ++nt) {
        Graph g;
        Tensor* out = build(g);
        g.output(out);
        g.plan(3);
        REQUIRE(out->is_contiguous());
        const size_t nbytes = size_t(out->nbytes());
        std::memset(out->data, 0xff, nbytes);  // NaN in every float type, -1 as i32
        g.compute(pool(nt));
        std::vector<uint8_t> got(static_cast<uint8_t*>(out->data), static_cast<uint8_t*>(out->data) + nbytes);
        if (nt == 1) {
            first = got;
            type = out->type;
        } else {
            CHECK_MESSAGE(got == first, "threads " << nt << " differ from 1 thread");
        }
    }
    const size_t es = size_t(type_size(type)), n = first.size() / es;
    std::vector<float> r(n);
    for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        int32_t v;
        if (type == Type::f32) std::memcpy(&r[i], &first[4 * i], 4);
        if (type == Type::i32) std::memcpy(&v, &first[4 * i], 4), r[i] = float(v);
        if (es == 2) std::memcpy(&h, &first[2 * i], 2), r[i] = type == Type::f16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    return r;
}

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
    Rng r{seed};
    std::vector<float> v(n);
    for (auto& x : v) x = r.normal() * scale;
    return v;
}

std::vector<uint16_t> to16(const std::vector<float>& v, Type t) {
    std::vector<uint16_t> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = t == Type::f16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
    return r;
}
float from16(uint16_t h, Type t) { return t == Type::f16 ? f16_to_f32(h) : bf16_to_f32(h); }

// |got - want| <= atol + rtol * |want| everywhere (NaN fails)
void check_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol) {
    REQUIRE(got.size() == want.size());
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const bool ok = std::fabs(double(got[i]) - want[i]) <= atol + rtol * std::fabs(want[i]);
        if (!ok && bad++ == 0) first = i;
    }
    CHECK_MESSAGE(bad == 0, bad << " of " << got.size() << " differ; first at " << first << ": " << got[first] << " vs "
                                << want[first]);
}

struct Shape2 {
    int64_t k, n;
};
const Shape2 kShapes[] = {{13, 7}, {1, 1}, {65, 33}, {64, 3}};

}  // namespace

// ---- get_rows ---------------------------------------------------------------------------------
TEST_CASE("get_rows: f32, f16 and bf16 tables") {
    for (const Shape2& s : kShapes) {
        const std::vector<float> tab = randn(size_t(s.k * s.n), 1);
        std::vector<int32_t> ids = {int32_t(s.n - 1), 0, int32_t(s.n / 2), int32_t(s.n - 1), 0, int32_t(s.n / 3)};
        for (Type t : {Type::f32, Type::f16, Type::bf16}) {
            CAPTURE(s.k);
            CAPTURE(type_name(t));
            std::vector<uint16_t> t16 = to16(tab, t);
            void* data = t == Type::f32 ? const_cast<float*>(tab.data()) : static_cast<void*>(t16.data());
            const auto got = run3([&](Graph& g) {
                Tensor* T = g.external(t, {s.k, s.n}, data, "table");
                return g.get_rows(T, g.external(Type::i32, {3, 2}, ids.data(), "ids"));  // 2-D ids
            });
            std::vector<double> want;
            for (int32_t id : ids)
                for (int64_t j = 0; j < s.k; ++j) {
                    const size_t at = size_t(id * s.k + j);
                    want.push_back(t == Type::f32 ? tab[at] : from16(t16[at], t));
                }
            check_close(got, want, 0, 0);
        }
    }
}

TEST_CASE("get_rows: quantized tables equal dequant_row_ref, also through a row view") {
    for (const char* name : {"q4_g32_f16", "q2_g16_hqq", "q1_g8_a0", "b1_sign"}) {
        CAPTURE(name);
        const Preset& pr = *find_preset(name);
        const uint64_t n = 16, k = 64;
        const QParams qp = preset_params(pr, n, k);
        // random bytes (as the brief asks) for the codes and raw fields; compare bit for bit
        std::vector<uint8_t> blob(tensor_nbytes(pr.type, qp, n, k));
        Rng r{7};
        for (auto& b : blob) b = uint8_t(r.next());
        const WeightView wv = make_view(pr.type, qp, n, k, blob.data());
        std::vector<int32_t> ids = {15, 0, 7, 7, 3};
        const auto got = run3([&](Graph& g) {
            return g.get_rows(g.weight("w", pr.type, qp, n, k, blob.data()),
                              g.external(Type::i32, {5}, ids.data(), "ids"));
        });
        std::vector<float> want(k * ids.size());
        for (size_t i = 0; i < ids.size(); ++i) dequant_row_ref(wv, uint64_t(ids[i]), &want[i * k]);
        CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
        // rows 4..11 of the weight as a view: id j is weight row 4 + j
        std::vector<int32_t> vids = {0, 7, 3};
        const auto gv = run3([&](Graph& g) {
            Tensor* w = g.weight("w", pr.type, qp, n, k, blob.data());
            Tensor* v = g.view(w, {int64_t(k), 8}, {w->nb[1]}, 4 * w->nb[1]);
            return g.get_rows(v, g.external(Type::i32, {3}, vids.data(), "ids"));
        });
        std::vector<float> wantv(k * 3);
        for (size_t i = 0; i < 3; ++i) dequant_row_ref(wv, 4 + uint64_t(vids[i]), &wantv[i * k]);
        CHECK(std::memcmp(gv.data(), wantv.data(), wantv.size() * 4) == 0);
    }
}

// ---- norms ------------------------------------------------------------------------------------
TEST_CASE("rms_norm and layer_norm, contiguous and row-strided inputs") {
    for (const Shape2& s : kShapes) {
        CAPTURE(s.k);
        CAPTURE(s.n);
        // the input is a view: rows of k inside rows of k + 3 (strided rows)
        const int64_t ld = s.k + 3;
        const std::vector<float> x = randn(size_t(ld * s.n), 2, 3.0f);
        for (bool layer : {false, true}) {
            const float eps = 1e-5f;
            const auto got = run3([&](Graph& g) {
                Tensor* X = g.external(Type::f32, {ld, s.n}, const_cast<float*>(x.data()), "x");
                Tensor* v = g.view(X, {s.k, s.n}, {uint64_t(ld) * 4}, 4);
                return layer ? g.layer_norm(v, eps) : g.rms_norm(v, eps);
            });
            std::vector<double> want;
            for (int64_t r = 0; r < s.n; ++r) {
                const float* row = &x[size_t(r * ld + 1)];
                double mean = 0, ss = 0;
                if (layer) {
                    for (int64_t i = 0; i < s.k; ++i) mean += row[i];
                    mean /= double(s.k);
                }
                for (int64_t i = 0; i < s.k; ++i) ss += (row[i] - mean) * (row[i] - mean);
                const double inv = 1.0 / std::sqrt(ss / double(s.k) + eps);
                for (int64_t i = 0; i < s.k; ++i) want.push_back((row[i] - mean) * inv);
            }
            check_close(got, want, 1e-5, 1e-5);
        }
    }
}

// ---- elementwise ------------------------------------------------------------------------------
TEST_CASE("add and mul: same shape, a broadcast row, f16 and bf16 operands") {
    const int64_t k = 13, n = 7, b = 3;
    const std::vector<float> a = randn(size_t(k * n * b), 3), full = randn(size_t(k * n * b), 4),
                             row = randn(size_t(k), 5), per_mat = randn(size_t(k * b), 6);
    struct Case {
        const std::vector<float>* v;
        int64_t ne1, ne2;
    };
    for (const Case& c : {Case{&full, n, b}, Case{&row, 1, 1}, Case{&per_mat, 1, b}})
        for (Type bt : {Type::f32, Type::f16, Type::bf16})
            for (bool mul : {false, true}) {
                CAPTURE(c.ne1);
                CAPTURE(c.ne2);
                CAPTURE(type_name(bt));
                std::vector<uint16_t> b16 = to16(*c.v, bt);
                void* bd = bt == Type::f32 ? const_cast<float*>(c.v->data()) : static_cast<void*>(b16.data());
                const auto got = run3([&](Graph& g) {
                    Tensor* A = g.external(Type::f32, {k, n, b}, const_cast<float*>(a.data()), "a");
                    Tensor* B = g.external(bt, {k, c.ne1, c.ne2}, bd, "b");
                    return mul ? g.mul(A, B) : g.add(A, B);
                });
                std::vector<double> want;
                for (int64_t i2 = 0; i2 < b; ++i2)
                    for (int64_t i1 = 0; i1 < n; ++i1)
                        for (int64_t i0 = 0; i0 < k; ++i0) {
                            const size_t bi = size_t(((i2 % c.ne2) * c.ne1 + (i1 % c.ne1)) * k + i0);
                            const float bv = bt == Type::f32 ? (*c.v)[bi] : from16(b16[bi], bt);
                            const float av = a[size_t((i2 * n + i1) * k + i0)];
                            want.push_back(mul ? double(av * bv) : double(av + bv));
                        }
                check_close(got, want, 0, 0);
            }
}

TEST_CASE("scale, silu and swiglu") {
    for (const Shape2& s : kShapes) {
        const std::vector<float> a = randn(size_t(s.k * s.n), 8, 4.0f), b = randn(size_t(s.k * s.n), 9);
        auto silu = [](double x) { return x / (1.0 + std::exp(-x)); };
        std::vector<double> ws, wsi, wsw;
        for (size_t i = 0; i < a.size(); ++i) {
            ws.push_back(double(a[i] * -0.37f));
            wsi.push_back(silu(a[i]));
            wsw.push_back(silu(a[i]) * b[i]);
        }
        auto A = [&](Graph& g) { return g.external(Type::f32, {s.k, s.n}, const_cast<float*>(a.data()), "a"); };
        check_close(run3([&](Graph& g) { return g.scale(A(g), -0.37f); }), ws, 0, 0);
        check_close(run3([&](Graph& g) { return g.silu(A(g)); }), wsi, 1e-6, 1e-7);
        check_close(run3([&](Graph& g) {
                        return g.swiglu(A(g), g.external(Type::f32, {s.k, s.n}, const_cast<float*>(b.data()), "b"));
                    }),
                    wsw, 1e-6, 1e-7);
    }
}

// ---- mul_mat ----------------------------------------------------------------------------------
TEST_CASE("mul_mat: f32, f16, bf16 weights, batch 1 and n, strided weight rows") {
    for (const Shape2& s : kShapes)
        for (int64_t m : {1, 5})
            for (Type t : {Type::f32, Type::f16, Type::bf16}) {
                CAPTURE(s.k);
                CAPTURE(s.n);
                CAPTURE(m);
                CAPTURE(type_name(t));
                const int64_t ld = s.k + 2;  // weight rows inside a wider buffer
                const std::vector<float> w = randn(size_t(ld * s.n), 10), x = randn(size_t(s.k * m), 11);
                std::vector<uint16_t> w16 = to16(w, t);
                void* wd = t == Type::f32 ? const_cast<float*>(w.data()) : static_cast<void*>(w16.data());
                const uint64_t es = type_size(t);
                const auto got = run3([&](Graph& g) {
                    Tensor* W = g.external(t, {ld, s.n}, wd, "w");
                    Tensor* Wv = g.view(W, {s.k, s.n}, {uint64_t(ld) * es}, 0);
                    return g.mul_mat(Wv, g.external(Type::f32, {s.k, m}, const_cast<float*>(x.data()), "x"));
                });
                std::vector<double> want;
                double scale = 0;
                for (int64_t j = 0; j < m; ++j)
                    for (int64_t o = 0; o < s.n; ++o) {
                        double acc = 0;
                        for (int64_t i = 0; i < s.k; ++i) {
                            const size_t wi = size_t(o * ld + i);
                            acc += double(t == Type::f32 ? w[wi] : from16(w16[wi], t)) * x[size_t(j * s.k + i)];
                        }
                        want.push_back(acc);
                        scale = std::max(scale, std::fabs(acc));
                    }
                check_close(got, want, 1e-5, 1e-5 * (1 + scale));
            }
}

TEST_CASE("mul_mat: batched, weights broadcast over batches (grouped-query attention)") {
    // w [K, N, A2, A3] = [K, 5, 2, 1], x [K, M, 4, 2] -> y [5, M, 4, 2]; x batch b2 uses w batch b2 / 2.
    // M = 1 is a decode step (the heads sharing a row go through one kernel call); K = 64 and 70
    // cover whole vectors and tails.
    // heads_inner: w is a view whose batch rows are the nearer ones in memory (a K cache: the
    // heads of one position are adjacent), element (i, o, a2) at (o * A2 + a2) * K + i
    for (bool heads_inner : {false, true})
        for (int64_t K : {16, 64, 70})
            for (int64_t M : {1, 3}) {
                CAPTURE(heads_inner);
                CAPTURE(K);
                CAPTURE(M);
                const int64_t N = 5, A2 = 2, B2 = 4, B3 = 2;
                const std::vector<float> w = randn(size_t(K * N * A2), 12), x = randn(size_t(K * M * B2 * B3), 13);
                std::vector<uint16_t> w16 = to16(w, Type::f16);
                const auto got = run3([&](Graph& g) {
                    Tensor* W = g.external(Type::f16, {K, N, A2}, w16.data(), "w");
                    if (heads_inner) W = g.view(W, {K, N, A2}, {uint64_t(2 * K * A2), uint64_t(2 * K)}, 0);
                    return g.mul_mat(W, g.external(Type::f32, {K, M, B2, B3}, const_cast<float*>(x.data()), "x"));
                });
                std::vector<double> want;
                for (int64_t b3 = 0; b3 < B3; ++b3)
                    for (int64_t b2 = 0; b2 < B2; ++b2)
                        for (int64_t j = 0; j < M; ++j)
                            for (int64_t o = 0; o < N; ++o) {
                                double acc = 0;
                                const int64_t a2 = b2 / (B2 / A2);
                                for (int64_t i = 0; i < K; ++i)
                                    acc +=
                                        double(f16_to_f32(
                                            w16[size_t(heads_inner ? (o * A2 + a2) * K + i : (a2 * N + o) * K + i)])) *
                                        x[size_t(((b3 * B2 + b2) * M + j) * K + i)];
                                want.push_back(acc);
                            }
                check_close(got, want, 1e-5, 1e-5 * double(K));
            }
}

TEST_CASE("mul_mat: quantized weights equal the matmul driver and are close to gemm_ref") {
    const uint64_t n = 64, k = 128;
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    for (size_t pi = 0; pi < np; ++pi) {
        const Preset& pr = presets[pi];
        CAPTURE(pr.name);
        const QParams qp = preset_params(pr, n, k);
        const std::vector<uint8_t> blob = random_weight(pr.type, qp, n, k, 100 + pi);
        const WeightView wv = make_view(pr.type, qp, n, k, blob.data());
        for (uint64_t m : {1ull, 3ull}) {
            const std::vector<float> x = randn(k * m, 14);
            const auto got = run3([&](Graph& g) {
                return g.mul_mat(g.weight("w", pr.type, qp, n, k, blob.data()),
                                 g.external(Type::f32, {int64_t(k), int64_t(m)}, const_cast<float*>(x.data()), "x"));
            });
            std::vector<float> drv(n * m), ref(n * m);
            matmul_simple(wv, kernels_best(), x.data(), m, drv.data());
            CHECK(std::memcmp(got.data(), drv.data(), drv.size() * 4) == 0);
            gemm_ref(wv, x.data(), m, ref.data());
            // int8 activations: error bounded by a small fraction of sum |w x|
            std::vector<float> row(k);
            size_t bad = 0;
            for (uint64_t o = 0; o < n; ++o) {
                dequant_row_ref(wv, o, row.data());
                for (uint64_t j = 0; j < m; ++j) {
                    double l1 = 0;
                    for (uint64_t i = 0; i < k; ++i) l1 += std::fabs(double(row[i]) * x[j * k + i]);
                    bad += !(std::fabs(double(got[j * n + o]) - ref[j * n + o]) <= 0.02 * l1 + 1e-6);
                }
            }
            CHECK(bad == 0);
        }
        // a row view of the weight takes the float path: rows 8..39
        const std::vector<float> x = randn(k * 2, 15);
        const auto gv = run3([&](Graph& g) {
            Tensor* w = g.weight("w", pr.type, qp, n, k, blob.data());
            return g.mul_mat(g.view(w, {int64_t(k), 32}, {w->nb[1]}, 8 * w->nb[1]),
                             g.external(Type::f32, {int64_t(k), 2}, const_cast<float*>(x.data()), "x"));
        });
        std::vector<float> ref(n * 2);
        gemm_ref(wv, x.data(), 2, ref.data());
        std::vector<double> want;
        for (uint64_t j = 0; j < 2; ++j)
            for (uint64_t o = 8; o < 40; ++o) want.push_back(ref[j * n + o]);
        check_close(gv, want, 1e-4, 1e-4);
    }
}

// ---- rope -------------------------------------------------------------------------------------
// direct formula: pair i rotated by pos * fscale * theta^(-2i / n_dims)
static std::vector<double> rope_naive(const std::vector<float>& x, int64_t D, int64_t H, int64_t T,
                                      const std::vector<int32_t>& pos, int nd, bool neox, double theta, double fs) {
    std::vector<double> y(x.begin(), x.end());
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
            const size_t base = size_t((t * H + h) * D);
            for (int i = 0; i < nd / 2; ++i) {
                const double ang = pos[size_t(t)] * fs * std::pow(theta, -2.0 * i / nd);
                const size_t i0 = base + size_t(neox ? i : 2 * i), i1 = base + size_t(neox ? i + nd / 2 : 2 * i + 1);
                y[i0] = x[i0] * std::cos(ang) - x[i1] * std::sin(ang);
                y[i1] = x[i1] * std::cos(ang) + x[i0] * std::sin(ang);
            }
        }
    return y;
}

TEST_CASE("rope: rotate-half (neox) and interleaved against the formula; they differ") {
    struct Case {
        int64_t D, H;
        int nd;
        float theta, fs;
    };
    const std::vector<int32_t> pos = {0, 1, 7, 100, 3};
    const int64_t T = 5;
    for (const Case& c :
         {Case{16, 3, 16, 10000.0f, 1.0f}, Case{12, 2, 8, 500000.0f, 0.5f}, Case{2, 1, 2, 10.0f, 1.0f}}) {
        CAPTURE(c.D);
        CAPTURE(c.nd);
        const std::vector<float> x = randn(size_t(c.D * c.H * T), 16);
        // the same data laid out [D, T, H] and permuted to [D, H, T] (a strided input)
        std::vector<float> xp(x.size());
        for (int64_t t = 0; t < T; ++t)
            for (int64_t h = 0; h < c.H; ++h)
                for (int64_t i = 0; i < c.D; ++i)
                    xp[size_t((h * T + t) * c.D + i)] = x[size_t((t * c.H + h) * c.D + i)];
        std::vector<float> res[2];
        for (int mode = 0; mode < 2; ++mode) {
            const bool neox = mode == rope_neox;
            auto P = [&](Graph& g) { return g.external(Type::i32, {T}, const_cast<int32_t*>(pos.data()), "pos"); };
            res[mode] = run3([&](Graph& g) {
                return g.rope(g.external(Type::f32, {c.D, c.H, T}, const_cast<float*>(x.data()), "x"), P(g), c.nd,
                              RopeMode(mode), c.theta, c.fs);
            });
            const auto want = rope_naive(x, c.D, c.H, T, pos, c.nd, neox, c.theta, c.fs);
            check_close(res[mode], want, 1e-4, 1e-4);
            const auto gp = run3([&](Graph& g) {
                Tensor* X = g.external(Type::f32, {c.D, T, c.H}, xp.data(), "xp");
                return g.rope(g.permute(X, 0, 2, 1, 3), P(g), c.nd, RopeMode(mode), c.theta, c.fs);
            });
            CHECK(gp == res[mode]);
        }
        if (c.nd > 2) CHECK(res[0] != res[1]);
    }
}

// ---- softmax ----------------------------------------------------------------------------------
TEST_CASE("softmax: scale, causal mask by position, kv longer than the queries") {
    const int64_t nkv = 9, nq = 4, H = 2;
    const std::vector<float> a = randn(size_t(nkv * nq * H), 17, 3.0f);
    const std::vector<int32_t> pos = {5, 6, 8, -1};  // decode-style positions; -1 sees nothing
    for (bool masked : {false, true})
        for (float sc : {1.0f, 0.125f}) {
            const auto got = run3([&](Graph& g) {
                Tensor* A = g.external(Type::f32, {nkv, nq, H}, const_cast<float*>(a.data()), "a");
                return g.softmax(
                    A, masked ? g.external(Type::i32, {nq}, const_cast<int32_t*>(pos.data()), "pos") : nullptr, sc);
            });
            std::vector<double> want;
            for (int64_t r = 0; r < nq * H; ++r) {
                const int64_t vis =
                    masked ? std::max<int64_t>(0, std::min<int64_t>(nkv, pos[size_t(r % nq)] + 1)) : nkv;
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j < vis; ++j) mx = std::max(mx, double(sc) * a[size_t(r * nkv + j)]);
                for (int64_t j = 0; j < vis; ++j) sum += std::exp(double(sc) * a[size_t(r * nkv + j)] - mx);
                for (int64_t j = 0; j < nkv; ++j)
                    want.push_back(j < vis ? std::exp(double(sc) * a[size_t(r * nkv + j)] - mx) / sum : 0.0);
            }
            check_close(got, want, 1e-5, 1e-7);
        }
}

// ---- copies and views -------------------------------------------------------------------------
TEST_CASE("cpy: f32 into an f16 KV-cache view at an offset, other entries untouched") {
    const int64_t Dh = 8, Hkv = 2, S = 10, T = 3, p0 = 4;
    const std::vector<float> k = randn(size_t(Dh * Hkv * T), 18);
    for (Type ct : {Type::f16, Type::bf16, Type::f32})
        for (int nt = 1; nt <= 3; ++nt) {
            CAPTURE(type_name(ct));
            const uint64_t es = type_size(ct);
            std::vector<uint8_t> cache(size_t(Dh * Hkv * S) * es, 0xAB);
            Graph g;
            Tensor* C = g.external(ct, {Dh, Hkv, S}, cache.data(), "cache");
            // k arrives as [Dh * Hkv, T] and goes to rows p0..p0+T of the [Dh, Hkv, S] cache (other shape)
            Tensor* K = g.external(Type::f32, {Dh * Hkv, T}, const_cast<float*>(k.data()), "k");
            const uint64_t row = uint64_t(Dh * Hkv) * es;
            g.cpy(K, g.view(C, {Dh, Hkv, T}, {uint64_t(Dh) * es, row}, uint64_t(p0) * row));
            g.plan(3);
            g.compute(pool(nt));
            size_t bad = 0;
            for (int64_t s = 0; s < S; ++s)
                for (int64_t i = 0; i < Dh * Hkv; ++i) {
                    const uint8_t* e = &cache[size_t(s * Dh * Hkv + i) * es];
                    if (s < p0 || s >= p0 + T) {
                        for (uint64_t b = 0; b < es; ++b) bad += e[b] != 0xAB;
                        continue;
                    }
                    const float want = k[size_t((s - p0) * Dh * Hkv + i)];
                    uint16_t h;
                    float f;
                    std::memcpy(&h, e, 2);
                    std::memcpy(&f, e, 4);
                    if (ct == Type::f16) bad += h != f32_to_f16(want);
                    if (ct == Type::bf16) bad += h != f32_to_bf16(want);
                    if (ct == Type::f32) bad += f != want;
                }
            CHECK(bad == 0);
        }
}

TEST_CASE("views: view with offset and strides, reshape, permute, transpose, cont") {
    const int64_t n0 = 5, n1 = 4, n2 = 3, n3 = 2;
    const std::vector<float> x = randn(size_t(n0 * n1 * n2 * n3), 19);
    auto X = [&](Graph& g) { return g.external(Type::f32, {n0, n1, n2, n3}, const_cast<float*>(x.data()), "x"); };
    auto at = [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        return double(x[size_t(((i3 * n2 + i2) * n1 + i1) * n0 + i0)]);
    };
    // permute: src dim i goes to dst dim axes[i]
    const int axes[4] = {2, 0, 3, 1};
    const auto gp = run3([&](Graph& g) { return g.cont(g.permute(X(g), axes[0], axes[1], axes[2], axes[3])); });
    int64_t dn[4];
    const int64_t sn[4] = {n0, n1, n2, n3};
    for (int i = 0; i < 4; ++i) dn[axes[i]] = sn[i];
    std::vector<double> want(gp.size());
    for (int64_t i3 = 0; i3 < n3; ++i3)
        for (int64_t i2 = 0; i2 < n2; ++i2)
            for (int64_t i1 = 0; i1 < n1; ++i1)
                for (int64_t i0 = 0; i0 < n0; ++i0) {
                    int64_t j[4];
                    const int64_t s[4] = {i0, i1, i2, i3};
                    for (int i = 0; i < 4; ++i) j[axes[i]] = s[i];
                    want[size_t(((j[3] * dn[2] + j[2]) * dn[1] + j[1]) * dn[0] + j[0])] = at(i0, i1, i2, i3);
                }
    check_close(gp, want, 0, 0);

    // transpose of a reshaped matrix, f16 cont
    std::vector<uint16_t> x16 = to16(x, Type::f16);
    const auto gt = run3([&](Graph& g) {
        Tensor* M = g.reshape(g.external(Type::f16, {n0 * n1, n2 * n3}, x16.data(), "m"), {12, 10});
        return g.cont(g.transpose(M));
    });
    std::vector<double> wt;
    for (int64_t c = 0; c < 12; ++c)
        for (int64_t r = 0; r < 10; ++r) wt.push_back(f16_to_f32(x16[size_t(r * 12 + c)]));
    check_close(gt, wt, 0, 0);

    // a strided window: rows 1..2 of dim 1, every dim-2 slice, starting at element 1 of dim 0
    const auto gv = run3([&](Graph& g) {
        Tensor* A = X(g);
        return g.cont(g.view(A, {3, 2, n2}, {A->nb[1], A->nb[2]}, A->nb[1] + 4));
    });
    std::vector<double> wv;
    for (int64_t i2 = 0; i2 < n2; ++i2)
        for (int64_t i1 = 1; i1 < 3; ++i1)
            for (int64_t i0 = 1; i0 < 4; ++i0) wv.push_back(at(i0, i1, i2, 0));
    check_close(gv, wv, 0, 0);

    // views are bounds-checked; reshape needs contiguity; permute needs a permutation
    Graph g;
    Tensor* A = X(g);
    CHECK_THROWS_AS(g.view(A, {n0, n1}, {A->nb[1]}, A->nbytes() - 4), Error);
    CHECK_THROWS_AS(g.reshape(g.transpose(A), {n0 * n1 * n2 * n3}), Error);
    CHECK_THROWS_AS(g.permute(A, 0, 0, 1, 2), Error);
    CHECK_THROWS_AS(g.reshape(A, {7}), Error);
}

// ---- argmax -----------------------------------------------------------------------------------
TEST_CASE("argmax: index of the first maximum per row") {
    for (const Shape2& s : kShapes) {
        std::vector<float> x = randn(size_t(s.k * s.n), 20);
        for (int64_t r = 0; r < s.n; r += 2) {  // ties: the first wins
            x[size_t(r * s.k + s.k / 2)] = 100.0f;
            x[size_t(r * s.k + s.k - 1)] = 100.0f;
        }
        const auto got = run3([&](Graph& g) { return g.argmax(g.external(Type::f32, {s.k, s.n}, x.data(), "x")); });
        std::vector<double> want;
        for (int64_t r = 0; r < s.n; ++r) {
            int64_t best = 0;
            for (int64_t i = 1; i < s.k; ++i)
                if (x[size_t(r * s.k + i)] > x[size_t(r * s.k + best)]) best = i;
            want.push_back(double(best));
        }
        check_close(got, want, 0, 0);
    }
}

// ---- errors -----------------------------------------------------------------------------------
TEST_CASE("errors: bad shapes at build time, bad ids at compute time") {
    std::vector<float> x(64);
    std::vector<int32_t> ids = {0, 9};
    Graph g;
    Tensor* A = g.external(Type::f32, {8, 8}, x.data(), "a");
    CHECK_THROWS_AS(g.mul_mat(A, g.external(Type::f32, {7, 2}, x.data(), "b")), Error);
    CHECK_THROWS_AS(g.swiglu(A, g.external(Type::f32, {8, 4}, x.data(), "b")), Error);
    CHECK_THROWS_AS(g.add(A, g.external(Type::f32, {8, 3}, x.data(), "b")), Error);
    CHECK_THROWS_AS(g.rope(A, g.external(Type::i32, {3}, ids.data(), "p"), 8, rope_neox, 1e4f), Error);
    CHECK_THROWS_AS(g.softmax(A, g.external(Type::i32, {2}, ids.data(), "p"), 1.0f), Error);
    CHECK_THROWS_AS(g.cpy(A, g.external(Type::f16, {8, 7}, x.data(), "c")), Error);
    CHECK_THROWS_AS(g.silu(g.transpose(A)), Error);  // rows not contiguous: needs cont
    Tensor* r = g.get_rows(A, g.external(Type::i32, {2}, ids.data(), "ids"));
    g.output(r);
    g.plan(1);
    ThreadPool p(1);
    CHECK_THROWS_AS(g.compute(p), Error);  // id 9 of 8 rows
    try {
        g.compute(p);
    } catch (const Error& e) {
        MESSAGE(std::string(e.what()));
    }
}
