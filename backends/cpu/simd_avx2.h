// simd_avx2.h: small AVX2 + F16C helpers shared by the AVX2 translation units (kernels_avx2.cpp,
// tiles_avx2.cpp): the second-level decoding of meta codes. Internal linkage on purpose (see
// simd_avx512.h).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace lb {
namespace {

// rounded to binary16 and back, to nearest even as round_f16 does
inline __m256 round_f16x8(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }

// f16(f16(code - tz) * ts), decode_field_ref's arithmetic; IZ: every tz is zero_exact
// (core/quant.h), so the first rounding is a no-op and skipped
template <bool IZ = false>
inline __m256 field_value8(__m256 code, __m256 ts, __m256 tz) {
    const __m256 d = _mm256_sub_ps(code, tz);
    return round_f16x8(_mm256_mul_ps(IZ ? d : round_f16x8(d), ts));
}

// whether the 8 lanes of tz are all zero_exact (core/quant.h): integers of magnitude <= 1792
inline bool zero_exact8(__m256 tz) {
    const __m256 whole =
        _mm256_cmp_ps(_mm256_round_ps(tz, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), tz, _CMP_EQ_OQ);
    const __m256 small =
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), tz), _mm256_set1_ps(1792.0f), _CMP_LE_OQ);
    return _mm256_movemask_ps(_mm256_and_ps(whole, small)) == 0xff;
}

// 8 table entries (f16 scale, f16 zero) starting at `e` -> two float vectors
inline void entries8(const uint8_t* e, __m256& ts, __m256& tz) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e));
    const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi32(0xffff));
    const __m256i hi = _mm256_srli_epi32(v, 16);
    const __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);  // ts0..7 | tz0..7
    ts = _mm256_cvtph_ps(_mm256_castsi256_si128(pk));
    tz = _mm256_cvtph_ps(_mm256_extracti128_si256(pk, 1));
}

}  // namespace
}  // namespace lb
