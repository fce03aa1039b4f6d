// test_lbf.cpp: the .lbf container (formats/lbf.md): the lbsum64 reference values, a round trip
// of every metadata type and several tensor types, the atomic writer, and corrupted files: each
// corruption is made by patching a good file at offsets computed from the spec, and must give an
// lb::Error naming the field (never a crash, never a silent success).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/random_weights.h"
#include "formats/checksum.h"
#include "formats/lbf.h"
// `lowbit check` (the CLI subcommands are a library the tests link)
#include "tools/commands.h"

using namespace lb;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir {
    fs::path dir;
    TempDir() {
        static int counter = 0;
        dir = fs::temp_directory_path() / ("lbf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    std::string file(const std::string& name) const { return (dir / name).string(); }
    std::vector<std::string> listing() const {
        std::vector<std::string> r;
        for (const auto& e : fs::directory_iterator(dir)) r.push_back(e.path().filename().string());
        return r;
    }
};

Bytes read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

template <class T>
T peek(const Bytes& b, size_t at) {
    T v;
    std::memcpy(&v, b.data() + at, sizeof v);
    return v;
}

template <class T>
void poke(Bytes& b, size_t at, T v) {
    REQUIRE(at + sizeof v <= b.size());
    std::memcpy(b.data() + at, &v, sizeof v);
}

// The message of the lb::Error that parsing `b` throws, or "" if it parses.
std::string parse_error(const Bytes& b) {
    try {
        LbfFile::from_memory(b.data(), b.size());
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Offsets of the fields of a file, found by walking it as lbf.md describes (header 40 bytes, then
// the metadata entries, then the directory entries).
struct MetaAt {
    std::string key;
    size_t entry = 0, value_type = 0, value = 0;  // value: first byte after the u32 value type
};
struct TensorAt {
    std::string name;
    size_t entry = 0, type_id = 0, layout_version = 0, params = 0, ndims = 0, dims = 0, offset = 0, nbytes = 0,
           checksum = 0;
};
struct FileMap {
    std::vector<MetaAt> meta;
    std::vector<TensorAt> tensors;
    size_t dir_end = 0;
};

size_t skip_value(const Bytes& b, size_t pos, uint32_t type) {
    static const size_t scalar_bytes[11] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8, 1};
    if (type < 11) return pos + scalar_bytes[type];
    if (type == 11) return pos + 8 + peek<uint64_t>(b, pos);
    const uint32_t et = peek<uint32_t>(b, pos);
    const uint64_t count = peek<uint64_t>(b, pos + 4);
    pos += 12;
    for (uint64_t i = 0; i < count; i++) pos = skip_value(b, pos, et);
    return pos;
}

FileMap map_file(const Bytes& b) {
    FileMap m;
    size_t pos = 40;
    for (uint64_t i = 0; i < peek<uint64_t>(b, 8); i++) {
        MetaAt e;
        e.entry = pos;
        const uint64_t len = peek<uint64_t>(b, pos);
        e.key.assign(reinterpret_cast<const char*>(&b[pos + 8]), len);
        e.value_type = pos + 8 + len;
        e.value = e.value_type + 4;
        pos = skip_value(b, e.value, peek<uint32_t>(b, e.value_type));
        m.meta.push_back(e);
    }
    for (uint64_t i = 0; i < peek<uint64_t>(b, 16); i++) {
        TensorAt t;
        t.entry = pos;
        const uint64_t len = peek<uint64_t>(b, pos);
        t.name.assign(reinterpret_cast<const char*>(&b[pos + 8]), len);
        t.type_id = pos + 8 + len;
        t.layout_version = t.type_id + 2;
        t.params = t.layout_version + 4;
        t.ndims = t.params + 48;
        t.dims = t.ndims + 4;
        t.offset = t.dims + 8 * peek<uint32_t>(b, t.ndims);
        t.nbytes = t.offset + 8;
        t.checksum = t.offset + 16;
        pos = t.checksum + 8;
        m.tensors.push_back(t);
    }
    m.dir_end = pos;
    return m;
}

const MetaAt& meta_at(const FileMap& m, const std::string& key) {
    for (const auto& e : m.meta)
        if (e.key == key) return e;
    FAIL("no key " << key);
    throw 0;
}
const TensorAt& tensor_at(const FileMap& m, const std::string& name) {
    for (const auto& t : m.tensors)
        if (t.name == name) return t;
    FAIL("no tensor " << name);
    throw 0;
}

// Recomputes the index checksum after a patch, so that the structural check under test is the one
// that fires (the checksum is verified last).
void fix_index_checksum(Bytes& b) {
    const uint64_t data_offset = peek<uint64_t>(b, 24);
    if (data_offset < 40 || data_offset > b.size()) return;  // the header itself is broken
    poke<uint64_t>(b, 32, lbsum64(b.data() + 40, data_offset - 40, lbsum64(b.data(), 32)));
}

// expects parsing to fail with a message containing every one of `parts`
void expect_error(const Bytes& b, std::initializer_list<const char*> parts) {
    const std::string msg = parse_error(b);
    INFO("message: " << msg);
    CHECK(!msg.empty());
    for (const char* p : parts) CHECK(msg.find(p) != std::string::npos);
}

Bytes f32_bytes(std::vector<float> v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

// A small file with a little of everything; the corruption tests patch it.
//   metadata: general.name (string), k.0 and k.1 (u32), flag (bool), list (array of u32), words (array of string)
//   tensors:  a.0 f32 {5, 2}, a.1 rg q2_g8 {64, 4}, a.2 f16 {3}
Bytes small_file(const TempDir& td) {
    const std::string path = td.file("small.lbf");
    LbfWriter w(path);
    w.set("general.name", "tiny");
    w.set("k.0", uint32_t(1));
    w.set("k.1", uint32_t(2));
    w.set("flag", true);
    w.set("list", std::vector<uint32_t>{1, 2, 3});
    w.set("words", std::vector<std::string>{"x", "yz"});
    w.add_tensor_owned("a.0", Type::f32, QParams{}, {5, 2}, f32_bytes({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
    const QParams q = preset_params(*find_preset("q2_g8"), 4, 64);
    w.add_tensor_owned("a.1", Type::rg, q, {64, 4}, random_weight(Type::rg, q, 4, 64, 7));
    w.add_tensor_owned("a.2", Type::f16, QParams{}, {3}, Bytes{0, 0x3c, 0, 0x40, 0, 0x42});
    w.finish();
    return read_file(path);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("lbsum64: reference values of lbf.md and basic sensitivity") {
    Bytes iota(256);
    for (int i = 0; i < 256; i++) iota[i] = uint8_t(i);
    CHECK(lbsum64("", 0) == 0x059cad58ad5831ccull);
    CHECK(lbsum64("a", 1) == 0x72d18a8954fbd3ffull);
    CHECK(lbsum64("", 0, 1) == 0x92c7a6ab8bf25c1full);
    CHECK(lbsum64(iota.data(), 1) == 0x29f54d27b6a17829ull);
    CHECK(lbsum64(iota.data(), 7) == 0x02f11673259b4a84ull);
    CHECK(lbsum64(iota.data(), 8) == 0xbc11609b0acf970cull);
    CHECK(lbsum64(iota.data(), 31) == 0x4a1f918238c9db18ull);
    CHECK(lbsum64(iota.data(), 32) == 0xe712c620ad7e9d4dull);
    CHECK(lbsum64(iota.data(), 33) == 0x87417300fb00344dull);
    CHECK(lbsum64(iota.data(), 63) == 0xd0f05cd960c40017ull);
    CHECK(lbsum64(iota.data(), 64) == 0x38fa3ccbdeacfd3eull);
    CHECK(lbsum64(iota.data(), 100) == 0xea0b0aa0e14807e6ull);
    CHECK(lbsum64(iota.data(), 256) == 0xbcdd28c71a8c1248ull);

    // every single-bit flip changes the sum, and runs of zeros of different lengths differ
    Bytes b(100, 0x5a);
    const uint64_t h = lbsum64(b.data(), b.size());
    for (size_t bit = 0; bit < b.size() * 8; bit++) {
        b[bit / 8] ^= uint8_t(1u << (bit % 8));
        CHECK(lbsum64(b.data(), b.size()) != h);
        b[bit / 8] ^= uint8_t(1u << (bit % 8));
    }
    Bytes z(80, 0);
    for (size_t n = 1; n < z.size(); n++) CHECK(lbsum64(z.data(), n) != lbsum64(z.data(), n - 1));
}

TEST_CASE("round trip: metadata of every type, tensors of several types, byte-exact") {
    TempDir td;
    const std::string path = td.file("model.lbf");
    const std::string unicode = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x93 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82";
    Metadata want;
    want.set("u8", uint8_t(200));
    want.set("i8", int8_t(-100));
    want.set("u16", uint16_t(60000));
    want.set("i16", int16_t(-30000));
    want.set("llama.block_count", uint32_t(32));
    want.set("i32", int32_t(-2000000000));
    want.set("u64", uint64_t(1) << 60);
    want.set("i64", -(int64_t(1) << 60));
    want.set("f32", 1.5e-7f);
    want.set("f64", 3.141592653589793);
    want.set("bool.t", true);
    want.set("bool.f", false);
    want.set("string", unicode);
    want.set("string.empty", "");
    want.set("tokenizer.chat_template", "{% for m in messages %}\n<|{{ m.role }}|>\t{{ m.content }}{% endfor %}");
    want.set("a.u8", std::vector<uint8_t>{0, 1, 255});
    want.set("a.i8", std::vector<int8_t>{-128, 0, 127});
    want.set("a.u16", std::vector<uint16_t>{1, 65535});
    want.set("a.i16", std::vector<int16_t>{-32768, 32767});
    want.set("a.u32", std::vector<uint32_t>{7});
    want.set("a.i32", std::vector<int32_t>{-1, 2, -3});
    want.set("a.u64", std::vector<uint64_t>{~uint64_t(0), 0});
    want.set("a.i64", std::vector<int64_t>{INT64_MIN, INT64_MAX});
    want.set("a.f32", std::vector<float>{0.5f, -0.0f, 1e30f});
    want.set("a.f64", std::vector<double>{1e-300, 2.5});
    want.set("a.bool", std::vector<bool>{true, false, true});
    want.set("tokenizer.tokens", std::vector<std::string>{"<s>", "", unicode, "\xE2\x96\x81the", "a\nb"});
    want.set("a.empty", std::vector<float>{});
    want.set("\xE6\x97\xA5\xE6\x9C\xAC.key", "unicode key");

    struct T {
        std::string name;
        Type type;
        QParams params;
        std::vector<uint64_t> dims;
        Bytes data;
    };
    std::vector<T> ts;
    auto add = [&](const std::string& name, Type type, const std::string& preset, std::vector<uint64_t> dims,
                   uint64_t seed) {
        uint64_t n = 1;
        for (size_t i = 1; i < dims.size(); i++) n *= dims[i];
        const QParams p = preset.empty() ? QParams{} : preset_params(*find_preset(preset), n, dims[0]);
        ts.push_back({name, type, p, dims, random_weight(type, p, n, dims[0], seed)});
    };
    add("token_embd.weight", Type::f32, "", {48, 10}, 1);
    add("output_norm.weight", Type::f32, "", {7}, 2);
    add("blk.0.attn_norm.weight", Type::f16, "", {48}, 3);
    add("blk.0.attn_q.weight", Type::rg, "q2_g8", {64, 32}, 4);
    add("blk.0.ffn_up.weight", Type::rg, "q4_g32", {128, 64}, 5);
    add("blk.0.ffn_down.weight", Type::rg, "q4_g32_f16", {64, 3}, 6);
    add("blk.0.attn_v.weight", Type::a0, "q1_g8_a0", {128, 16}, 7);
    add("blk.0.attn_k.weight", Type::sign, "b1_sign", {40, 24}, 8);
    add("rope.cache", Type::f32, "", {4, 3, 2}, 9);
    add("four.d", Type::f16, "", {2, 3, 2, 2}, 10);

    {
        LbfWriter w(path);
        for (const auto& [k, v] : want.entries()) w.set(k, v);
        for (size_t i = 0; i < ts.size(); i++) {
            if (i % 2) {
                w.add_tensor(ts[i].name, ts[i].type, ts[i].params, ts[i].dims, ts[i].data.data(), ts[i].data.size());
            } else {
                w.add_tensor_owned(ts[i].name, ts[i].type, ts[i].params, ts[i].dims, ts[i].data);
            }
        }
        w.finish();
    }
    CHECK(td.listing() == std::vector<std::string>{"model.lbf"});  // no temporary file left

    const auto f = LbfFile::open(path);
    CHECK(f->version() == 1);
    CHECK(f->data_offset() % 64 == 0);
    CHECK(f->file_size() % 64 == 0);
    CHECK(f->file_size() == fs::file_size(path));
    REQUIRE(f->metadata().size() == want.size());
    for (size_t i = 0; i < want.size(); i++) {
        CAPTURE(want.entries()[i].first);
        CHECK(f->metadata().entries()[i].first == want.entries()[i].first);  // file order = insertion order
        CHECK(f->metadata().entries()[i].second == want.entries()[i].second);
    }
    CHECK(f->metadata().get_u32("llama.block_count") == 32);
    CHECK(f->metadata().get_string("string") == unicode);
    CHECK(f->metadata().get_array<std::string>("tokenizer.tokens")[2] == unicode);
    CHECK(f->metadata().get_f32("f32") == 1.5e-7f);
    CHECK(f->metadata().get_bool("bool.t"));
    CHECK(f->metadata().find("missing") == nullptr);

    REQUIRE(f->tensors().size() == ts.size());
    for (size_t i = 0; i < ts.size(); i++) {
        const TensorInfo& t = f->tensors()[i];
        CAPTURE(ts[i].name);
        CHECK(t.name == ts[i].name);
        CHECK(t.type == ts[i].type);
        CHECK(t.params == ts[i].params);
        CHECK(t.dims == ts[i].dims);
        CHECK(t.offset % 64 == 0);
        CHECK(reinterpret_cast<uintptr_t>(t.data) % 64 == 0);  // mmap is page aligned
        REQUIRE(t.nbytes == ts[i].data.size());
        CHECK(std::memcmp(t.data, ts[i].data.data(), t.nbytes) == 0);
        CHECK(t.checksum == lbsum64(ts[i].data.data(), ts[i].data.size()));
        CHECK(f->verify(t));
        CHECK(f->find_tensor(ts[i].name) == &t);
    }
    CHECK(f->find_tensor("nope") == nullptr);
    CHECK(f->verify_checksums().empty());

    // the same bytes parse identically from memory
    const Bytes raw = read_file(path);
    const auto g = LbfFile::from_memory(raw.data(), raw.size());
    CHECK(g->tensors().size() == ts.size());
    CHECK(g->verify_checksums().empty());

    // a file with nothing in it is valid too
    LbfWriter e(td.file("empty.lbf"));
    e.finish();
    const auto ef = LbfFile::open(td.file("empty.lbf"));
    CHECK(ef->metadata().size() == 0);
    CHECK(ef->tensors().empty());
    CHECK(ef->file_size() == 64);
}

TEST_CASE("metadata getters name the key and the expected and found types") {
    TempDir td;
    const Bytes b = small_file(td);
    write_file(td.file("m.lbf"), b);
    const auto f = LbfFile::open(td.file("m.lbf"));
    const Metadata& m = f->metadata();
    auto msg = [&](auto&& fn) -> std::string {
        try {
            fn();
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    std::string s = msg([&] { m.get_u32("general.name"); });
    CHECK(s.find("m.lbf") != std::string::npos);
    CHECK(s.find("'general.name'") != std::string::npos);
    CHECK(s.find("expected u32, found string") != std::string::npos);
    s = msg([&] { m.get_array<float>("list"); });
    CHECK(s.find("expected array of f32, found array of u32") != std::string::npos);
    s = msg([&] { m.get_u64("llama.block_count"); });
    CHECK(s.find("'llama.block_count' not found") != std::string::npos);
    CHECK(m.get_u32("k.1") == 2);
    CHECK(meta_value_summary(*m.find("words")) == "[2 x string] \"x\", \"yz\"");
}

TEST_CASE("writer: rejects what the reader would reject") {
    TempDir td;
    LbfWriter w(td.file("w.lbf"));
    auto err = [&](auto&& fn) -> std::string {
        try {
            fn();
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    const Bytes f40(40);
    CHECK(err([&] { w.add_tensor("x", Type::f32, QParams{}, {10}, f40.data(), 39); }).find("byte size 39") !=
          std::string::npos);
    w.add_tensor("x", Type::f32, QParams{}, {10}, f40.data(), 40);
    CHECK(err([&] { w.add_tensor("x", Type::f32, QParams{}, {10}, f40.data(), 40); }).find("duplicate") !=
          std::string::npos);
    CHECK(err([&] { w.add_tensor("y", Type::f32, QParams{}, {}, f40.data(), 40); }).find("ndims 0") !=
          std::string::npos);
    CHECK(err([&] {
              w.add_tensor("y", Type::f32, QParams{}, {1, 1, 1, 1, 1}, f40.data(), 4);
          }).find("ndims 5") != std::string::npos);
    CHECK(err([&] {
              w.add_tensor("y", Type::f32, QParams{}, {10, 0}, f40.data(), 0);
          }).find("dims[1] is 0") != std::string::npos);
    CHECK(err([&] { w.add_tensor("y", Type(99), QParams{}, {10}, f40.data(), 40); }).find("type id 99") !=
          std::string::npos);
    CHECK(err([&] { w.add_tensor("", Type::f32, QParams{}, {10}, f40.data(), 40); }).find("empty") !=
          std::string::npos);
    CHECK(err([&] { w.set("bad\x01key", uint8_t(1)); }).find("control character") != std::string::npos);
    CHECK(err([&] { w.set("bad\xC3", uint8_t(1)); }).find("UTF-8") != std::string::npos);
    CHECK(err([&] { w.set("k", std::string("a\0b", 3)); }).find("NUL") != std::string::npos);
    CHECK(err([&] {
              w.set("k", std::vector<std::string>{"ok", std::string(1, '\0')});
          }).find("element 1") != std::string::npos);
    w.set("k", uint32_t(1));
    w.set("j", uint32_t(2));
    w.set("k", "replaced");  // replaced in place, order kept
    CHECK(w.metadata().entries()[0].first == "k");
    CHECK(w.metadata().get_string("k") == "replaced");
    w.finish();
    CHECK(err([&] { w.finish(); }).find("already finished") != std::string::npos);
    CHECK(err([&] { w.set("z", uint8_t(1)); }).find("already finished") != std::string::npos);
    const auto f = LbfFile::open(td.file("w.lbf"));
    CHECK(f->metadata().get_string("k") == "replaced");
}

TEST_CASE("writer: atomic, nothing is left behind on failure") {
    TempDir td;
    const float v[4] = {1, 2, 3, 4};
    {  // destroyed without finish(): nothing on disk
        LbfWriter w(td.file("never.lbf"));
        w.set("a", uint8_t(1));
        w.add_tensor("t", Type::f32, QParams{}, {4}, v, sizeof v);
    }
    CHECK(td.listing().empty());

    {  // the directory does not exist
        LbfWriter w(td.file("missing/dir/x.lbf"));
        w.add_tensor("t", Type::f32, QParams{}, {4}, v, sizeof v);
        CHECK_THROWS_AS(w.finish(), Error);
    }
    CHECK(td.listing().empty());

    {  // rename fails (the target is a directory): the temporary file is removed
        fs::create_directory(td.file("target.lbf"));
        LbfWriter w(td.file("target.lbf"));
        w.add_tensor("t", Type::f32, QParams{}, {4}, v, sizeof v);
        CHECK_THROWS_AS(w.finish(), Error);
        CHECK(td.listing() == std::vector<std::string>{"target.lbf"});
        fs::remove(td.file("target.lbf"));
    }

    {  // an existing file is replaced only by a complete new one
        LbfWriter a(td.file("m.lbf"));
        a.set("gen", uint32_t(1));
        a.finish();
        LbfWriter b(td.file("m.lbf"));
        b.set("gen", uint32_t(2));
        b.finish();
        CHECK(LbfFile::open(td.file("m.lbf"))->metadata().get_u32("gen") == 2);
        CHECK(td.listing() == std::vector<std::string>{"m.lbf"});
    }
}

TEST_CASE("reader: file-level errors") {
    TempDir td;
    auto open_error = [](const std::string& path) -> std::string {
        try {
            LbfFile::open(path);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    CHECK(open_error(td.file("absent.lbf")).find("cannot open") != std::string::npos);
    CHECK(open_error(td.dir.string()).find("not a regular file") != std::string::npos);
    write_file(td.file("empty.lbf"), {});
    const std::string e = open_error(td.file("empty.lbf"));
    CHECK(e.find("empty.lbf") != std::string::npos);
    CHECK(e.find("truncated") != std::string::npos);
}

TEST_CASE("reader: every truncation and any extension of a good file is an error") {
    TempDir td;
    const Bytes good = small_file(td);
    REQUIRE(parse_error(good).empty());
    for (size_t len = 0; len < good.size(); len++) {
        CAPTURE(len);
        // a copy of exactly `len` bytes, so that the address sanitizer sees any read past the end
        const Bytes cut(good.begin(), good.begin() + std::ptrdiff_t(len));
        CHECK(!parse_error(cut).empty());
    }
    Bytes longer = good;
    longer.push_back(0);
    expect_error(longer, {"trailing bytes"});
    const std::string msg = parse_error(Bytes(good.begin(), good.end() - 1));
    CHECK(msg.find("truncated") != std::string::npos);
}

TEST_CASE("reader: corrupted header fields") {
    TempDir td;
    const Bytes good = small_file(td);
    Bytes b = good;
    std::memcpy(b.data(), "GGUF", 4);
    expect_error(b, {"bad magic 'GGUF'", "LBF1"});

    b = good;
    poke<uint32_t>(b, 4, 2);
    expect_error(b, {"unsupported format version 2", "version 1"});

    b = good;
    poke<uint64_t>(b, 8, uint64_t(1) << 40);
    expect_error(b, {"metadata count"});
    b = good;
    poke<uint64_t>(b, 16, uint64_t(1) << 21);
    expect_error(b, {"tensor count"});
    b = good;
    poke<uint64_t>(b, 16, peek<uint64_t>(b, 16) - 1);  // one tensor fewer: the directory ends early
    fix_index_checksum(b);
    expect_error(b, {"directory"});

    b = good;
    poke<uint64_t>(b, 24, peek<uint64_t>(b, 24) + 1);
    expect_error(b, {"data offset", "64"});
    b = good;
    poke<uint64_t>(b, 24, peek<uint64_t>(b, 24) + 64);
    fix_index_checksum(b);
    expect_error(b, {"the directory ends at byte", "data offset"});
    b = good;
    poke<uint64_t>(b, 24, uint64_t(1) << 62);
    expect_error(b, {"data offset", "beyond the end"});

    b = good;
    poke<uint64_t>(b, 32, peek<uint64_t>(b, 32) ^ 1);
    expect_error(b, {"index checksum"});
}

TEST_CASE("reader: corrupted metadata") {
    TempDir td;
    const Bytes good = small_file(td);
    const FileMap m = map_file(good);
    REQUIRE(m.meta.size() == 6);

    Bytes b = good;  // a flipped letter inside a string value: only the index checksum sees it
    b[meta_at(m, "general.name").value + 8] = 'T';
    expect_error(b, {"index checksum", "metadata"});

    b = good;
    poke<uint64_t>(b, meta_at(m, "general.name").value, uint64_t(1) << 62);
    expect_error(b, {"metadata key 'general.name'", "string length 4611686018427387904", "limit"});
    b = good;
    poke<uint64_t>(b, meta_at(m, "general.name").value, 1000);  // plausible, but past the end
    expect_error(b, {"truncated", "string"});

    b = good;
    poke<uint64_t>(b, meta_at(m, "k.0").entry, uint64_t(1) << 40);
    expect_error(b, {"metadata entry 1", "key length"});
    b = good;
    b[meta_at(m, "k.0").entry + 8] = 0x07;
    fix_index_checksum(b);
    expect_error(b, {"key contains control character 0x07"});

    b = good;
    b[meta_at(m, "k.1").entry + 10] = '0';  // "k.1" -> "k.0"
    fix_index_checksum(b);
    expect_error(b, {"metadata key 'k.0'", "duplicate metadata key"});

    b = good;
    poke<uint32_t>(b, meta_at(m, "k.0").value_type, 13);
    expect_error(b, {"metadata key 'k.0'", "value type 13"});

    b = good;
    b[meta_at(m, "flag").value] = 2;
    fix_index_checksum(b);
    expect_error(b, {"metadata key 'flag'", "bool value 2"});

    b = good;
    poke<uint32_t>(b, meta_at(m, "list").value, 12);
    expect_error(b, {"metadata key 'list'", "array element type 12"});
    b = good;
    poke<uint64_t>(b, meta_at(m, "list").value + 4, uint64_t(1) << 29);
    expect_error(b, {"metadata key 'list'", "array length"});
    b = good;
    poke<uint64_t>(b, meta_at(m, "list").value + 4, uint64_t(1) << 27);  // within the limit, not in the file
    expect_error(b, {"metadata key 'list'", "truncated"});
    b = good;
    poke<uint64_t>(b, meta_at(m, "words").value + 4, uint64_t(1) << 27);
    expect_error(b, {"metadata key 'words'", "truncated"});

    b = good;  // a NUL inside a string of the array
    b[meta_at(m, "words").value + 12 + 8] = 0;
    fix_index_checksum(b);
    expect_error(b, {"metadata key 'words'", "NUL"});
}

TEST_CASE("reader: corrupted tensor directory") {
    TempDir td;
    const Bytes good = small_file(td);
    const FileMap m = map_file(good);
    REQUIRE(m.tensors.size() == 3);
    const TensorAt& t0 = tensor_at(m, "a.0");
    const TensorAt& t1 = tensor_at(m, "a.1");
    Bytes b;

    auto patched = [&](auto&& patch) {
        Bytes c = good;
        patch(c);
        fix_index_checksum(c);
        return c;
    };

    b = patched([&](Bytes& c) { poke<uint64_t>(c, t1.offset, peek<uint64_t>(c, t0.offset)); });
    expect_error(b, {"tensors 'a.0'", "'a.1'", "overlap"});

    b = patched([&](Bytes& c) { poke<uint64_t>(c, t1.offset, uint64_t(1) << 30); });
    expect_error(b, {"tensor 'a.1'", "offset 1073741824", "past the end of the data section"});
    b = patched([&](Bytes& c) { poke<uint64_t>(c, t1.offset, ~uint64_t(63)); });  // offset + size overflows
    expect_error(b, {"tensor 'a.1'", "offset"});

    b = patched([&](Bytes& c) { poke<uint64_t>(c, t1.offset, peek<uint64_t>(c, t1.offset) + 8); });
    expect_error(b, {"tensor 'a.1'", "not aligned to 64"});

    b = patched([&](Bytes& c) {
        poke<uint64_t>(c, t0.dims, uint64_t(1) << 40);
        poke<uint64_t>(c, t0.dims + 8, uint64_t(1) << 40);
    });
    expect_error(b, {"tensor 'a.0'", "dims [1099511627776, 1099511627776]"});
    b = patched([&](Bytes& c) {  // no overflow, but far beyond the shape limits
        poke<uint64_t>(c, t0.dims + 8, uint64_t(1) << 40);
    });
    expect_error(b, {"tensor 'a.0'", "dims", "out of range"});
    b = patched([&](Bytes& c) {
        poke<uint64_t>(c, t0.dims, uint64_t(1) << 32);
        poke<uint64_t>(c, t0.dims + 8, uint64_t(1) << 32);
    });
    expect_error(b, {"tensor 'a.0'", "dims"});
    b = patched([&](Bytes& c) { poke<uint64_t>(c, t0.dims + 8, 0); });
    expect_error(b, {"tensor 'a.0'", "dims[1] is 0"});

    b = patched([&](Bytes& c) { poke<uint32_t>(c, t0.ndims, 0); });
    expect_error(b, {"tensor 'a.0'", "ndims 0"});
    b = patched([&](Bytes& c) { poke<uint32_t>(c, t0.ndims, 9); });
    expect_error(b, {"tensor 'a.0'", "ndims 9"});

    b = patched([&](Bytes& c) { poke<uint16_t>(c, t0.type_id, 999); });
    expect_error(b, {"tensor 'a.0'", "type id 999"});
    b = patched([&](Bytes& c) { poke<uint32_t>(c, t1.layout_version, 7); });
    expect_error(b, {"tensor 'a.1'", "layout version 7", "rg"});

    b = patched([&](Bytes& c) { poke<uint64_t>(c, t0.nbytes, 44); });
    expect_error(b, {"tensor 'a.0'", "byte size 44", "expected 40"});

    b = patched([&](Bytes& c) { c[t1.params] = 5; });  // code bits
    expect_error(b, {"tensor 'a.1'", "bits 5"});
    b = patched([&](Bytes& c) { c[t1.params + 3] = 9; });  // zero mode
    expect_error(b, {"tensor 'a.1'", "zero mode 9"});
    b = patched([&](Bytes& c) { poke<uint32_t>(c, t0.params + 8, 0); });  // f32 must carry the defaults
    expect_error(b, {"tensor 'a.0'", "no quantization parameters"});

    b = patched([&](Bytes& c) { c[t1.entry + 8 + 2] = '0'; });  // "a.1" -> "a.0"
    expect_error(b, {"tensor 'a.0'", "duplicate tensor name"});
    b = patched([&](Bytes& c) { poke<uint64_t>(c, t0.entry, uint64_t(1) << 50); });
    expect_error(b, {"tensor 0", "name length"});

    // the stored data checksum is in the index: changing it trips the index checksum at open
    b = good;
    poke<uint64_t>(b, t0.checksum, peek<uint64_t>(b, t0.checksum) ^ 1);
    expect_error(b, {"index checksum"});
}

TEST_CASE("reader: a flipped data byte is caught by verify_checksums") {
    TempDir td;
    Bytes b = small_file(td);
    const FileMap m = map_file(b);
    const uint64_t data_offset = peek<uint64_t>(b, 24);
    const TensorAt& t1 = tensor_at(m, "a.1");
    b[data_offset + peek<uint64_t>(b, t1.offset) + 17] ^= 0x10;
    const auto f = LbfFile::from_memory(b.data(), b.size());  // the structure is still fine
    CHECK(f->verify_checksums() == std::vector<std::string>{"a.1"});
    CHECK(!f->verify(*f->find_tensor("a.1")));
    CHECK(f->verify(*f->find_tensor("a.0")));
}

// resident pages of this process (Linux /proc/self/statm, second field)
static uint64_t resident_pages() {
    std::ifstream f("/proc/self/statm");
    uint64_t size = 0, resident = 0;
    f >> size >> resident;
    return resident;
}

TEST_CASE("reader: release drops a mapped tensor's pages from the resident set, and its bytes stay") {
    TempDir td;
    const std::string path = td.file("big.lbf");
    const uint64_t n = 8u << 20;  // 8 MiB of f16
    {
        Rng r{5};
        Bytes data(n);
        for (auto& x : data) x = uint8_t(r.next());
        LbfWriter w(path);
        w.add_tensor_owned("big", Type::f16, QParams{}, {n / 2}, std::move(data));
        w.finish();
    }
    const auto f = LbfFile::open(path);
    const TensorInfo& t = *f->find_tensor("big");
    REQUIRE(f->verify(t));  // reads every page
    const uint64_t before = resident_pages(), page = uint64_t(sysconf(_SC_PAGESIZE));
    f->release(t.data, t.nbytes);
    const uint64_t after = resident_pages();
    // the tensor's whole pages (2046 or more) left; a few pages of slack for the rest of the
    // process (under qemu-user the count is the emulator's)
    CHECK(before >= after + (n - 2 * page) / page - 64);
    CHECK(f->verify(t));                             // and reads back the same bytes
    // a range outside the mapping, and a file in caller memory (anonymous pages would read back
    // as zeros): nothing happens
    Bytes other(n, 0x5a);
    f->release(other.data(), other.size());
    Bytes b = read_file(path);
    const auto m = LbfFile::from_memory(b.data(), b.size());
    const TensorInfo& tm = *m->find_tensor("big");
    m->release(tm.data, tm.nbytes);
    CHECK(m->verify(tm));
    CHECK(std::count(other.begin(), other.end(), 0x5a) == std::ptrdiff_t(n));
}

TEST_CASE("reader: random corruption of the index never crashes") {
    TempDir td;
    const Bytes good = small_file(td);
    const uint64_t index_end = peek<uint64_t>(good, 24);
    Rng rng{12345};
    int parsed = 0;
    for (int iter = 0; iter < 4000; iter++) {
        Bytes b = good;
        const int flips = 1 + int(rng.next() % 4);
        for (int i = 0; i < flips; i++) b[rng.next() % index_end] ^= uint8_t(1u << (rng.next() % 8));
        if (iter % 2) fix_index_checksum(b);  // half of them: get past the checksum to the structure
        try {
            auto f = LbfFile::from_memory(b.data(), b.size());
            f->verify_checksums();
            parsed++;
        } catch (const Error&) {
        }
    }
    MESSAGE(parsed << " of 4000 corrupted files still parsed (flips in ignored fields)");
}

TEST_CASE("lowbit check: exit codes") {
    TempDir td;
    Bytes b = small_file(td);
    write_file(td.file("good.lbf"), b);
    auto run = [](std::vector<std::string> args) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        return cmd_check(int(argv.size()), argv.data());
    };
    CHECK(run({"check", td.file("good.lbf"), "--quiet"}) == 0);
    CHECK(run({"check", td.file("good.lbf")}) == 0);
    CHECK(run({"check", td.file("absent.lbf"), "-q"}) == 1);
    CHECK(run({"check", td.file("good.lbf"), "--bogus"}) == 2);
    CHECK(run({"check"}) == 2);
    CHECK(run({"check", td.file("good.lbf"), td.file("good.lbf")}) == 2);

    const FileMap m = map_file(b);
    Bytes d = b;
    d[peek<uint64_t>(b, 24) + peek<uint64_t>(b, tensor_at(m, "a.2").offset)] ^= 1;
    write_file(td.file("bad_data.lbf"), d);
    CHECK(run({"check", "-q", td.file("bad_data.lbf")}) == 1);

    Bytes s = b;
    poke<uint32_t>(s, 4, 3);
    write_file(td.file("bad_version.lbf"), s);
    CHECK(run({"check", "-q", td.file("bad_version.lbf")}) == 1);
}
