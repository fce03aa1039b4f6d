// test_quant.cpp: the type-traits table, the layouts and their sizes, code packing, parameter
// validation, and the reference dequantization against the worked examples of the source
// format specs (../shared/formats: greenbit.md §4.3, onebit.md §3, hqq.md §2.4).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/random_weights.h"

using namespace lb;

namespace {

void put_f16(std::vector<uint8_t>& d, uint64_t off, float v) {
    const uint16_t h = f32_to_f16(v);
    d[off] = uint8_t(h);
    d[off + 1] = uint8_t(h >> 8);
}

std::string error_of(void (*fn)()) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// the 16 code values of the greenbit.md §3 worked example (one output column, inputs 0..15)
const uint8_t kGreenbitQ[16] = {0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 2, 2, 0, 3, 0, 3};

}  // namespace

TEST_CASE("traits table: every type id has one row with a name and a layout version") {
    size_t n = 0;
    const TypeTraits* t = all_types(&n);
    REQUIRE(n >= 7);
    for (size_t i = 0; i < n; ++i) {
        CHECK(type_traits(uint32_t(t[i].type)) == &t[i]);
        CHECK(std::strlen(t[i].name) > 0);
        CHECK(t[i].layout_version >= 1);
        for (size_t j = 0; j < i; ++j) CHECK(t[j].type != t[i].type);
    }
    CHECK(type_traits(9999) == nullptr);
    // every preset names a quantized type with a traits row
    size_t np = 0;
    const Preset* p = all_presets(&np);
    for (size_t i = 0; i < np; ++i) {
        REQUIRE(type_traits(uint32_t(p[i].type)));
        CHECK(traits(p[i].type).kind == Kind::quant);
    }
}

TEST_CASE("stored bits per weight equal the sources' (+2% at most) on real shapes") {
    struct Case {
        const char* preset;
        uint64_t n, k;
        double source_bpw;
    };
    // source bpw: codes + per-group meta + second level, from the source layouts
    const Case cases[] = {
        {"q2_g8", 4096, 4096, 2 + 8.0 / 8 + 64.0 / (8 * 32)},        // GreenBit qstatistic dgs 32: 3.25
        {"q2_g16", 4096, 4096, 2 + 8.0 / 16 + 64.0 / (16 * 64)},     // dgs 64
        {"q2_g32", 4096, 4096, 2 + 10.0 / 32 + 32.0 / (32 * 4096)},  // asym: 8-bit scale + 2-bit zero codes
        {"q2_g32_v1", 4096, 11008, 2 + 10.0 / 32 + 32.0 / 11008},    // second level per row
        {"q4_g32", 4096, 4096, 4 + 12.0 / 32 + 32.0 / (32 * 64)},    // asym 4-bit, dgs 64
        {"q2_g32_qs", 2048, 5632, 2 + 8.0 / 32 + 64.0 / (32 * 32)},  // TinyLLaMA g32
        {"q4_g64_hqq", 4096, 4096, 4 + 32.0 / 64},                   // fp16 scale + zero
        {"q1_g8_a0", 4096, 4096, 1 + 16.0 / 8 + 64.0 / (8 * 128)},   // 8-bit zero+scale, group-128 fp16 meta
        {"q2_g16_a0", 4096, 11008, 2 + 32.0 / 16},
        {"b1_sign", 4096, 4096, 1 + 32.0 * (4096 + 4096) / (4096.0 * 4096)},
        {"q2_g8", 3200, 8640, 2 + 8.0 / 8 + 64.0 / (8 * 32)},  // OpenLLaMA-3B down_proj (K padded)
    };
    for (const auto& c : cases) {
        INFO(c.preset << " " << c.n << "x" << c.k);
        const Preset* pr = find_preset(c.preset);
        REQUIRE(pr);
        const double bpw = bits_per_weight(pr->type, preset_params(*pr, c.n, c.k), c.n, c.k);
        CHECK(bpw <= c.source_bpw * 1.02);
        CHECK(bpw >= c.source_bpw * 0.999);
    }
    CHECK(bits_per_weight(Type::rg, preset_params(*find_preset("q2_g8"), 4096, 4096), 4096, 4096) ==
          doctest::Approx(3.25).epsilon(1e-6));
}

