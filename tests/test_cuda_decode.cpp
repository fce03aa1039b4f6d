// test_cuda_decode.cpp: the block decoder shared by the host and the CUDA device
// (backends/cuda/decode.h), compiled here by the host C++ compiler in every build (with or
// without nvcc) and checked bit for bit against the scalar reference: fp16 conversions against
// core/half.h, code extraction against unpack_codes_ref, meta fields against meta_code /
// decode_field_ref, and whole rows against dequant_row_ref for every preset on odd shapes.
// The CUDA kernels call exactly these functions; what this test cannot show is how the device
// compiles them (see backends/cuda/README.md).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "backends/cuda/qweight.h"
#if defined(LB_HAVE_CUDA)
#include <dlfcn.h>

#include "backends/cuda/cublas_lazy.h"
#endif
#include "core/half.h"
#include "core/quant.h"
#include "core/random_weights.h"
#include "test_data.h"

using namespace lb;

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// every row of w through the shared decoder equals dequant_row_ref bit for bit
int count_mismatches(const WeightView& w) {
    const dec::QWeight q = dec::to_qweight(w, w.data);
    std::vector<float> ref(w.k);
    int bad = 0;
    for (uint64_t o = 0; o < w.n; ++o) {
        dequant_row_ref(w, o, ref.data());
        for (uint64_t i = 0; i < w.k; ++i)
            if (!same_bits(dec::weight_at(q, o, i), ref[i])) ++bad;
    }
    return bad;
}

}  // namespace

TEST_CASE("shared fp16 conversions equal core/half.h bit for bit") {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float a = dec::f16_f32(uint16_t(h)), b = f16_to_f32(uint16_t(h));
        if (!same_bits(a, b)) FAIL("f16 " << h);
    }
    // every float with the low 5 bits set to a varying pattern: covers every rounding boundary of
    // the normal and the subnormal f16 ranges
    int bad = 0;
    for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 29) {
        const float f = f32_from_bits(uint32_t(u));
        if (dec::f32_f16(f) != f32_to_f16(f)) ++bad;
    }
    // exhaustive around the subnormal range and the overflow threshold
    for (uint32_t u = 0x32000000u; u < 0x38900000u; u += 1)
        bad += dec::f32_f16(f32_from_bits(u)) != f32_to_f16(f32_from_bits(u));
    for (uint32_t u = 0x477f0000u; u < 0x47810000u; ++u)
        bad += dec::f32_f16(f32_from_bits(u)) != f32_to_f16(f32_from_bits(u));
    CHECK(bad == 0);
}

TEST_CASE("shared code extraction equals unpack_codes_ref for every bit width") {
    Rng r{7};
    for (uint32_t bits : {1u, 2u, 3u, 4u, 8u}) {
        const uint64_t kp = 4 * 128;
        std::vector<uint8_t> q(kp), row(kp), back(kp);
        for (auto& c : q) c = uint8_t(r.next() & ((1u << bits) - 1u));
        pack_codes_ref(q.data(), bits, kp, row.data());
        unpack_codes_ref(row.data(), bits, kp, back.data());
        REQUIRE(back == q);
        CHECK(dec::chunk_inputs(bits) == code_chunk(bits));
        CHECK(dec::chunk_bytes(bits) == code_chunk_bytes(bits));
        int bad = 0;
        for (uint64_t i = 0; i < kp; ++i) {
            bad += dec::code_at_rt(row.data(), bits, i) != q[i];
            switch (bits) {
                case 1:
                    bad += dec::code_at<1>(row.data(), i) != q[i];
                    break;
                case 2:
                    bad += dec::code_at<2>(row.data(), i) != q[i];
                    break;
                case 3:
                    bad += dec::code_at<3>(row.data(), i) != q[i];
                    break;
                case 4:
                    bad += dec::code_at<4>(row.data(), i) != q[i];
                    break;
                default:
                    bad += dec::code_at<8>(row.data(), i) != q[i];
                    break;
            }
        }
        CHECK_MESSAGE(bad == 0, "bits " << bits);
    }
}

