// synthetic.h: LLaMA checkpoints of real geometries with random weights of one lowbit preset, for
// whole-model benchmarks (`lowbit bench model --synthetic NAME --type PRESET`) and tests.
// All 7 projections of every layer use the preset; token_embd and the norms are f32; output.weight
// (untied) is f16 by default, or the preset too.
#pragma once
#include <cstdint>
#include <string>

#include "models/llama.h"

namespace lb {

struct SyntheticGeometry {
    const char* name;  // "tinyllama-1.1b", "llama2-7b", "test-tiny", ...
    LlamaHParams hp;
    const char* note;  // what real model has this shape
};
const SyntheticGeometry* synthetic_geometries(size_t* count);
const SyntheticGeometry* find_synthetic_geometry(const std::string& name);  // nullptr if unknown
std::string synthetic_geometry_names();                                     // "a, b, c" for messages

struct SyntheticOptions {
    std::string preset;               // block type of the 7 projections (core/types.h presets)
    std::string output_type = "f16";  // output.weight: "f16", "f32" or "preset" (the same preset)
    uint64_t seed = 1;
    int threads = 1;  // threads that generate the random weights
};

// Throws lb::Error naming the preset and the first projection whose shape it does not fit, before
// any weight is made. Each tensor's bytes are made once and moved into the checkpoint (no second copy).
LlamaCheckpoint synthetic_llama(const LlamaHParams& hp, const SyntheticOptions& o);

}  // namespace lb
