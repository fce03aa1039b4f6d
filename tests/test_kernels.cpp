// test_kernels.cpp: every optimized CPU kernel table equals the scalar reference, primitive by
// primitive and through the matmul driver for every preset, on odd shapes, with NaN-prefilled
// outputs; and the q8 path agrees with the float reference within a per-bit-width tolerance.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "alloc_counter.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/tiled.h"
#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/random_weights.h"
#include "core/threadpool.h"
#include "test_data.h"

using namespace lb;

namespace {

std::vector<float> randvec(uint64_t n, uint64_t seed, float scale = 1.0f) {
    Rng r{seed};
    std::vector<float> v(n);
    for (auto& x : v) x = scale * r.normal();
    return v;
}

const int kBits[] = {1, 2, 3, 4, 8};

// the zero of second-level table entry e (a table at byte off of the blob) set to tz
void set_table_zero(std::vector<uint8_t>& blob, uint64_t off, uint64_t e, float tz) {
    const uint16_t h = f32_to_f16(tz);
    std::memcpy(&blob[off + 4 * e + 2], &h, 2);
}

}  // namespace

TEST_CASE("every kernel table is complete and no entry is the reference") {
    const auto tables = kernels_available();
    REQUIRE(tables.size() >= 1);
    CHECK(std::strcmp(tables[0]->isa, "ref") == 0);
#if defined(__x86_64__)
    // this build targets x86-64: AVX2 must be present on any machine that runs the tests
    CHECK(tables.size() >= 2);
#endif
    const CpuKernels& ref = kernels_ref();
    for (const CpuKernels* t : tables) {
        INFO("isa " << std::string(t->isa));
        REQUIRE(bool(t->quantize_act));
        REQUIRE(bool(t->dot_f32));
        REQUIRE(bool(t->decode_meta));
        REQUIRE(bool(t->cvt_f16));
        REQUIRE(bool(t->cvt_to_f16));
        REQUIRE(bool(t->a0_scale));
        REQUIRE(bool(t->a0_bits1));
        REQUIRE(bool(t->dot_f16));
        REQUIRE(bool(t->dot_bf16));
        REQUIRE(bool(t->swiglu));
        REQUIRE(bool(t->dot_f16_cols));
        REQUIRE(bool(t->exp_sum));
        for (int b : kBits) {
            REQUIRE(bool(t->dot[b]));
            if (t != &ref) CHECK_MESSAGE(bool(t->dot[b] != ref.dot[b]), "falls back");  // no silent fallback
        }
#if defined(__x86_64__)
        // tiled rg and sign kernels: AVX-512 (with GFNI its own, else AVX2's) and AVX2
        if (std::strcmp(t->isa, "avx512") == 0) CHECK(bool(t->tiles == (cpu_has_gfni() ? tiles_avx512 : tiles_avx2)));
        if (std::strcmp(t->isa, "avx2") == 0) CHECK(bool(t->tiles == tiles_avx2));
#endif
        if (t != &ref) {
            CHECK_MESSAGE(bool(t->quantize_act != ref.quantize_act), "falls back");
            CHECK_MESSAGE(bool(t->dot_f32 != ref.dot_f32), "falls back");
            CHECK_MESSAGE(bool(t->decode_meta != ref.decode_meta), "falls back");
            CHECK_MESSAGE(bool(t->cvt_f16 != ref.cvt_f16), "falls back");
            CHECK_MESSAGE(bool(t->cvt_to_f16 != ref.cvt_to_f16), "falls back");
            CHECK_MESSAGE(bool(t->a0_scale != ref.a0_scale), "falls back");
            CHECK_MESSAGE(bool(t->a0_bits1 != ref.a0_bits1), "falls back");
            CHECK_MESSAGE(bool(t->dot_f16 != ref.dot_f16), "falls back");
            CHECK_MESSAGE(bool(t->dot_bf16 != ref.dot_bf16), "falls back");
            CHECK_MESSAGE(bool(t->swiglu != ref.swiglu), "falls back");
            CHECK_MESSAGE(bool(t->dot_f16_cols != ref.dot_f16_cols), "falls back");
            CHECK_MESSAGE(bool(t->exp_sum != ref.exp_sum), "falls back");
        }
    }
}

TEST_CASE("quantize_act is bit-exact with the reference") {
    const CpuKernels& ref = kernels_ref();
    for (const CpuKernels* t : kernels_available()) {
        for (uint64_t k : {1ull, 7ull, 31ull, 32ull, 33ull, 100ull, 128ull, 255ull, 576ull, 4096ull}) {
            INFO("isa " << std::string(t->isa) << " k " << k);
            std::vector<float> x = randvec(k, k * 7 + 1);
            if (k > 10) x[3] = 0.0f, x[5] = -x[4];
            if (k >= 64) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block
            std::vector<uint8_t> a(act_row_bytes(k), 0xAB), b(act_row_bytes(k), 0xCD);
            ref.quantize_act(x.data(), k, act_row(a.data(), k));
            t->quantize_act(x.data(), k, act_row(b.data(), k));
            CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
            // without the sums (s8 null): the same values and scales, the sums' bytes untouched
            std::vector<uint8_t> c(act_row_bytes(k), 0xCD);
            QActRow nos = act_row(c.data(), k);
            const size_t sums_at = size_t(reinterpret_cast<uint8_t*>(nos.s8) - c.data());
            nos.s8 = nullptr;
            t->quantize_act(x.data(), k, nos);
            CHECK(std::memcmp(a.data(), c.data(), sums_at) == 0);
            CHECK(std::all_of(c.begin() + std::ptrdiff_t(sums_at), c.end(), [](uint8_t v) { return v == 0xCD; }));
            // the quantized values reproduce x within half a step
            QActRow r = act_row(a.data(), k);
            for (uint64_t i = 0; i < k; ++i)
                CHECK(std::fabs(r.q[i] * r.d[i / 32] - x[i]) <= 0.5f * r.d[i / 32] + 1e-7f);
        }
    }
}