TEST_CASE("code packing round-trips for every bit width") {
    for (uint32_t bits : {1u, 2u, 3u, 4u, 8u}) {
        const uint64_t kp = code_chunk(bits) * 3;
        std::vector<uint8_t> q(kp), back(kp), packed(kp / code_chunk(bits) * code_chunk_bytes(bits));
        Rng r{bits};
        for (auto& v : q) v = uint8_t(r.next() & ((1u << bits) - 1));
        pack_codes_ref(q.data(), bits, kp, packed.data());
        unpack_codes_ref(packed.data(), bits, kp, back.data());
        CHECK(q == back);
    }
    // 1-bit layout is OneBit's own byte order: onebit.md §3 example row [-122, -1] (0x86, 0xFF)
    // holds signs + - - + + + + - | - - - - - - - -, bit 1 = -1
    const uint8_t row[4] = {0x86, 0xFF, 0x00, 0x00};
    uint8_t q[32];
    unpack_codes_ref(row, 1, 32, q);
    const int signs[16] = {1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    for (int i = 0; i < 16; ++i) CHECK(1 - 2 * int(q[i]) == signs[i]);
}

TEST_CASE("meta codes of any width round-trip") {
    for (uint32_t fb : {1u, 2u, 3u, 4u, 5u, 8u, 16u}) {
        std::vector<uint8_t> row((37 * fb + 7) / 8, 0);
        for (uint64_t c = 0; c < 37; ++c)
            set_meta_code(row.data(), fb, c, uint32_t((c * 2654435761u) & ((1u << fb) - 1)));
        for (uint64_t c = 0; c < 37; ++c) CHECK(meta_code(row.data(), fb, c) == ((c * 2654435761u) & ((1u << fb) - 1)));
    }
}

TEST_CASE("GreenBit asym worked example (greenbit.md 4.3): W = (q - 2) * 0.0703125") {
    // one row of 16 inputs, group 16: zero code 1 (z = 2), scale code 200, second level
    // qscales_zeros 128, qscales_scales 2^-10 -> s = 72/1024
    QParams p;
    p.bits = 2;
    p.group = 16;
    p.sbits = 8;
    p.zbits = 2;
    p.zmode = ZeroMode::code;
    p.smap.count = 1;
    p.zmap.count = 1;
    // K must be a multiple of the group; use one row of 16
    const Layout L = layout(Type::rg, p, 1, 16);
    std::vector<uint8_t> d(L.nbytes, 0);
    std::vector<uint8_t> q(L.kp, 0);
    std::memcpy(q.data(), kGreenbitQ, 16);
    pack_codes_ref(q.data(), 2, L.kp, d.data() + L.off_codes);
    d[L.off_scales] = 200;
    set_meta_code(d.data() + L.off_zeros, 2, 0, 1);
    put_f16(d, L.off_stab, 1.0f / 1024);  // table entry: (scale, zero)
    put_f16(d, L.off_stab + 2, 128.0f);
    put_f16(d, L.off_ztab, 1.0f);  // zero codes: z = (code - (-1)) * 1 = code + 1
    put_f16(d, L.off_ztab + 2, -1.0f);
    const WeightView w = make_view(Type::rg, p, 1, 16, d.data());
    float out[16];
    dequant_row_ref(w, 0, out);
    for (int i = 0; i < 16; ++i) CHECK(out[i] == (float(kGreenbitQ[i]) - 2.0f) * 0.0703125f);
    CHECK(out[0] == -0.140625f);
    CHECK(out[1] == -0.0703125f);
}

TEST_CASE("GreenBit qstatistic worked example (greenbit.md 4.3): W = q * 0.0625 - 0.0625") {
    // byte 0xA3: scale code 10, zero code 3; scale table (2^-7, 2), zero table (2^-5, 1)
    QParams p;
    p.bits = 2;
    p.group = 16;
    p.sbits = 4;
    p.zbits = 4;
    p.zmode = ZeroMode::value;
    p.smap.count = 1;
    p.zmap.count = 1;
    const Layout L = layout(Type::rg, p, 1, 16);
    std::vector<uint8_t> d(L.nbytes, 0);
    std::vector<uint8_t> q(L.kp, 0);
    std::memcpy(q.data(), kGreenbitQ, 16);
    pack_codes_ref(q.data(), 2, L.kp, d.data() + L.off_codes);
    set_meta_code(d.data() + L.off_scales, 4, 0, 0xA3 >> 4);
    set_meta_code(d.data() + L.off_zeros, 4, 0, 0xA3 & 15);
    put_f16(d, L.off_stab, 1.0f / 128);
    put_f16(d, L.off_stab + 2, 2.0f);
    put_f16(d, L.off_ztab, 1.0f / 32);
    put_f16(d, L.off_ztab + 2, 1.0f);
    const WeightView w = make_view(Type::rg, p, 1, 16, d.data());
    float out[16];
    dequant_row_ref(w, 0, out);
    for (int i = 0; i < 16; ++i) CHECK(out[i] == float(kGreenbitQ[i]) * 0.0625f - 0.0625f);
    CHECK(out[0] == -0.0625f);
    CHECK(out[3] == 0.125f);
}

TEST_CASE("HQQ axis-0 1-bit closed form (hqq.md 2.3/2.4): rows j, j+N/8, ... share one scale/zero per column") {
    // N = 16, K = 2, group 8: row class r = o mod 2; fp16 scale/zero of the worked example
    QParams p;
    p.bits = 1;
    p.group = 8;
    p.sbits = 16;
    p.zbits = 16;
    p.zmode = ZeroMode::code;
    const uint64_t n = 16, k = 2;
    const Layout L = layout(Type::a0, p, n, k);
    std::vector<uint8_t> d(L.nbytes, 0);
    // class 0: column 0 scale 1.3496 zero 0.48145, column 1 scale 1.5498 zero 0.51611
    put_f16(d, L.off_scales + 0, 1.3496f);
    put_f16(d, L.off_scales + 2, 1.5498f);
    put_f16(d, L.off_zeros + 0, 0.48145f);
    put_f16(d, L.off_zeros + 2, 0.51611f);
    // row 0, column 0: bit 1; row 2 column 0: bit 0
    std::vector<uint8_t> q(L.kp, 0);
    q[0] = 1;
    pack_codes_ref(q.data(), 1, L.kp, d.data() + L.off_codes + 0 * L.code_row_bytes);
    const WeightView w = make_view(Type::a0, p, n, k, d.data());
    float r0[2], r2[2];
    dequant_row_ref(w, 0, r0);
    dequant_row_ref(w, 2, r2);
    // hqq's value: 0.69971 and -0.64990 (two fp16 roundings); ours rounds once: within 1 fp16 ulp
    CHECK(std::fabs(r0[0] - 0.69971f) <= 1.0f / 2048);
    CHECK(std::fabs(r2[0] - -0.64990f) <= 1.0f / 2048);
}

TEST_CASE("validation names the bad field") {
    CHECK(error_of([] {
              QParams p = preset_params(*find_preset("q2_g8"), 64, 64);
              p.group = 12;
              validate(Type::rg, p, 64, 64);
          }).find("group 12") != std::string::npos);
    CHECK(error_of([] {
              QParams p = preset_params(*find_preset("q2_g8"), 64, 64);
              p.smap.count = 3;
              validate(Type::rg, p, 64, 64);
          }).find("rg scale map") != std::string::npos);
    CHECK(error_of([] {
              QParams p;
              p.bits = 5;
              p.group = 8;
              validate(Type::rg, p, 8, 8);
          }).find("code bits 5") != std::string::npos);
    CHECK(error_of([] { validate(Type::f32, QParams{}, uint64_t(1) << 40, 4); }).find("shape") != std::string::npos);
    CHECK(error_of([] {
              QParams p;
              p.bits = 2;
              validate(Type::f16, p, 4, 4);
          }).find("no quantization parameters") != std::string::npos);
    CHECK(error_of([] { (void)preset_params(*find_preset("q1_g8_a0"), 12, 64); }).find("divisible") !=
          std::string::npos);
}

TEST_CASE("dequantized random weights have the magnitude of real weights") {
    size_t np = 0;
    const Preset* p = all_presets(&np);
    for (size_t i = 0; i < np; ++i) {
        const uint64_t n = 128, k = 256;
        INFO(p[i].name);
        const QParams qp = preset_params(p[i], n, k);
        const auto blob = random_weight(p[i].type, qp, n, k, 1);
        const WeightView w = make_view(p[i].type, qp, n, k, blob.data());
        std::vector<float> row(k);
        double ss = 0;
        for (uint64_t o = 0; o < n; ++o) {
            dequant_row_ref(w, o, row.data());
            for (float v : row) {
                REQUIRE(std::isfinite(v));
                ss += double(v) * v;
            }
        }
        const double rms = std::sqrt(ss / double(n * k));
        CHECK(rms > 0.001);
        CHECK(rms < 0.2);
    }
}

TEST_CASE("GGUF Q4_0, Q4_1 and Q8_0 blocks are exact in rg value form") {
    // one row of 64 inputs = two blocks of 32; the GGUF formulas evaluated directly are the oracle
    Rng rng{99};
    for (int kind = 0; kind < 3; ++kind) {
        const char* preset = kind == 2 ? "q8_g32_f16" : "q4_g32_f16";
        const QParams p = preset_params(*find_preset(preset), 1, 64);
        const Layout L = layout(Type::rg, p, 1, 64);
        std::vector<uint8_t> d(L.nbytes, 0), q(L.kp, 0);
        float want[64];
        for (int b = 0; b < 2; ++b) {
            const float dd = round_f16(0.001f + 0.01f * rng.uniform());
            const float mm = round_f16(-0.05f * rng.uniform());
            for (int i = 0; i < 32; ++i) {
                const int code = kind == 2 ? int(rng.next() % 256) : int(rng.next() % 16);
                q[32 * b + i] = uint8_t(code);
                // Q4_0: d * (q - 8); Q4_1: d * q + m; Q8_0: d * qi with qi = code - 128
                want[32 * b + i] = kind == 0   ? dd * float(code - 8)
                                   : kind == 1 ? dd * float(code) + mm
                                               : dd * float(code - 128);
            }
            // rg value mode: w = q * s - z
            const float z = kind == 0 ? 8 * dd : kind == 1 ? -mm : 128 * dd;
            put_f16(d, L.off_scales + 2 * b, dd);
            put_f16(d, L.off_zeros + 2 * b, z);
        }
        pack_codes_ref(q.data(), p.bits, L.kp, d.data() + L.off_codes);
        const WeightView w = make_view(Type::rg, p, 1, 64, d.data());
        float out[64];
        dequant_row_ref(w, 0, out);
        for (int i = 0; i < 64; ++i) CHECK(out[i] == want[i]);
    }
}

TEST_CASE("GreenBit asym 4-bit with a second level per 64 rows picks the right table entry") {
    // N = 128 rows, K = 64 (G = 2): the table entry of row o, group c is (o / 64) * 2 + c
    const uint64_t n = 128, k = 64;
    const QParams p = preset_params(*find_preset("q4_g32"), n, k);
    CHECK(p.smap.count == 4);
    const Layout L = layout(Type::rg, p, n, k);
    std::vector<uint8_t> d(L.nbytes, 0);
    for (uint32_t e = 0; e < 4; ++e) {
        put_f16(d, L.off_stab + 4 * e, float(1 << e) / 1024);  // tscale = 2^e / 1024
        put_f16(d, L.off_stab + 4 * e + 2, 0.0f);
    }
    put_f16(d, L.off_ztab, 1.0f);
    put_f16(d, L.off_ztab + 2, -1.0f);
    std::vector<uint8_t> q(L.kp, 9);
    for (uint64_t o = 0; o < n; ++o) {
        pack_codes_ref(q.data(), 4, L.kp, d.data() + L.off_codes + o * L.code_row_bytes);
        for (uint64_t c = 0; c < 2; ++c) {
            d[L.off_scales + o * L.scale_row_bytes + c] = 16;                       // scale code 16
            set_meta_code(d.data() + L.off_zeros + o * L.zero_row_bytes, 4, c, 3);  // z = 4
        }
    }
    const WeightView w = make_view(Type::rg, p, n, k, d.data());
    float out[64];
    for (uint64_t o : {0ull, 63ull, 64ull, 127ull}) {
        dequant_row_ref(w, o, out);
        for (uint64_t i = 0; i < k; ++i) {
            const uint64_t e = (o / 64) * 2 + i / 32;
            CHECK(out[i] == (9.0f - 4.0f) * 16.0f * float(1 << e) / 1024);
        }
    }
}

TEST_CASE("zero_exact holds exactly when f16(c - tz) is a no-op for every 8-bit code") {
    CHECK(zero_exact(0.0f));
    CHECK(zero_exact(-3.0f));
    CHECK(zero_exact(1792.0f));
    CHECK_FALSE(zero_exact(0.5f));
    CHECK_FALSE(zero_exact(1794.0f));  // 255 + 1794 is odd and above 2048: rounds
    CHECK_FALSE(zero_exact(std::numeric_limits<float>::infinity()));
    CHECK_FALSE(zero_exact(std::numeric_limits<float>::quiet_NaN()));
    // brute force over every finite f16 zero: wherever it says exact, no code rounds
    int exact = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        const float tz = f16_to_f32(uint16_t(h));
        if (!zero_exact(tz)) continue;
        ++exact;
        for (int c = 0; c < 256; ++c) REQUIRE(round_f16(float(c) - tz) == float(c) - tz);
    }
    CHECK(exact == 2 * 1792 + 1 + 1);  // the integers -1792..1792, and -0
}

TEST_CASE("second_level_exact holds exactly when both fp16 roundings are no-ops") {
    CHECK(second_level_exact(1.0f, -1.0f));  // GreenBit asym zero codes: z = code + 1
    CHECK(second_level_exact(1.0f / 1024, 128.0f));
    CHECK_FALSE(second_level_exact(0.3f, 0.0f));  // not a power of two
    CHECK_FALSE(second_level_exact(1.0f, 0.5f));  // fractional zero: c - z needs rounding
    CHECK_FALSE(second_level_exact(1.0f, 4000.0f));
    CHECK_FALSE(second_level_exact(1.0f / 65536, 0.0f));  // results would be subnormal
    // brute force: wherever it says exact, the twice-rounded value equals the plain product
    for (float ts : {1.0f / 16384, 0.125f, 1.0f, 16.0f, -2.0f})
        for (float tz : {-1792.0f, -1.0f, 0.0f, 7.0f, 1792.0f}) {
            REQUIRE(second_level_exact(ts, tz));
            for (int c = 0; c < 256; ++c) CHECK(round_f16(round_f16(float(c) - tz) * ts) == (float(c) - tz) * ts);
        }
}