TEST_CASE("shared meta fields and table decode equal the reference for every field width") {
    Rng r{11};
    std::vector<uint8_t> row(64);
    for (auto& b : row) b = uint8_t(r.next());
    for (uint32_t fb : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 16u}) {
        const uint64_t cols = row.size() * 8 / fb;
        for (uint64_t c = 0; c < cols; ++c) REQUIRE(dec::meta_field(row.data(), fb, c) == meta_code(row.data(), fb, c));
    }
    // tables with rounding in both fp16 steps, every map form, every field width
    std::vector<uint8_t> tab(4 * 37);
    for (size_t e = 0; e < 37; ++e) {
        const uint16_t ts = f32_to_f16(0.01f + 0.37f * r.uniform()), tz = f32_to_f16(20.0f * r.uniform() - 7.3f);
        std::memcpy(&tab[4 * e], &ts, 2);
        std::memcpy(&tab[4 * e + 2], &tz, 2);
    }
    const MetaMap maps[] = {MetaMap{1, 0, 0, 0, 1}, MetaMap{2, 5, 1, 0, 37}, MetaMap{1, 7, 1, 37, 37}};
    int bad = 0;
    for (const MetaMap& m : maps)
        for (uint32_t fb : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 16u})
            for (uint64_t mr = 0; mr < 6; ++mr)
                for (uint64_t c = 0; c < 5; ++c) {
                    const float a = dec::field_value(row.data(), tab.data(), fb, dec::to_map(m), mr, c, 1.5f);
                    const float b = decode_field_ref(row.data(), tab.data(), fb, m, mr, c, 1.5f);
                    bad += !same_bits(a, b);
                }
    CHECK(bad == 0);
}

TEST_CASE("shared weight decoder equals dequant_row_ref bit for bit for every preset, odd shapes") {
    size_t np = 0;
    const Preset* presets = all_presets(&np);
    REQUIRE(np > 0);
    for (size_t ip = 0; ip < np; ++ip) {
        const Preset& pr = presets[ip];
        for (auto [n, k] : lb_test::kernel_test_shapes(pr)) {
            INFO("preset " << std::string(pr.name) << " n " << n << " k " << k);
            const QParams p = preset_params(pr, n, k);
            const std::vector<uint8_t> blob = random_weight(pr.type, p, n, k, n * 131 + k + ip);
            CHECK(count_mismatches(make_view(pr.type, p, n, k, blob.data())) == 0);
        }
    }
}

TEST_CASE("shared weight decoder: rg with every meta field width, code and value zero modes, table maps") {
    for (int sb : {0, 4, 8, 16})
        for (int zb : {0, 1, 3, 5, 8, 16})
            for (int G : {8, 16, 32})
                for (int mapkind = 0; mapkind < 3; ++mapkind) {
                    const uint64_t n = 5, k = 8 * uint64_t(G) + 0;
                    QParams p;
                    p.bits = uint8_t(G == 16 ? 3 : G == 8 ? 2 : 4);
                    p.group = uint32_t(G);
                    p.sbits = uint8_t(sb);
                    p.zbits = uint8_t(zb);
                    p.zmode = zb % 2 ? ZeroMode::code : ZeroMode::value;
                    MetaMap m;
                    if (mapkind == 0) {
                        m.count = 1;
                    } else if (mapkind == 1) {
                        m.rdiv = 2, m.rstride = 8, m.cstride = 1, m.count = 24;
                    } else {
                        m.rdiv = 1, m.rstride = 8, m.cstride = 1, m.period = 11, m.count = 11;
                    }
                    if (sb && sb <= 8) p.smap = m;
                    if (zb && zb <= 8) p.zmap = m;
                    INFO("sbits " << sb << " zbits " << zb << " G " << G << " map " << mapkind);
                    const std::vector<uint8_t> blob =
                        random_weight(Type::rg, p, n, k, uint64_t(sb * 100 + zb * 10 + G));
                    CHECK(count_mismatches(make_view(Type::rg, p, n, k, blob.data())) == 0);
                }
}

#if defined(LB_HAVE_CUDA)
// (no device needed: only the library is loaded, nothing is called)
TEST_CASE("cuBLAS is not linked: the first use loads it with every entry point the backend calls") {
    const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    CHECK(dlopen(soname.c_str(), RTLD_NOW | RTLD_NOLOAD) == nullptr);  // not mapped at start
    const cuda::Cublas& c = cuda::cublas();
    CHECK(bool(c.create));
    CHECK(bool(c.destroy));
    CHECK(bool(c.set_stream));
    CHECK(bool(c.gemm_ex));
    CHECK(bool(c.gemm_strided_batched_ex));
    void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_NOLOAD);
    CHECK(h != nullptr);
    CHECK(reinterpret_cast<void*>(c.create) == dlsym(h, "cublasCreate_v2"));
    if (h) dlclose(h);  // (the NOLOAD handle's reference only)
}
#endif
