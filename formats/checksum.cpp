// checksum.cpp: lbsum64 (see checksum.h and the "Checksum" section of formats/lbf.md).
#include "formats/checksum.h"

#include <cstring>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "lbsum64 reads words as little-endian");

namespace lb {
namespace {

// Odd 64-bit multipliers: 2^64 / golden ratio, and the two multipliers of the splitmix64 finalizer.
constexpr uint64_t K1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t K2 = 0xBF58476D1CE4E5B9ull;
constexpr uint64_t K3 = 0x94D049BB133111EBull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// One word into one accumulator. Bijective in `acc` for fixed `w` and in `w` for fixed `acc`
// (xor, rotate and multiplication by an odd constant are all invertible), so no single-word
// change can cancel out. The product w * K2 does not depend on acc, so per stripe the serial
// chain of a lane is only xor + rotate + multiply.
inline uint64_t step(uint64_t acc, uint64_t w) { return rotl(acc ^ (w * K2), 29) * K1; }

// Avalanche: every input bit affects every output bit with probability ~1/2.
inline uint64_t fmix(uint64_t x) {
    x ^= x >> 31;
    x *= K2;
    x ^= x >> 29;
    x *= K3;
    x ^= x >> 32;
    return x;
}

}  // namespace

uint64_t lbsum64(const void* data, size_t n, uint64_t seed) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    // four lanes over 32-byte stripes: lane j takes bytes [32 s + 8 j, 32 s + 8 j + 8)
    uint64_t v0 = seed + 1 * K1, v1 = seed + 2 * K1, v2 = seed + 3 * K1, v3 = seed + 4 * K1;
    size_t i = 0;
    for (; n - i >= 32; i += 32) {
        v0 = step(v0, load64(p + i));
        v1 = step(v1, load64(p + i + 8));
        v2 = step(v2, load64(p + i + 16));
        v3 = step(v3, load64(p + i + 24));
    }
    // fold the lanes, in order, into a state that also depends on the total length
    uint64_t h = seed ^ (uint64_t(n) * K3);
    h = (h ^ fmix(v0)) * K1;
    h = (h ^ fmix(v1)) * K1;
    h = (h ^ fmix(v2)) * K1;
    h = (h ^ fmix(v3)) * K1;
    // tail: remaining whole words, then 1..7 last bytes as a zero-extended little-endian word
    for (; n - i >= 8; i += 8) h = step(h, load64(p + i));
    if (i < n) {
        uint64_t t = 0;
        std::memcpy(&t, p + i, n - i);
        h = step(h, t);
    }
    return fmix(h);
}

}  // namespace lb