TEST_CASE("dot primitives equal the reference for every bit width, group size and length") {
    const CpuKernels& ref = kernels_ref();
    for (const CpuKernels* t : kernels_available()) {
        for (int bits : kBits) {
            const uint64_t chunk = code_chunk(bits);
            for (uint64_t nchunks : {1ull, 2ull, 3ull, 5ull, 33ull}) {
                const uint64_t kp = chunk * nchunks;
                Rng rng{uint64_t(bits * 1000 + nchunks)};
                std::vector<uint8_t> q(kp), codes(kp / chunk * code_chunk_bytes(bits));
                for (auto& v : q) v = uint8_t(rng.next() & ((1u << bits) - 1));
                pack_codes_ref(q.data(), bits, kp, codes.data());
                std::vector<int8_t> xq(kp);
                for (auto& v : xq) v = int8_t(int(rng.next() % 255) - 127);
                std::vector<float> xd(kp / 32 + 1), sc(kp / 8);
                for (auto& v : xd) v = 0.001f + 0.01f * rng.uniform();
                for (auto& v : sc) v = 0.5f + rng.uniform();
                for (uint32_t g : {0u, 8u, 16u, 32u, 64u, 96u}) {
                    if (g > kp) continue;
                    const float* s = g ? sc.data() : nullptr;
                    INFO("isa " << std::string(t->isa) << " bits " << bits << " g " << g << " kp " << kp);
                    const float want = ref.dot[bits](codes.data(), kp, xq.data(), xd.data(), s, g);
                    const float got = t->dot[bits](codes.data(), kp, xq.data(), xd.data(), s, g);
                    // bound: float reassociation over kp/8 terms of magnitude <= max|term|
                    double mag = 0;
                    for (uint64_t i = 0; i < kp; ++i)
                        mag += std::fabs(double(q[i]) * xq[i] * xd[i / 32] * (g ? sc[i / g] : 1.0f));
                    CHECK(std::fabs(double(got) - want) <= 1e-5 * mag + 1e-6);
                }
            }
        }
        std::vector<float> a = randvec(1031, 5), b = randvec(1031, 6);
        double mag = 0;
        for (int i = 0; i < 1031; ++i) mag += std::fabs(double(a[i]) * b[i]);
        CHECK(std::fabs(t->dot_f32(a.data(), b.data(), 1031) - ref.dot_f32(a.data(), b.data(), 1031)) <= 1e-5 * mag);
    }
}

// shapes per preset: (n, k) that fit the preset's divisibility rules, with tails

TEST_CASE("matmul through every kernel table equals the q8 reference, and the float reference within tolerance") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    for (size_t pi = 0; pi < np; ++pi) {
        const Preset& pr = presets[pi];
        for (auto [n, k] : lb_test::kernel_test_shapes(pr)) {
            const QParams p = preset_params(pr, n, k);
            const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n * 31 + k);
            const WeightView w = make_view(pr.type, p, n, k, blob.data());
            for (uint64_t ncols : {1ull, 3ull, 37ull}) {
                INFO("preset " << std::string(pr.name) << " n " << n << " k " << k << " ncols " << ncols);
                const std::vector<float> x = randvec(ncols * k, k + ncols);
                std::vector<float> yf(ncols * n), yq(ncols * n, std::numeric_limits<float>::quiet_NaN());
                gemm_ref(w, x.data(), ncols, yf.data());
                matmul_simple(w, kernels_ref(), x.data(), ncols, yq.data());
                // q8 path vs float: activation rounding error, relative to sum |w||x|
                std::vector<float> row(k);
                std::vector<double> mag(n);
                for (uint64_t o = 0; o < n; ++o) {
                    dequant_row_ref(w, o, row.data());
                    for (uint64_t i = 0; i < k; ++i) mag[o] += std::fabs(row[i]);
                }
                double worst = 0;
                for (uint64_t j = 0; j < ncols; ++j)
                    for (uint64_t o = 0; o < n; ++o) {
                        REQUIRE(std::isfinite(yq[j * n + o]));
                        worst = std::max(worst, std::fabs(double(yq[j * n + o]) - yf[j * n + o]) / (mag[o] + 1e-12));
                    }
                // int8 activations: error per input <= max|x| / 254 (x ~ N(0,1), blocks of 32 -> about 0.012);
                // a0 quantizes s*x, same bound
                CHECK(worst < 0.02);
                for (const CpuKernels* t : kernels_available()) {
                    if (t == &kernels_ref()) continue;
                    INFO("isa " << std::string(t->isa));
                    std::vector<float> yt(ncols * n, std::numeric_limits<float>::quiet_NaN());
                    matmul_simple(w, *t, x.data(), ncols, yt.data());
                    double worst_t = 0;
                    for (uint64_t j = 0; j < ncols; ++j)
                        for (uint64_t o = 0; o < n; ++o) {
                            REQUIRE(std::isfinite(yt[j * n + o]));
                            worst_t =
                                std::max(worst_t, std::fabs(double(yt[j * n + o]) - yq[j * n + o]) / (mag[o] + 1e-12));
                        }
                    CHECK(worst_t < 1e-5);
                }
            }
        }
    }
}

