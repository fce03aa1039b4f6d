// test_gguf.cpp: the GGUF reader (formats/gguf.h) on the two real llama.cpp vocab files
// (../../shared/data/llama.cpp-vocab, see its README section 4), on small files with tensors
// built here byte by byte, and on malformed input: every truncation point of the header region,
// many cut points further on, bad magic and version, absurd counts and lengths. Every bad file
// must give an lb::Error naming the problem, never a crash.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"

using namespace lb;
using Bytes = std::vector<uint8_t>;

namespace {

const char* kSpm = "../../shared/data/llama.cpp-vocab/ggml-vocab-llama-spm.gguf";
const char* kGpt2 = "../../shared/data/llama.cpp-vocab/ggml-vocab-gpt-2.gguf";

Bytes read_all(const char* path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE(f);
    return Bytes(std::istreambuf_iterator<char>(f), {});
}

// Parses a copy of exactly `n` bytes (so that a sanitizer sees any read past the end).
std::unique_ptr<GgufFile> parse_prefix(const Bytes& b, size_t n) {
    Bytes copy(b.begin(), b.begin() + long(n));
    return GgufFile::from_memory(copy.data(), copy.size(), "cut");
}

// Little-endian GGUF writer for hand-made files.
struct Builder {
    Bytes b;
    template <class T>
    Builder& put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    Builder& str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Builder& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        b.insert(b.end(), {'G', 'G', 'U', 'F'});
        return put(version).put(n_tensors).put(n_kv);
    }
    void pad_to(size_t align) {
        while (b.size() % align) b.push_back(0);
    }
};

void check_throws(const Bytes& b, const std::string& needle) {
    try {
        GgufFile::from_memory(b.data(), b.size(), "test");
        FAIL("no error; expected one mentioning '" << needle << "'");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK_MESSAGE(msg.find(needle) != std::string::npos, msg);
    }
}

// A file with metadata general.alignment = 32 and two tensors: f32 [4, 2] at 0, q8_0 [32] at 32.
Builder two_tensors() {
    Builder g;
    g.header(2, 2);
    g.str("general.alignment").put<uint32_t>(gguf::u32).put<uint32_t>(32);
    g.str("general.name").put<uint32_t>(gguf::string).str("tiny");
    g.str("a").put<uint32_t>(2).put<uint64_t>(4).put<uint64_t>(2).put<uint32_t>(0).put<uint64_t>(0);
    g.str("b").put<uint32_t>(1).put<uint64_t>(32).put<uint32_t>(8).put<uint64_t>(32);
    g.pad_to(32);
    for (int i = 0; i < 32 + 34; i++) g.b.push_back(uint8_t(i));
    return g;
}

}  // namespace

TEST_CASE("gguf: the llama-spm vocab file") {
    auto f = GgufFile::open(kSpm);
    CHECK(f->version() == 3);
    CHECK(f->tensors().empty());
    CHECK(f->metadata().size() == 22);
    CHECK(f->data_offset() == f->file_size());  // the file ends right after the key/values
    const Metadata& m = f->metadata();
    CHECK(m.get_string("tokenizer.ggml.model") == "llama");
    CHECK(m.get_string("tokenizer.ggml.pre") == "default");
    const auto& tokens = m.get_array<std::string>("tokenizer.ggml.tokens");
    REQUIRE(tokens.size() == 32000);
    CHECK(tokens[1] == "<s>");
    CHECK(tokens[3] == "<0x00>");
    CHECK(tokens[29871] == "\xE2\x96\x81");  // "▁"
    CHECK(m.get_array<float>("tokenizer.ggml.scores").size() == 32000);
    const auto& types = m.get_array<int32_t>("tokenizer.ggml.token_type");
    REQUIRE(types.size() == 32000);
    CHECK(types[0] == 2);
    CHECK(types[1] == 3);
    CHECK(types[3] == 6);
    CHECK(types[259] == 1);
    CHECK(f->get_int("tokenizer.ggml.bos_token_id") == 1);
    CHECK(f->get_int("tokenizer.ggml.eos_token_id") == 2);
    CHECK(f->get_int("tokenizer.ggml.unknown_token_id") == 0);
    CHECK(m.get_bool("tokenizer.ggml.add_bos_token"));
    CHECK_FALSE(m.get_bool("tokenizer.ggml.add_eos_token"));
    CHECK(f->get_int("llama.block_count") == 32);
    CHECK(f->get_int("no.such.key", -7) == -7);
    CHECK_THROWS_AS(f->get_int("tokenizer.ggml.model"), Error);
    CHECK_THROWS_AS(m.get_u64("tokenizer.ggml.tokens"), Error);
}

