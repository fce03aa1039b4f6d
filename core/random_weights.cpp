// random_weights.cpp: valid random tensors of any type, for tests and the benchmarks
// (random codes, meta codes and second-level tables whose decoded scales have the magnitude
// of real LLaMA weights, about 0.02).
#include "core/random_weights.h"

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/quant.h"

namespace lb {

uint64_t Rng::next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float Rng::uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }

float Rng::normal() {
    // sum of 4 uniforms, scaled to unit variance: cheap and good enough for test data
    float s = uniform() + uniform() + uniform() + uniform() - 2.0f;
    return s * 1.7320508f;
}

static void put_f16(uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    p[0] = uint8_t(h);
    p[1] = uint8_t(h >> 8);
}

std::vector<uint8_t> random_weight(Type t, const QParams& p, uint64_t n, uint64_t k, uint64_t seed, bool int_zeros) {
    Rng rng{seed};
    const Layout L = layout(t, p, n, k);
    std::vector<uint8_t> d(L.nbytes, 0);
    const TypeTraits& tr = traits(t);
    if (tr.kind == Kind::plain) {
        for (uint64_t i = 0; i < n * k; ++i) {
            const float v = 0.02f * rng.normal();
            if (t == Type::f32) {
                std::memcpy(&d[4 * i], &v, 4);
            } else {
                const uint16_t h = t == Type::f16 ? f32_to_f16(v) : f32_to_bf16(v);
                d[2 * i] = uint8_t(h);
                d[2 * i + 1] = uint8_t(h >> 8);
            }
        }
        return d;
    }
    if (tr.kind != Kind::quant) return d;
    // codes: random below k, zero in the padding
    std::vector<uint8_t> q(L.kp, 0);
    const uint32_t qmax = (1u << p.bits) - 1;
    for (uint64_t r = 0; r < n; ++r) {
        for (uint64_t i = 0; i < k; ++i) q[i] = uint8_t(rng.next() & qmax);
        pack_codes_ref(q.data(), p.bits, L.kp, d.data() + L.off_codes + r * L.code_row_bytes);
    }
    if (t == Type::sign) {
        for (uint64_t i = 0; i < k; ++i) {
            const float v = 0.5f + rng.uniform();
            std::memcpy(&d[L.off_gvec + 4 * i], &v, 4);
        }
        for (uint64_t i = 0; i < n; ++i) {
            const float v = 0.01f + 0.02f * rng.uniform();
            std::memcpy(&d[L.off_hvec + 4 * i], &v, 4);
        }
        return d;
    }
    const uint64_t cols = t == Type::rg ? k / p.group : k;
    const float step = 0.04f / float(qmax);  // typical scale: weights span about +-0.02
    for (uint64_t r = 0; r < L.meta_rows; ++r) {
        uint8_t* srow = d.data() + L.off_scales + r * L.scale_row_bytes;
        uint8_t* zrow = d.data() + L.off_zeros + r * L.zero_row_bytes;
        for (uint64_t c = 0; c < cols; ++c) {
            if (p.sbits == 16)
                put_f16(srow + 2 * c, step * (0.5f + rng.uniform()));
            else if (p.sbits)
                set_meta_code(srow, p.sbits, c, uint32_t(rng.next() & ((1u << p.sbits) - 1)));
            if (p.zbits == 16) {
                // code mode: zero near the middle of the code range; value mode: a float offset
                const float z = p.zmode == ZeroMode::code ? float(qmax) * (0.3f + 0.4f * rng.uniform())
                                                          : 0.02f * (0.5f + rng.uniform());
                put_f16(zrow + 2 * c, z);
            } else if (p.zbits) {
                set_meta_code(zrow, p.zbits, c, uint32_t(rng.next() & ((1u << p.zbits) - 1)));
            }
        }
    }
    // second-level tables: codes c decode to (c - tz) * ts; choose ts, tz so the decoded scale is
    // positive around `step` and the decoded zero sits inside the code range (code mode) or
    // around 0.02 (value mode)
    auto table_zero = [&](float tz) { return int_zeros ? std::nearbyint(tz) : tz; };
    if (p.sbits && p.sbits <= 8) {
        const float cmax = float((1u << p.sbits) - 1);
        for (uint32_t e = 0; e < p.smap.count; ++e) {
            put_f16(&d[L.off_stab + 4 * e], step * (1.0f + rng.uniform()) / cmax);
            put_f16(&d[L.off_stab + 4 * e + 2], table_zero(-1.0f - 2.0f * rng.uniform()));
        }
    }
    if (p.zbits && p.zbits <= 8) {
        const float cmax = float((1u << p.zbits) - 1);
        for (uint32_t e = 0; e < p.zmap.count; ++e) {
            const float span = p.zmode == ZeroMode::code ? float(qmax) / cmax : 0.04f / cmax;
            put_f16(&d[L.off_ztab + 4 * e], span * (0.5f + 0.5f * rng.uniform()));
            put_f16(&d[L.off_ztab + 4 * e + 2], table_zero(-0.5f * rng.uniform()));
        }
    }
    return d;
}

}  // namespace lb