TEST_CASE("decode_meta of every table equals the reference exactly for every preset") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    for (size_t pi = 0; pi < np; ++pi) {
        const Preset& pr = presets[pi];
        if (pr.type == Type::sign) continue;
        for (auto [n, k] : lb_test::kernel_test_shapes(pr)) {
            const QParams p = preset_params(pr, n, k);
            const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n + 3 * k, pr.int_zeros);
            const WeightView w = make_view(pr.type, p, n, k, blob.data());
            const uint64_t rows = w.lay.meta_rows, cols = meta_row_of(w, 0).cols;
            std::vector<float> s0(cols), m0(cols), s1(cols), m1(cols);
            for (const CpuKernels* t : kernels_available()) {
                INFO("preset " << std::string(pr.name) << " n " << n << " k " << k << " isa " << std::string(t->isa));
                bool same = true;
                for (uint64_t r = 0; r < rows; ++r) {
                    decode_meta_ref(w, r, s0.data(), m0.data());
                    std::fill(s1.begin(), s1.end(), std::numeric_limits<float>::quiet_NaN());
                    std::fill(m1.begin(), m1.end(), std::numeric_limits<float>::quiet_NaN());
                    t->decode_meta(w, r, s1.data(), m1.data());
                    for (uint64_t c = 0; c < cols; ++c) same = same && s0[c] == s1[c] && m0[c] == m1[c];
                }
                CHECK(same);
            }
        }
    }
}

TEST_CASE("matmul of f32, f16 and bf16 weights equals the float reference through every table") {
    for (Type t : {Type::f32, Type::f16, Type::bf16}) {
        for (auto [n, k] : std::vector<std::pair<uint64_t, uint64_t>>{{1, 1}, {7, 13}, {33, 65}, {64, 576}}) {
            const std::vector<uint8_t> blob = random_weight(t, QParams{}, n, k, n * k);
            const WeightView w = make_view(t, QParams{}, n, k, blob.data());
            for (uint64_t ncols : {1ull, 4ull, 37ull}) {
                const std::vector<float> x = randvec(ncols * k, 11);
                std::vector<float> want(ncols * n);
                gemm_ref(w, x.data(), ncols, want.data());
                for (const CpuKernels* kt : kernels_available()) {
                    INFO("type " << std::string(type_name(t)) << " " << n << "x" << k << " isa "
                                 << std::string(kt->isa));
                    std::vector<float> got(ncols * n, std::numeric_limits<float>::quiet_NaN());
                    matmul_simple(w, *kt, x.data(), ncols, got.data());
                    for (uint64_t i = 0; i < ncols * n; ++i)
                        CHECK(std::fabs(got[i] - want[i]) <= 1e-4f * (1.0f + std::fabs(want[i])));
                }
            }
        }
    }
}

TEST_CASE("decode_meta equals the reference for every field width and map kind") {
    // rg weights with group 8, odd group counts; maps: constant, per group column, wrapping period
    for (uint32_t sb : {0u, 4u, 8u, 16u})
        for (uint32_t zb : {0u, 1u, 2u, 3u, 4u, 5u, 8u, 16u})
            for (int mapkind = 0; mapkind < 4; ++mapkind)
                for (uint64_t G : {3ull, 8ull, 13ull, 21ull}) {
                    const uint64_t n = 5, k = 8 * G;
                    QParams p;
                    p.bits = 2;
                    p.group = 8;
                    p.sbits = uint8_t(sb);
                    p.zbits = uint8_t(zb);
                    p.zmode = zb % 2 ? ZeroMode::code : ZeroMode::value;
                    MetaMap m;
                    if (mapkind == 0 || mapkind == 3) {
                        m.count = 1;  // kind 3: an entry whose second level needs no rounding
                    } else if (mapkind == 1) {
                        m.rdiv = 2, m.rstride = uint32_t(G), m.cstride = 1, m.count = uint32_t(3 * G);
                    } else {
                        m.rdiv = 1, m.rstride = uint32_t(G), m.cstride = 1, m.period = 11, m.count = 11;
                    }
                    if (sb && sb <= 8) p.smap = m;
                    if (zb && zb <= 8) p.zmap = m;
                    // integer zeros (decoders skip a rounding) in every other case, but for one
                    // entry where the table has more than one
                    const bool int_zeros = (sb + zb + G) % 2 == 0;
                    std::vector<uint8_t> blob = random_weight(Type::rg, p, n, k, sb * 100 + zb * 10 + G, int_zeros);
                    if (int_zeros && m.count > 1) {
                        const Layout L = layout(Type::rg, p, n, k);
                        if (sb && sb <= 8) set_table_zero(blob, L.off_stab, m.index(1, 0), 0.1f);
                        if (zb && zb <= 8) set_table_zero(blob, L.off_ztab, m.index(1, 0), 0.1f);
                    }
                    if (mapkind == 3) {
                        const Layout L = layout(Type::rg, p, n, k);
                        const uint16_t e[2] = {f32_to_f16(0.25f), f32_to_f16(-3.0f)};  // (scale, zero)
                        REQUIRE(second_level_exact(0.25f, -3.0f));
                        if (sb && sb <= 8) std::memcpy(&blob[L.off_stab], e, 4);
                        if (zb && zb <= 8) std::memcpy(&blob[L.off_ztab], e, 4);
                    }
                    const WeightView w = make_view(Type::rg, p, n, k, blob.data());
                    std::vector<float> s0(G), m0(G);
                    for (const CpuKernels* t : kernels_available()) {
                        INFO("sbits " << sb << " zbits " << zb << " map " << mapkind << " G " << G << " isa "
                                      << std::string(t->isa) << " int_zeros " << int_zeros);
                        bool same = true;
                        for (uint64_t r = 0; r < n; ++r) {
                            // exact-size buffers: a decoder writing past G is caught by ASan builds
                            std::vector<float> s1(G, std::numeric_limits<float>::quiet_NaN()), m1 = s1;
                            decode_meta_ref(w, r, s0.data(), m0.data());
                            t->decode_meta(w, r, s1.data(), m1.data());
                            for (uint64_t c = 0; c < G; ++c) same = same && s0[c] == s1[c] && m0[c] == m1[c];
                        }
                        CHECK(same);
                    }
                }
}

