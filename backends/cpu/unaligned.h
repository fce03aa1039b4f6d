// unaligned.h: loads of little-endian words from byte pointers of any alignment, for the kernels
// of every ISA (a fixed-size memcpy compiles to one load). Internal linkage: the ISA files are
// compiled with different instruction sets.
#pragma once
#include <cstdint>
#include <cstring>

namespace lb {

static inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

static inline uint64_t load_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

}  // namespace lb
