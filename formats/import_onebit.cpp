// import_onebit.cpp: one OneBit projection -> lowbit `sign` tensor (formats/onebit.md sections 1-3,
// formats/blocktypes.md "sign").
//
//   weight        int8 [N, K/8]: packed signs, byte j of a row holds inputs 8j..8j+7 at bits 0..7,
//                 bit 1 = -1. lowbit's 1-bit code layout is this very byte order and convention,
//                 so each row is copied as it is (padded with zero bytes to the 32-input chunk).
//                 Or float [N, K] (training checkpoint): packed here as OneBit's packer does:
//                 w < 0 -> bit 1 (-1), everything else (0 included) -> bit 0 (+1).
//   input_factor  [K] -> gvec (f32), applied to x before the sign matrix
//   weight_scale  [N] -> hvec (f32), applied after it
// The parameter-free LayerNorm after the projection is a graph option (LlamaHParams::proj_norm_eps).
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "formats/hf_common.h"

namespace lb {

bool onebit_present(const TensorLookup& find, const std::string& prefix) { return find(prefix + ".input_factor"); }

ImportedTensor onebit_linear(const TensorLookup& find, const std::string& prefix, int64_t k, int64_t n,
                             const std::string& lb_name) {
    auto need = [&](const char* sfx) -> const SourceTensor& {
        const SourceTensor* t = find(prefix + sfx);
        LB_CHECK(t, "tensor '%s%s' not found (OneBit layout)", prefix.c_str(), sfx);
        return *t;
    };
    const std::string wn = prefix + ".weight", gn = prefix + ".input_factor", hn = prefix + ".weight_scale";
    const SourceTensor &w = need(".weight"), &g = need(".input_factor"), &h = need(".weight_scale");
    expect_tensor(g, gn, {DType::f32, DType::f16, DType::bf16}, {k});
    expect_tensor(h, hn, {DType::f32, DType::f16, DType::bf16}, {n});
    const bool packed = w.dtype == DType::i8 || w.dtype == DType::u8;
    if (packed) {
        LB_CHECK(k % 8 == 0, "OneBit layer '%s': K = %lld is not a multiple of 8 (packed signs)", prefix.c_str(),
                 (long long)k);
        expect_tensor(w, wn, {DType::i8, DType::u8}, {n, k / 8});
    } else {
        expect_tensor(w, wn, {DType::f32, DType::f16, DType::bf16}, {n, k});
    }
    QParams p;
    p.bits = 1;
    QuantBuilder qb(Type::sign, p, uint64_t(n), uint64_t(k));
    for (int64_t o = 0; o < n; ++o) {
        uint8_t* row = qb.code_row(uint64_t(o));
        if (packed) {
            std::memcpy(row, w.data + o * (k / 8), size_t(k / 8));
            continue;
        }
        for (int64_t i = 0; i < k; ++i) {
            const float v = read_float(w, uint64_t(o * k + i));
            LB_CHECK(!std::isnan(v), "tensor '%s': element [%lld, %lld] is NaN", wn.c_str(), (long long)o,
                     (long long)i);
            if (v < 0) row[i / 8] = uint8_t(row[i / 8] | (1u << (i % 8)));
        }
    }
    for (int64_t i = 0; i < k; ++i) qb.gvec()[i] = read_float(g, uint64_t(i));
    for (int64_t o = 0; o < n; ++o) qb.hvec()[o] = read_float(h, uint64_t(o));
    ImportedTensor r;
    r.src_desc = std::string("OneBit ") + (packed ? "packed signs" : "latent float (packed here)") + " + " +
                 dtype_name(g.dtype) + " vectors";
    r.src_bytes = (packed ? w.nbytes : uint64_t(n) * uint64_t((k + 7) / 8)) + g.nbytes + h.nbytes;
    r.t = qb.take(lb_name);
    return r;
}

}  // namespace lb