TEST_CASE("cvt_f16 converts every binary16 value exactly, with tails") {
    std::vector<uint16_t> all(65536 + 7);
    for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i * 40503u);  // every value, odd length
    for (uint32_t i = 0; i < 65536; ++i) all[i] = uint16_t(i);
    for (const CpuKernels* t : kernels_available()) {
        INFO("isa " << std::string(t->isa));
        for (uint64_t n : {uint64_t(all.size()), uint64_t(1), uint64_t(15), uint64_t(17)}) {
            std::vector<float> got(n + 1, 12345.0f);
            t->cvt_f16(all.data(), got.data(), n);
            bool same = got[n] == 12345.0f;  // nothing written past n
            for (uint64_t i = 0; i < n; ++i) {
                const float want = f16_to_f32(all[i]);
                same = same && (std::isnan(want) ? std::isnan(got[i])
                                                 : got[i] == want && std::signbit(got[i]) == std::signbit(want));
            }
            CHECK(same);
        }
    }
}

TEST_CASE("swiglu is within 3 ulp of silu(x) * g in double precision, with tails") {
    // x from -100 to 100 in steps of 2^-7 (every exponent of e^-x the kernels evaluate, and the
    // clamped ends), then special values
    std::vector<float> x;
    for (int i = -12800; i <= 12800; ++i) x.push_back(float(i) / 128.0f);
    for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 88.0f, -88.0f, 89.0f, -89.5f, 1e20f, -1e20f,
                    std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
        x.push_back(v);
    Rng r{91};
    std::vector<float> g(x.size());
    for (float& v : g) v = 6.0f * r.uniform() - 3.0f;
    for (const CpuKernels* t : kernels_available()) {
        INFO("isa " << std::string(t->isa));
        for (bool gated : {false, true})
            for (uint64_t n : {uint64_t(x.size()), uint64_t(0), uint64_t(1), uint64_t(7), uint64_t(15), uint64_t(17),
                               uint64_t(33)}) {
                const uint64_t off = x.size() - n;  // the tails end on the special values
                std::vector<float> y(n + 1, 12345.0f);
                t->swiglu(x.data() + off, gated ? g.data() + off : nullptr, y.data(), n);
                int bad = 0;
                for (uint64_t i = 0; i < n; ++i) {
                    const double xi = x[off + i], gi = gated ? g[off + i] : 1.0;
                    const double want = xi / (1.0 + std::exp(-xi)) * gi;
                    if (std::isnan(want)
                            ? !std::isnan(y[i])
                            : !(double(y[i]) == want || std::fabs(y[i] - want) <= 3.6e-7 * std::fabs(want) + 1e-35))
                        ++bad;
                }
                CHECK(bad == 0);
                CHECK(y[n] == 12345.0f);  // nothing written past n
            }
    }
}

TEST_CASE("exp_sum (softmax rows) is within 3 ulp of e^(scale x - shift) in double, with tails") {
    // softmax arguments: scale * x - max, from 0 down to far below the -87 clamp
    Rng r{92};
    std::vector<float> x(1000);
    for (float& v : x) v = 40.0f * r.normal();
    x[3] = std::numeric_limits<float>::quiet_NaN();
    const float scale = 0.125f;
    float mx = -INFINITY;
    for (float v : x)
        if (!std::isnan(v)) mx = std::max(mx, scale * v);
    for (const CpuKernels* t : kernels_available()) {
        INFO("isa " << std::string(t->isa));
        for (uint64_t off : {uint64_t(0), uint64_t(4)})  // with and without the NaN
            for (uint64_t n :
                 {uint64_t(996), uint64_t(0), uint64_t(1), uint64_t(7), uint64_t(16), uint64_t(17), uint64_t(33)}) {
                std::vector<float> y(n + 1, 12345.0f);
                const float sum = t->exp_sum(x.data() + off, scale, mx, y.data(), n);
                int bad = 0;
                double want_sum = 0;
                bool nan = false;
                for (uint64_t i = 0; i < n; ++i) {
                    const float arg = scale * x[off + i] - mx;  // as the kernels round it
                    const double want = std::exp(double(arg));
                    nan = nan || std::isnan(want);
                    want_sum += want;
                    if (std::isnan(want) ? !std::isnan(y[i]) : !(std::fabs(y[i] - want) <= 3.6e-7 * want + 2e-38))
                        ++bad;
                }
                CHECK(bad == 0);
                CHECK(y[n] == 12345.0f);  // nothing written past n
                if (nan)
                    CHECK(std::isnan(sum));
                else
                    CHECK(std::fabs(sum - want_sum) <= 1e-6 * want_sum + 1e-37);
            }
    }
}

TEST_CASE("cvt_to_f16 rounds like f32_to_f16, with tails") {
    // every f16 value, the midpoints between neighbours (ties to even), and random floats over
    // the whole range (subnormal results, overflow to inf); NaN must stay NaN
    std::vector<float> v;
    for (uint32_t h = 0; h < 65536; ++h) {
        const float a = f16_to_f32(uint16_t(h)), b = f16_to_f32(uint16_t(h + 1));
        v.push_back(a);
        if (std::isfinite(a) && std::isfinite(b) && (h & 0x7fff) != 0x7bff) v.push_back(0.5f * (a + b));
    }
    Rng r{93};
    for (int i = 0; i < 100000; ++i) {
        uint32_t u = uint32_t(r.next());
        float f;
        std::memcpy(&f, &u, 4);
        v.push_back(f);
    }
    for (const CpuKernels* t : kernels_available()) {
        INFO("isa " << std::string(t->isa));
        for (uint64_t n : {uint64_t(v.size()), uint64_t(1), uint64_t(15), uint64_t(17)}) {
            std::vector<uint16_t> got(n + 1, 0xABCD);
            t->cvt_to_f16(v.data(), got.data(), n);
            int bad = got[n] != 0xABCD;  // nothing written past n
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t want = f32_to_f16(v[i]);
                bad += std::isnan(v[i]) ? !std::isnan(f16_to_f32(got[i])) : got[i] != want;
            }
            CHECK(bad == 0);
        }
    }
}