TEST_CASE("gguf: the gpt-2 vocab file") {
    auto f = GgufFile::open(kGpt2);
    CHECK(f->version() == 3);
    CHECK(f->tensors().empty());
    CHECK(f->metadata().size() == 16);
    const Metadata& m = f->metadata();
    CHECK(m.get_string("tokenizer.ggml.model") == "gpt2");
    CHECK(m.get_string("tokenizer.ggml.pre") == "gpt-2");
    const auto& tokens = m.get_array<std::string>("tokenizer.ggml.tokens");
    REQUIRE(tokens.size() == 50257);
    CHECK(tokens[50256] == "<|endoftext|>");
    CHECK(tokens[0] == "!");
    const auto& merges = m.get_array<std::string>("tokenizer.ggml.merges");
    REQUIRE(merges.size() == 50000);
    CHECK(merges[0] == "\xC4\xA0 t");  // "Ġ t"
    CHECK(f->get_int("tokenizer.ggml.bos_token_id") == 50256);
    CHECK(f->get_int("tokenizer.ggml.eos_token_id") == 50256);
}

TEST_CASE("gguf: tensor infos and data") {
    Builder g = two_tensors();
    auto f = GgufFile::from_memory(g.b.data(), g.b.size());
    CHECK(f->alignment() == 32);
    REQUIRE(f->tensors().size() == 2);
    const GgufTensorInfo* a = f->find_tensor("a");
    const GgufTensorInfo* b = f->find_tensor("b");
    REQUIRE(a);
    REQUIRE(b);
    CHECK(f->find_tensor("c") == nullptr);
    CHECK(a->dims == std::vector<uint64_t>{4, 2});
    CHECK(a->type == 0);
    CHECK(a->n_elements() == 8);
    CHECK(a->nbytes == 32);
    CHECK(b->nbytes == 34);
    CHECK(std::string(gguf::ggml_type_name(b->type)) == "q8_0");
    CHECK(f->data_offset() % 32 == 0);
    CHECK(a->data == g.b.data() + f->data_offset());
    CHECK(b->data[0] == 32);
}

TEST_CASE("gguf: truncated files give an error at every cut") {
    for (const char* path : {kSpm, kGpt2}) {
        const Bytes b = read_all(path);
        CHECK_NOTHROW(parse_prefix(b, b.size()));
        std::vector<size_t> cuts;
        for (size_t n = 0; n < 512; n++) cuts.push_back(n);
        for (size_t n = 512; n < b.size(); n += b.size() / 97 + 1) cuts.push_back(n);
        cuts.push_back(b.size() - 1);
        for (size_t n : cuts) CHECK_THROWS_AS(parse_prefix(b, n), Error);
    }
    Builder g = two_tensors();
    for (size_t n = 0; n < g.b.size(); n++) CHECK_THROWS_AS(parse_prefix(g.b, n), Error);
}

