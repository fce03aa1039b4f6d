// fuzz_lbf.cpp: libFuzzer target for the .lbf reader. Any input must either parse or throw
// lb::Error; anything else (a crash, a sanitizer report, another exception) is a bug.
// Built by tests/fuzz/CMakeLists.txt with LB_FUZZ=ON. Compiled with LB_FUZZ_SEED_MAIN instead,
// this file is the seed generator: it writes a few valid files with the real writer.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/types.h"
#include "formats/checksum.h"
#include "formats/lbf.h"

#ifndef LB_FUZZ_SEED_MAIN

namespace {

// parse, then touch everything the accessors offer
void exercise(const uint8_t* data, size_t size) {
    try {
        const auto f = lb::LbfFile::from_memory(data, size, "fuzz");
        const lb::Metadata& m = f->metadata();
        for (const auto& [key, value] : m.entries()) {
            (void)lb::meta_value_summary(value);
            if (m.find(key) != &value) __builtin_trap();
            try {
                (void)m.get_u32(key);  // throws for every other type: the error path is exercised too
            } catch (const lb::Error&) {
            }
        }
        for (const auto& t : f->tensors()) {
            if (f->find_tensor(t.name) != &t) __builtin_trap();
            (void)lb::describe(t.type, t.params);
            (void)lb::bits_per_weight(t.type, t.params, t.n(), t.k());
        }
        (void)f->verify_checksums();  // reads every tensor byte: catches any bounds mistake
    } catch (const lb::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    exercise(data, size);
    // Mutated metadata or directory bytes almost always fail the index checksum, which is checked
    // last. Parse a copy with the checksum made right too, so mutations reach every structural check.
    uint64_t data_offset = 0;
    if (size >= lb::lbf::kHeaderBytes) std::memcpy(&data_offset, data + 24, 8);
    if (data_offset >= lb::lbf::kHeaderBytes && data_offset <= size) {
        std::vector<uint8_t> copy(data, data + size);
        const uint64_t sum = lb::lbsum64(copy.data() + 40, data_offset - 40, lb::lbsum64(copy.data(), 32));
        std::memcpy(copy.data() + 32, &sum, 8);
        exercise(copy.data(), copy.size());
    }
    return 0;
}

#else  // the seed generator: fuzz_lbf_seeds OUT_DIR

#include <cstdio>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: fuzz_lbf_seeds OUT_DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    try {
        lb::LbfWriter(dir + "/seed_empty.lbf").finish();

        lb::LbfWriter w(dir + "/seed_all_types.lbf");
        w.set("u8", uint8_t(1));
        w.set("i8", int8_t(-1));
        w.set("u16", uint16_t(2));
        w.set("i16", int16_t(-2));
        w.set("u32", uint32_t(3));
        w.set("i32", int32_t(-3));
        w.set("u64", uint64_t(4));
        w.set("i64", int64_t(-4));
        w.set("f32", 0.5f);
        w.set("f64", 0.25);
        w.set("bool", true);
        w.set("string", "h\xC3\xA9llo");
        w.set("a.u8", std::vector<uint8_t>{1, 2});
        w.set("a.i16", std::vector<int16_t>{-1, 1});
        w.set("a.u32", std::vector<uint32_t>{1, 2, 3});
        w.set("a.f32", std::vector<float>{1.0f});
        w.set("a.f64", std::vector<double>{2.0});
        w.set("a.bool", std::vector<bool>{true, false});
        w.set("a.string", std::vector<std::string>{"a", "", "bc"});
        const std::vector<float> f8(8, 1.0f);
        w.add_tensor("t.f32", lb::Type::f32, lb::QParams{}, {4, 2}, f8.data(), 32);
        w.add_tensor_owned("t.f16", lb::Type::f16, lb::QParams{}, {3}, std::vector<uint8_t>(6, 0x3c));
        for (const char* preset : {"q2_g8", "q1_g8_a0", "b1_sign"}) {
            const lb::Preset& pr = *lb::find_preset(preset);
            const uint64_t n = 16, k = 128;
            const lb::QParams p = lb::preset_params(pr, n, k);
            w.add_tensor_owned(std::string("t.") + preset, pr.type, p, {k, n},
                               std::vector<uint8_t>(lb::tensor_nbytes(pr.type, p, n, k), 0x11));
        }
        w.finish();
        for (const char* name : {"/seed_empty.lbf", "/seed_all_types.lbf"})  // the seeds must be valid
            if (!lb::LbfFile::open(dir + name)->verify_checksums().empty()) throw lb::Error("bad checksum in seed");
    } catch (const lb::Error& e) {
        std::fprintf(stderr, "fuzz_lbf_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}

#endif