TEST_CASE("dot_f16 and dot_bf16 equal the reference for every length, with tails") {
    Rng r{77};
    for (bool bf : {false, true})
        for (uint64_t n : {0ull, 1ull, 7ull, 16ull, 31ull, 32ull, 33ull, 100ull, 2048ull, 4103ull}) {
            std::vector<uint16_t> w(n);
            for (auto& v : w) v = bf ? f32_to_bf16(r.normal()) : f32_to_f16(r.normal());
            const std::vector<float> x = randvec(n, n + 5);
            double mag = 1e-30;
            for (uint64_t i = 0; i < n; ++i) mag += std::fabs(double(bf ? bf16_to_f32(w[i]) : f16_to_f32(w[i])) * x[i]);
            auto dot = [&](const CpuKernels& t) { return (bf ? t.dot_bf16 : t.dot_f16)(w.data(), x.data(), n); };
            const float ref = dot(kernels_ref());
            for (const CpuKernels* t : kernels_available()) {
                INFO("isa " << std::string(t->isa) << " n " << n << " bf16 " << bf);
                CHECK(std::fabs(double(dot(*t)) - ref) <= 1e-6 * mag);
            }
        }
}

TEST_CASE("dot_f16_cols equals the reference for every column count and length, with tails") {
    Rng r{78};
    const uint64_t ldx = 203, ldy = 3;
    std::vector<uint16_t> w(200);
    for (uint16_t& v : w) v = f32_to_f16(r.normal());
    std::vector<float> x(ldx * 21);
    for (float& v : x) v = r.normal();
    const CpuKernels& ref = kernels_ref();
    for (const CpuKernels* t : kernels_available()) {
        INFO("isa " << std::string(t->isa));
        int bad = 0;
        for (uint64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 15, 21})
            for (uint64_t n = 0; n <= 200; n += n < 40 ? 1 : 37) {
                std::vector<float> got(m * ldy, 12345.0f), want(m * ldy, 12345.0f);
                t->dot_f16_cols(w.data(), n, x.data(), ldx, m, got.data(), ldy);
                ref.dot_f16_cols(w.data(), n, x.data(), ldx, m, want.data(), ldy);
                for (uint64_t j = 0; j < m * ldy; ++j) {
                    double mag = 0;  // sum |w x| of the column: the rounding scale
                    for (uint64_t i = 0; j % ldy == 0 && i < n; ++i)
                        mag += std::fabs(f16_to_f32(w[i]) * x[(j / ldy) * ldx + i]);
                    bad += !(std::fabs(got[j] - want[j]) <= 1e-6 * mag + 1e-30 ||
                             (j % ldy != 0 && got[j] == 12345.0f));  // y between the strides untouched
                }
            }
        CHECK(bad == 0);
    }
}

TEST_CASE("a0_scale and a0_bits1 equal the reference for every length, row count and zero mode") {
    const CpuKernels& ref = kernels_ref();
    for (uint64_t k : {1ull, 15ull, 16ull, 17ull, 100ull, 576ull, 4099ull}) {
        Rng rng{k};
        std::vector<uint16_t> s(k), z(k);
        for (uint64_t i = 0; i < k; ++i) {
            s[i] = f32_to_f16(0.02f * rng.normal());
            z[i] = f32_to_f16(float(rng.next() % 16));
        }
        const std::vector<float> x = randvec(k, k + 1);
        std::vector<uint8_t> bit(11 * k);  // row t, input i at t * k + i
        for (auto& b : bit) b = uint8_t(rng.next() & 1);
        // the first nrows rows unit-interleaved (core/quant.h a0_bit), codes past k zero
        auto interleave = [&](uint64_t nrows) {
            const uint64_t units = (k + 31) / 32 * 2;  // 1-bit rows are padded to 32 inputs
            std::vector<uint8_t> c(2 * units * nrows + 3, 0);
            for (uint64_t t = 0; t < nrows; ++t)
                for (uint64_t i = 0; i < k; ++i)
                    c[2 * ((i / 16) * nrows + t) + (i / 8) % 2] |= uint8_t(bit[t * k + i] << (i % 8));
            return c;
        };
        for (bool code_zero : {true, false}) {
            double mag = 0, bias64 = 0;  // sum |s x| + |m x|: the rounding scale
            for (uint64_t i = 0; i < k; ++i) {
                const double si = f16_to_f32(s[i]), zi = f16_to_f32(z[i]);
                mag += std::fabs(si * x[i]) + std::fabs((code_zero ? zi * si : zi) * x[i]);
                bias64 -= (code_zero ? zi * si : zi) * x[i];
            }
            std::vector<float> want_xs(k);
            const float want_bias = ref.a0_scale(s.data(), z.data(), code_zero, x.data(), k, want_xs.data());
            CHECK(std::fabs(want_bias - bias64) <= 1e-6 * mag);
            for (uint64_t nrows : {1ull, 7ull, 8ull, 11ull}) {
                const std::vector<uint8_t> codes = interleave(nrows);
                std::vector<float> want_y(2 * nrows);
                ref.a0_bits1(s.data(), z.data(), code_zero, x.data(), k, codes.data(), nrows, want_y.data(), 2, nullptr,
                             0);
                int ref_bad = 0;  // the reference against the bit matrix, in double
                for (uint64_t t = 0; t < nrows; ++t) {
                    double y = bias64;
                    for (uint64_t i = 0; i < k; ++i)
                        if (bit[t * k + i]) y += double(f16_to_f32(s[i])) * x[i];
                    ref_bad += !(std::fabs(want_y[2 * t] - y) <= 1e-6 * mag);
                }
                CHECK(ref_bad == 0);
                for (const CpuKernels* t : kernels_available()) {
                    INFO("isa " << std::string(t->isa) << " k " << k << " code_zero " << code_zero << " nrows "
                                << nrows);
                    std::vector<float> xs(k + 1, 12345.0f);
                    const float bias = t->a0_scale(s.data(), z.data(), code_zero, x.data(), k, xs.data());
                    CHECK(std::fabs(bias - want_bias) <= 1e-6 * mag);
                    CHECK(std::memcmp(xs.data(), want_xs.data(), 4 * k) == 0);  // one product each
                    CHECK(xs[k] == 12345.0f);
                    std::vector<float> y(2 * nrows, 12345.0f);
                    // with a prefetch of some memory (it must not change anything)
                    t->a0_bits1(s.data(), z.data(), code_zero, x.data(), k, codes.data(), nrows, y.data(), 2,
                                codes.data(), codes.size());
                    int bad = 0;
                    for (uint64_t r = 0; r < nrows; ++r)
                        bad += !(std::fabs(y[2 * r] - want_y[2 * r]) <= 1e-6 * mag) + (y[2 * r + 1] != 12345.0f);
                    CHECK(bad == 0);
                }
            }
        }
    }
}

