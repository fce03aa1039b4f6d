// test_data.h: helpers several test files share: whole files, the llama.cpp tokenizer vectors, and
// the odd weight shapes the kernel tests run every preset on. Include after doctest.
#pragma once
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/types.h"

namespace lb_test {

inline std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, path);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

struct VocabVector {
    std::string text;
    std::vector<int32_t> ids;
};

// A llama.cpp tokenizer test pair base + ".inp" / ".out": 46 strings, each followed by
// "\n__ggml_vocab_test__\n", and one line of " id id ..." per string.
inline std::vector<VocabVector> load_vocab_vectors(const std::string& base) {
    const std::string inp = read_all(base + ".inp"), out = read_all(base + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<VocabVector> v;
    for (size_t pos = 0; pos < inp.size();) {
        const size_t e = inp.find(sep, pos);
        REQUIRE(e != std::string::npos);
        v.push_back({inp.substr(pos, e - pos), {}});
        pos = e + sep.size();
    }
    std::istringstream lines(out);
    std::string line;
    size_t i = 0;
    for (; std::getline(lines, line); ++i) {
        REQUIRE(i < v.size());
        std::istringstream ids(line);
        for (int32_t id; ids >> id;) v[i].ids.push_back(id);
    }
    REQUIRE(v.size() == 46);
    REQUIRE(i == 46);
    return v;
}

// (n, k) shapes per preset for the kernel tests: odd row counts and lengths, tails of every chunk
inline std::vector<std::pair<uint64_t, uint64_t>> kernel_test_shapes(const lb::Preset& pr) {
    const std::string name = pr.name;
    if (pr.type == lb::Type::a0) {
        if (name == "q1_g8_a0") return {{64, 256}, {128, 96}};  // meta count divisible by 128
        return {{64, 96}, {128, 200}, {320, 40}};
    }
    if (name == "q4_g64_hqqm") return {{128, 128}, {64, 1024}};
    if (name.find("g64") != std::string::npos) return {{5, 64}, {33, 576}, {64, 192}};
    if (name.find("g32") != std::string::npos) return {{1, 32}, {7, 96}, {65, 576}, {3, 4096}};
    if (name.find("g16") != std::string::npos) return {{3, 16}, {65, 48}, {17, 576}};
    if (name.find("g8") != std::string::npos) return {{1, 8}, {9, 40}, {33, 576}, {70, 200}};
    return {{1, 8}, {13, 40}, {31, 576}, {64, 1000}};  // sign
}

}  // namespace lb_test
