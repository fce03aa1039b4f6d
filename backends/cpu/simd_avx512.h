// simd_avx512.h: small AVX-512 helpers shared by the AVX-512 translation units
// (kernels_avx512.cpp, tiles_avx512_gfni.cpp). Include only from files compiled with the AVX-512
// flags. Internal linkage on purpose: the two files are compiled with different ISA flags, and a
// shared inline definition could be emitted with the wider set and picked by the linker for both.
#pragma once
// GCC 12 reports its own AVX-512 headers (their _mm512_undefined_* values, GCC bug 105593) as
// using uninitialized values once inlined; the diagnostic points into the header, so it is
// silenced for the header's text only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>

#include "backends/cpu/unaligned.h"

namespace lb {
namespace {

// value = f16(f16(code - tz) * ts) (decode_field_ref's arithmetic), with vcvtps2ph rounding to
// nearest even as round_f16 does
inline __m512 round_f16x16(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// 16 table entries (f16 scale, f16 zero) from `e` -> two float vectors
inline void entries16(const uint8_t* e, __m512& ts, __m512& tz) {
    const __m512i v = _mm512_loadu_si512(e);
    ts = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
    tz = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

// IZ: every tz is zero_exact (core/quant.h), so the first rounding is a no-op and skipped
template <bool IZ = false>
inline __m512 field_value16(__m512 code, __m512 ts, __m512 tz) {
    const __m512 d = _mm512_sub_ps(code, tz);
    return round_f16x16(_mm512_mul_ps(IZ ? d : round_f16x16(d), ts));
}

// mask of the lanes of tz that are zero_exact (core/quant.h): integers of magnitude <= 1792
inline __mmask16 zero_exact16(__m512 tz) {
    const __mmask16 whole =
        _mm512_cmp_ps_mask(_mm512_roundscale_ps(tz, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), tz, _CMP_EQ_OQ);
    return _mm512_mask_cmp_ps_mask(whole, _mm512_abs_ps(tz), _mm512_set1_ps(1792.0f), _CMP_LE_OQ);
}

}  // namespace
}  // namespace lb
