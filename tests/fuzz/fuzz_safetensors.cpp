// fuzz_safetensors.cpp: libFuzzer target for the safetensors reader (SafetensorsFile::from_memory).
// Any input must either parse or throw lb::Error; anything else is a bug. Every tensor the reader
// hands out must lie inside the input and match its shape, and no two may overlap. Seeds: the
// safetensors fixtures of tests/fixtures/containers (tests/run_all.sh copies them).
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = lb::SafetensorsFile::from_memory(data, size, "fuzz");
        std::vector<std::pair<const uint8_t*, const uint8_t*>> ranges;
        for (const auto& [name, t] : f->tensors()) {
            if (f->find(name) != &t) __builtin_trap();
            if (t.nbytes != t.numel() * lb::dtype_size(t.dtype)) __builtin_trap();
            if (t.nbytes == 0) continue;
            if (t.data < data + 8 + f->header_size() || t.data + t.nbytes > data + size) __builtin_trap();
            ranges.emplace_back(t.data, t.data + t.nbytes);
        }
        std::sort(ranges.begin(), ranges.end());
        for (size_t i = 1; i < ranges.size(); i++)
            if (ranges[i].first < ranges[i - 1].second) __builtin_trap();
        for (const auto& [k, v] : f->metadata()) (void)(k.size() + v.size());
    } catch (const lb::Error&) {
    }
    return 0;
}
