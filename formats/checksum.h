// checksum.h: lbsum64, the 64-bit checksum of .lbf files. It guards each tensor's data and the
// index (metadata + tensor directory) against corruption; it is not cryptographic. Defined bit by
// bit in formats/lbf.md ("Checksum"), so that other implementations can reproduce it.
//
// Speed matters because model files are GBs: four independent multiply-rotate lanes over 32-byte
// stripes keep the multiplier busy (about 10 GB/s on one core; see the measurement in lbf.md).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lb {

// Checksum of `n` bytes at `data`. `seed` lets a caller chain two regions (the .lbf index
// checksum is seeded with the checksum of the first 32 header bytes); tensors use seed 0.
uint64_t lbsum64(const void* data, size_t n, uint64_t seed = 0);

}  // namespace lb
