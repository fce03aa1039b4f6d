// random_weights.h: deterministic random numbers and valid random tensors of every type
// (test data and synthetic benchmark weights).
#pragma once
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace lb {

// splitmix64: tiny, deterministic across platforms
struct Rng {
    uint64_t state;
    uint64_t next();
    float uniform();  // [0, 1)
    float normal();   // approximately N(0, 1)
};

// A valid tensor blob of tensor_nbytes(t, p, n, k) bytes with random content. int_zeros: the
// second-level tables get integer zero points, as the sources that round them write them
// (Preset::int_zeros); otherwise any fp16 value.
std::vector<uint8_t> random_weight(Type t, const QParams& p, uint64_t n, uint64_t k, uint64_t seed,
                                   bool int_zeros = false);

}  // namespace lb