TEST_CASE(
    "the a0 runtime copy holds every class's decoded meta exactly and its code rows; matmul through it is "
    "the matmul without it") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    int a0_presets = 0;
    for (size_t pi = 0; pi < np; ++pi) {
        const Preset& pr = presets[pi];
        if (pr.type != Type::a0) continue;
        for (auto [n, k] : lb_test::kernel_test_shapes(pr)) {
            const QParams p = preset_params(pr, n, k);
            const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n * 5 + k);
            WeightView w = make_view(pr.type, p, n, k, blob.data());
            REQUIRE(tiled_supported(w));
            ++a0_presets;
            INFO("preset " << std::string(pr.name) << " n " << n << " k " << k);
            const TiledWeight t = make_tiled(w);
            const TiledLayout lay = tiled_layout(w);
            REQUIRE(t.nbytes == lay.nbytes);
            const uint64_t R = n / p.group;
            int bad = 0;
            for (uint64_t r = 0; r < R; ++r) {
                const MetaRow m = meta_row_of(w, r);
                const uint16_t* s16 = a0_scales(t.data.get(), lay, r);
                const uint16_t* z16 = a0_zeros(t.data.get(), lay, r);
                for (uint64_t i = 0; i < k; ++i) {  // the scalar field decoder, bit for bit
                    const float s = decode_field_ref(m.srow, m.stab, p.sbits, p.smap, r, i, 1.0f);
                    const float z = decode_field_ref(m.zrow, m.ztab, p.zbits, p.zmap, r, i, 0.0f);
                    bad += f16_to_f32(s16[i]) != s || f16_to_f32(z16[i]) != z;
                }
                const uint8_t* codes = a0_codes(t.data.get(), lay, r);
                for (uint64_t g = 0; g < p.group; ++g) {
                    if (p.bits != 1) {
                        bad += std::memcmp(codes + g * w.lay.code_row_bytes, w.codes(r + g * R),
                                           w.lay.code_row_bytes) != 0;
                        continue;
                    }
                    const uint8_t* row = w.codes(r + g * R);  // 1-bit: unit-interleaved
                    for (uint64_t i = 0; i < 8 * w.lay.code_row_bytes; ++i)
                        bad += a0_bit(codes, p.group, g, i) != (row[i / 8] >> (i % 8) & 1u);
                }
            }
            CHECK(bad == 0);
            WeightView wc = w;
            wc.tiles = t.data.get();
            for (uint64_t ncols : {1ull, 3ull}) {
                const std::vector<float> x = randvec(ncols * k, k + 7);
                for (const CpuKernels* kern : kernels_available()) {
                    INFO("isa " << std::string(kern->isa) << " ncols " << ncols);
                    std::vector<float> y0(ncols * n), y1(ncols * n, std::nanf(""));
                    matmul_simple(w, *kern, x.data(), ncols, y0.data());
                    matmul_simple(wc, *kern, x.data(), ncols, y1.data());
                    CHECK(std::memcmp(y0.data(), y1.data(), 4 * y0.size()) == 0);
                }
            }
        }
    }
    CHECK(a0_presets >= 2);
}

TEST_CASE("the tiled layout holds every code and meta field of the rows it tiles") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    int tiled_presets = 0;
    for (size_t pi = 0; pi < np; ++pi) {
        const Preset& pr = presets[pi];
        if (pr.type != Type::rg && pr.type != Type::sign) continue;
        for (auto [n0, k] : lb_test::kernel_test_shapes(pr)) {
            const uint64_t n = 16 * ((n0 + 15) / 16) + 7;  // whole tiles and 7 untiled rows
            QParams p;
            try {
                p = preset_params(pr, n, k);
            } catch (const Error&) {
                continue;  // the preset's maps do not fit this row count
            }
            const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n * 7 + k);
            const WeightView w = make_view(pr.type, p, n, k, blob.data());
            if (!tiled_supported(w)) continue;
            ++tiled_presets;
            INFO("preset " << std::string(pr.name) << " n " << n << " k " << k);
            const TiledWeight t = make_tiled(w);
            REQUIRE(t.nbytes == tiled_layout(w).nbytes);
            std::vector<uint8_t> q(w.lay.kp);
            bool codes_ok = true, meta_ok = true;
            for (uint64_t row = 0; row < n / 16 * 16; ++row) {
                unpack_codes_ref(w.codes(row), p.bits, w.lay.kp, q.data());
                for (uint64_t i = 0; i < w.lay.kp; ++i) codes_ok &= tiled_code(w, t.data.get(), row, i) == q[i];
                const MetaRow m = meta_row_of(w, row);
                const TiledLayout lay = tiled_layout(w);
                for (uint64_t c = 0; c < tiled_groups(w); ++c) {
                    // the code, raw f16 bits, or (tiles of width 16 for a code) the decoded value
                    auto field = [&](const uint8_t* r, const uint8_t* tab, uint32_t f, uint32_t tf,
                                     const MetaMap& map) -> uint32_t {
                        if (f == 0) return 0;
                        if (f == 16) return uint32_t(r[2 * c] | r[2 * c + 1] << 8);
                        if (tf == 16) return f32_to_f16(decode_field_ref(r, tab, f, map, row, c, 0.0f));
                        return meta_code(r, f, c);
                    };
                    meta_ok &= tiled_field(w, t.data.get(), false, row, c) ==
                               field(m.srow, m.stab, p.sbits, lay.sbits, p.smap);
                    meta_ok &=
                        tiled_field(w, t.data.get(), true, row, c) == field(m.zrow, m.ztab, p.zbits, lay.zbits, p.zmap);
                }
            }
            CHECK(codes_ok);
            CHECK(meta_ok);
        }
    }
    // the presets of the GreenBit, HQQ and GGUF layouts the runtime meets most
    CHECK(tiled_presets >= 20);
}

