// qweight.h: host-side construction of the POD weight descriptor of backends/cuda/decode.h from a
// lowbit WeightView (core/quant.h); `data` may point at host memory (tests) or at the device copy
// of the same blob (the CUDA backend), since the descriptor holds only offsets and parameters.
#pragma once
#include "backends/cuda/decode.h"
#include "core/quant.h"

namespace lb::dec {

inline Map to_map(const MetaMap& m) { return Map{m.rdiv, m.rstride, m.cstride, m.period}; }

// w must be a quantized view (rg, a0 or sign)
inline QWeight to_qweight(const WeightView& w, const uint8_t* data) {
    QWeight q{};
    q.data = data;
    q.n = w.n;
    q.k = w.k;
    q.geo = w.type == Type::rg ? geo_rg : w.type == Type::a0 ? geo_a0 : geo_sign;
    q.bits = w.p.bits;
    q.sbits = w.p.sbits;
    q.zbits = w.p.zbits;
    q.zmode_value = w.p.zmode == ZeroMode::value ? 1u : 0u;
    q.group = w.p.group;
    q.smap = to_map(w.p.smap);
    q.zmap = to_map(w.p.zmap);
    q.code_row_bytes = w.lay.code_row_bytes;
    q.scale_row_bytes = w.lay.scale_row_bytes;
    q.zero_row_bytes = w.lay.zero_row_bytes;
    q.off_codes = w.lay.off_codes;
    q.off_scales = w.lay.off_scales;
    q.off_zeros = w.lay.off_zeros;
    q.off_stab = w.lay.off_stab;
    q.off_ztab = w.lay.off_ztab;
    q.off_gvec = w.lay.off_gvec;
    q.off_hvec = w.lay.off_hvec;
    return q;
}

}  // namespace lb::dec