TEST_CASE("gguf: malformed headers and values") {
    Bytes spm = read_all(kSpm);
    {
        Bytes b = spm;
        b[0] = 'X';
        check_throws(b, "magic");
    }
    for (uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
        Bytes b = spm;
        std::memcpy(&b[4], &v, 4);
        check_throws(b, "version: found " + std::to_string(v));
    }
    {
        Bytes b = spm;
        const uint64_t huge = uint64_t(1) << 62;
        std::memcpy(&b[16], &huge, 8);
        check_throws(b, "metadata_kv_count");
        std::memcpy(&b[8], &huge, 8);
        check_throws(b, "tensor_count");
    }
    {
        Bytes b = spm;
        const uint64_t huge = ~uint64_t(0);
        std::memcpy(&b[24], &huge, 8);  // length of the first key
        check_throws(b, "metadata key #0");
    }
    Builder g;
    g.header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0);
    check_throws(g.b, "unknown value type 13");
    g = {};
    g.header(0, 1).str("k").put<uint32_t>(gguf::array).put<uint32_t>(gguf::u32).put<uint64_t>(uint64_t(1) << 60);
    check_throws(g.b, "element count");
    g = {};
    g.header(0, 1)
        .str("k")
        .put<uint32_t>(gguf::array)
        .put<uint32_t>(gguf::string)
        .put<uint64_t>(2)
        .str("x")
        .put<uint64_t>(uint64_t(1) << 40);
    check_throws(g.b, "'k'[1]");
    g = {};
    g.header(0, 1).str("k").put<uint32_t>(gguf::array).put<uint32_t>(gguf::array).put<uint64_t>(0);
    check_throws(g.b, "arrays of arrays");
    g = {};
    g.header(0, 1).str("k").put<uint32_t>(gguf::boolean).put<uint8_t>(2);
    check_throws(g.b, "bool value 2");
    g = {};
    g.header(0, 2).str("k").put<uint32_t>(gguf::u8).put<uint8_t>(1).str("k").put<uint32_t>(gguf::u8).put<uint8_t>(1);
    check_throws(g.b, "appears twice");
    g = {};
    g.header(0, 1).str("general.alignment").put<uint32_t>(gguf::u32).put<uint32_t>(24);
    check_throws(g.b, "not a power of two");
}

TEST_CASE("gguf: malformed tensor infos") {
    const Builder good = two_tensors();
    // offsets into two_tensors(): header 24, kv 1 = 8+17+4+4 = 33, kv 2 = 8+12+4+8+4 = 36
    const size_t t0 = 24 + 33 + 36;  // tensor "a": name (8+1), n_dims, dims, type, offset
    const size_t a_ndims = t0 + 9, a_dim0 = a_ndims + 4, a_off = a_dim0 + 16 + 4;
    auto patched = [&](size_t at, auto v) {
        Bytes b = good.b;
        std::memcpy(&b[at], &v, sizeof v);
        return b;
    };
    check_throws(patched(a_ndims, uint32_t(5)), "n_dims: 5");
    check_throws(patched(a_dim0, uint64_t(0)), "dim 0");
    check_throws(patched(a_dim0, uint64_t(1) << 62), "too large");
    check_throws(patched(a_off, uint64_t(16)), "not a multiple of the alignment");
    check_throws(patched(a_off, uint64_t(1) << 40), "beyond the data section");
    check_throws(patched(a_off, uint64_t(64)), "run past the end");
    check_throws(patched(a_off, ~uint64_t(31)), "beyond the data section");
    Bytes renamed = good.b;
    renamed[t0 + 8] = 'b';  // two tensors called "b"
    check_throws(renamed, "appears twice");
}

TEST_CASE("gguf: randomly corrupted files parse or fail cleanly") {
    // a small file with every value kind the vocab files use, plus tensors
    Builder g;
    g.header(1, 4);
    g.str("general.alignment").put<uint32_t>(gguf::u32).put<uint32_t>(32);
    g.str("t").put<uint32_t>(gguf::array).put<uint32_t>(gguf::string).put<uint64_t>(3).str("a").str("bc").str("");
    g.str("s").put<uint32_t>(gguf::array).put<uint32_t>(gguf::f32).put<uint64_t>(2).put(1.5f).put(-2.f);
    g.str("b").put<uint32_t>(gguf::boolean).put<uint8_t>(1);
    g.str("w").put<uint32_t>(2).put<uint64_t>(8).put<uint64_t>(2).put<uint32_t>(1).put<uint64_t>(0);
    g.pad_to(32);
    g.b.resize(g.b.size() + 32);
    REQUIRE_NOTHROW(GgufFile::from_memory(g.b.data(), g.b.size()));
    std::mt19937 rng(42);
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        Bytes b = g.b;
        const int flips = 1 + int(rng() % 4);
        for (int k = 0; k < flips; k++) {
            const size_t at = rng() % b.size();
            b[at] = rng() % 3 == 0 ? uint8_t(0xFF) : uint8_t(rng());
        }
        try {
            auto f = GgufFile::from_memory(b.data(), b.size());
            for (const GgufTensorInfo& t : f->tensors())
                if (t.data) REQUIRE(t.data + t.nbytes <= b.data() + b.size());
            ok++;
        } catch (const Error&) {
            failed++;
        }
    }
    CHECK(ok + failed == 3000);
    CHECK(failed > 0);
}