// max over rows and columns of |tiled kernel - q8 reference| / sum_i |w[row][i]|; w has no tiles
static double tiled_error(const CpuKernels& kern, WeightView w, uint64_t ncols) {
    const TiledWeight t = make_tiled(w);
    REQUIRE(t.nbytes > 0);
    w.tiles = t.data.get();
    const uint64_t n = w.n, k = w.k;
    const std::vector<float> x = randvec(ncols * k, k + 3 * ncols);
    std::vector<float> yq(ncols * n), yt(ncols * n, std::numeric_limits<float>::quiet_NaN());
    matmul_simple(w, kernels_ref(), x.data(), ncols, yq.data());  // the reference table has no tiles
    matmul_simple(w, kern, x.data(), ncols, yt.data());
    std::vector<float> row(k);
    double worst = 0;
    for (uint64_t o = 0; o < n; ++o) {
        dequant_row_ref(w, o, row.data());
        double mag = 1e-12;
        for (uint64_t i = 0; i < k; ++i) mag += std::fabs(row[i]);
        for (uint64_t j = 0; j < ncols; ++j) {
            if (!std::isfinite(yt[j * n + o])) return INFINITY;
            worst = std::max(worst, std::fabs(double(yt[j * n + o]) - yq[j * n + o]) / mag);
        }
    }
    return worst;
}

TEST_CASE("tiled rg kernels equal the q8 reference for every field width and map kind") {
    for (const CpuKernels* kern : kernels_available()) {
        if (!kern->tiles) continue;
        int cases = 0;
        for (uint32_t sb : {0u, 4u, 8u, 16u})                  // the scale widths rg allows
            for (uint32_t zb : {0u, 1u, 2u, 3u, 4u, 8u, 16u})  // (3: decoded in the tiles)
                for (int mapkind = 0; mapkind < 5; ++mapkind)
                    for (uint64_t G : {3ull, 21ull, 40ull}) {
                        const uint64_t n = 53, k = 8 * G;  // 3 tiles and 5 rows
                        // integer second-level zeros (the decoders skip a rounding) in every
                        // other case, but for the entry of row 16 and group 0 where the
                        // table has more than one (the row block of tile 1 then does not)
                        const bool int_zeros = (sb + zb + G + uint64_t(mapkind)) % 2 == 0;
                        QParams p;
                        const uint8_t widths[] = {1, 2, 3, 4, 8};
                        p.bits = widths[(sb + zb + G + uint64_t(mapkind)) % 5];  // in turn
                        p.group = 8;
                        p.sbits = uint8_t(sb);
                        p.zbits = uint8_t(zb);
                        p.zmode = (sb + zb + G) % 3 ? ZeroMode::code : ZeroMode::value;
                        MetaMap m;
                        if (mapkind == 0) {
                            m.count = 1;
                        } else if (mapkind == 1) {  // per 16 rows and group (GreenBit dgs)
                            m.rdiv = 16, m.rstride = uint32_t(G), m.cstride = 1, m.count = uint32_t(4 * G);
                        } else if (mapkind == 2) {  // per group column, wrapping
                            m.cstride = 1, m.period = 11, m.count = 11;
                        } else if (mapkind == 3) {  // one block of all rows, every other entry
                            m.rdiv = 64, m.rstride = 1, m.cstride = 2, m.count = uint32_t(2 * G);
                        } else {  // per row and group, wrapping (HQQ's group-128 meta): decoded
                            m.rdiv = 1, m.rstride = uint32_t(G), m.cstride = 1, m.period = 13, m.count = 13;
                        }
                        if (sb && sb <= 8) p.smap = m;
                        if (zb && zb <= 8) p.zmap = m;
                        std::vector<uint8_t> blob = random_weight(Type::rg, p, n, k, sb * 100 + zb * 10 + G, int_zeros);
                        const Layout L = layout(Type::rg, p, n, k);
                        if (int_zeros && m.count > 1) {
                            if (sb && sb <= 8) set_table_zero(blob, L.off_stab, m.index(16, 0), 0.1f);
                            if (zb && zb <= 8) set_table_zero(blob, L.off_ztab, m.index(16, 0), 0.1f);
                        }
                        const WeightView w = make_view(Type::rg, p, n, k, blob.data());
                        INFO("isa " << std::string(kern->isa) << " bits " << int(p.bits) << " sbits " << sb << " zbits "
                                    << zb << " map " << mapkind << " G " << G << " int_zeros " << int_zeros);
                        REQUIRE(tiled_supported(w));
                        ++cases;
                        for (uint64_t ncols : {1ull, 2ull}) {  // GEMV (specialised per field kind), GEMM
                            INFO("ncols " << ncols);
                            CHECK(tiled_error(*kern, w, ncols) < 1e-5);
                        }
                    }
        CHECK(cases == 4 * 7 * 5 * 3);
    }
}

