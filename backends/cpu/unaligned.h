// unaligned.h: small helpers for the kernels of every ISA: loads of little-endian words from byte
// pointers of any alignment (a fixed-size memcpy compiles to one load), the split of a count
// into blocks of a compile-time size, and a prefetch spread over the steps of a pass. Internal linkage: the ISA files
// are compiled with different instruction sets.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// Splits [0, m) into blocks of 8 and one last block of m % 8: block(integral_constant<int, C>, j)
// for the C items from j, so that a kernel keeps C accumulators in registers.
template <class F>
static inline void blocks_of_8(uint64_t m, F&& block) {
    uint64_t j = 0;
    for (; j + 8 <= m; j += 8) block(std::integral_constant<int, 8>{}, j);
    switch (m - j) {
        case 7:
            return block(std::integral_constant<int, 7>{}, j);
        case 6:
            return block(std::integral_constant<int, 6>{}, j);
        case 5:
            return block(std::integral_constant<int, 5>{}, j);
        case 4:
            return block(std::integral_constant<int, 4>{}, j);
        case 3:
            return block(std::integral_constant<int, 3>{}, j);
        case 2:
            return block(std::integral_constant<int, 2>{}, j);
        case 1:
            return block(std::integral_constant<int, 1>{}, j);
        default:
            return;
    }
}

// Prefetches `bytes` from `p` (nullptr: nothing) evenly over `steps` steps of a pass (the a0
// kernels: the next class while reading this one; one burst would flush this class out of L1,
// and whole lines per step would end the stream early and leave the memory idle for the rest
// of the pass). step(): the lines up to the step's share, ceil(bytes / steps) more bytes.
class SlicePrefetch {
 public:
    SlicePrefetch(const uint8_t* p, uint64_t bytes, uint64_t steps)
        : p_(p), bytes_(p ? bytes : 0), inc_(p && steps ? (bytes + steps - 1) / steps : 0) {}
    void step() {
        lim_ += inc_;
        for (; off_ < lim_ && off_ < bytes_; off_ += 64) __builtin_prefetch(p_ + off_, 0, 3);
    }

 private:
    const uint8_t* p_;
    uint64_t bytes_, inc_;
    uint64_t off_ = 0, lim_ = 0;  // the next line's offset; the steps' shares so far
};

}  // namespace lb