TEST_CASE(
    "tiled kernels equal the q8 reference for rg and sign presets (whole tiles and untiled rows, GEMV and GEMM)") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    for (const CpuKernels* kern : kernels_available()) {
        if (!kern->tiles) continue;
        INFO("isa " << std::string(kern->isa));
        int cases = 0;
        for (size_t pi = 0; pi < np; ++pi) {
            const Preset& pr = presets[pi];
            if (pr.type != Type::rg && pr.type != Type::sign) continue;
            for (auto [n0, k] : lb_test::kernel_test_shapes(pr)) {
                for (uint64_t n : {uint64_t(16), 16 * ((n0 + 15) / 16) + 9}) {
                    QParams p;
                    try {
                        p = preset_params(pr, n, k);
                    } catch (const Error&) {
                        continue;
                    }
                    const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n * 13 + k, pr.int_zeros);
                    const WeightView w = make_view(pr.type, p, n, k, blob.data());
                    if (!tiled_supported(w)) continue;
                    ++cases;
                    for (uint64_t ncols : {1ull, 3ull, 37ull}) {
                        INFO("preset " << std::string(pr.name) << " n " << n << " k " << k << " ncols " << ncols);
                        CHECK(tiled_error(*kern, w, ncols) < 1e-5);
                    }
                }
            }
        }
        CHECK(cases >= 20);
    }
}

TEST_CASE("a tiled matmul on a thread pool allocates nothing") {
    for (const CpuKernels* kern : kernels_available()) {
        if (!kern->tiles) continue;
        const uint64_t n = 16 * 5 + 3, k = 256;
        const QParams p = preset_params(*find_preset("q2_g8"), n, k);
        const std::vector<uint8_t> blob = random_weight(Type::rg, p, n, k, 5);
        WeightView w = make_view(Type::rg, p, n, k, blob.data());
        const TiledWeight t = make_tiled(w);
        w.tiles = t.data.get();
        ThreadPool pool(2);
        for (uint64_t ncols : {1ull, 5ull}) {
            std::vector<uint8_t> scratch(matmul_scratch_bytes(w, ncols, pool.size()));
            const std::vector<float> x = randvec(ncols * k, 9);
            std::vector<float> y(ncols * n);
            matmul(w, *kern, x.data(), ncols, y.data(), pool, scratch.data());  // warm-up
            const long before = allocations();
            matmul(w, *kern, x.data(), ncols, y.data(), pool, scratch.data());
            const long after = allocations();  // before doctest's own message allocates
            CHECK_MESSAGE(after == before, "isa " << kern->isa << " ncols " << ncols);
        }
    }
}

TEST_CASE("matmul_group equals one matmul per weight, bit for bit, and allocates nothing") {
    // members: two rg weights of one activation quantization (they share each thread's quantized
    // column), a sign weight, an rg weight of another group, a third of the first kind after it;
    // tiled where the table has tiled kernels, row layout otherwise, with untiled tail rows
    const uint64_t k = 320;
    struct Member {
        const char* preset;
        uint64_t n;
    };
    const Member members[] = {
        {"q2_g32", 16 * 3 + 5}, {"q2_g32", 16 * 2}, {"b1_sign", 16 * 4 + 1}, {"q4_g64_hqq", 16 + 7}, {"q2_g32", 9}};
    const size_t count = sizeof(members) / sizeof(members[0]);
    std::vector<std::vector<uint8_t>> blobs;
    std::vector<WeightView> ws;
    for (size_t i = 0; i < count; ++i) {
        const Preset& pr = *find_preset(members[i].preset);
        const QParams p = preset_params(pr, members[i].n, k);
        blobs.push_back(random_weight(pr.type, p, members[i].n, k, 40 + i));
        ws.push_back(make_view(pr.type, p, members[i].n, k, blobs.back().data()));
    }
    std::vector<TiledWeight> tiled;
    for (WeightView& w : ws)
        if (tiled_supported(w)) {
            tiled.push_back(make_tiled(w));
            w.tiles = tiled.back().data.get();
        }
    const std::vector<float> x = randvec(k, 11);
    for (const CpuKernels* kern : kernels_available()) {
        INFO("isa " << std::string(kern->isa));
        for (int nt : {1, 2, 3}) {
            ThreadPool pool(nt);
            std::vector<const WeightView*> wp;
            std::vector<std::vector<float>> want(count), got(count);
            std::vector<float*> yp;
            for (size_t i = 0; i < count; ++i) {
                REQUIRE(matmul_groupable(ws[i], 1));
                want[i].resize(ws[i].n);
                std::vector<uint8_t> scratch(matmul_scratch_bytes(ws[i], 1, nt));
                matmul(ws[i], *kern, x.data(), 1, want[i].data(), pool, scratch.data());
                got[i].assign(ws[i].n, std::nanf(""));
                wp.push_back(&ws[i]);
                yp.push_back(got[i].data());
            }
            std::vector<uint8_t> scratch(matmul_group_scratch_bytes(wp.data(), count, nt), 0xA5);
            matmul_group(wp.data(), yp.data(), count, *kern, x.data(), pool, scratch.data());
            for (size_t i = 0; i < count; ++i)
                CHECK_MESSAGE(std::memcmp(got[i].data(), want[i].data(), 4 * ws[i].n) == 0,
                              "threads " << nt << " member " << i);
            const long before = allocations();
            matmul_group(wp.data(), yp.data(), count, *kern, x.data(), pool, scratch.data());
            const long after = allocations();
            CHECK(after == before);
        }
    }
    // a GEMM or a float weight is not a member
    CHECK_FALSE(matmul_groupable(ws[0], 2));
}
