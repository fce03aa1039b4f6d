// test_convert_hf.cpp: `lowbit convert DIR` on hostile and broken publisher checkpoints. Each case
// starts from a fixture of tests/fixtures (copied to a temporary directory), breaks one thing, and
// must exit 1 with an error naming the problem and leave no output file: a truncated zip, a pickle
// naming os.system, a missing tensor, a wrong dtype, a wrong shape, an adapter for another model.
// Also the happy path of the CLI: --dry-run writes nothing, a converted file passes `lowbit check`
// and keeps its provenance.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/hf_import.h"
#include "formats/lbf.h"
#include "formats/tensor_store.h"
#include "tools/commands.h"
#include "torch_writer.h"

using namespace lb;
namespace fs = std::filesystem;
using lb_test::Bytes;
using json = nlohmann::json;

namespace {

struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() / ("lb_test_convert_hf_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    // a fresh copy of fixture `name` as <dir>/<name>
    std::string copy_fixture(const std::string& name) const {
        const fs::path dst = dir / name;
        fs::remove_all(dst);
        fs::copy("fixtures/" + name, dst, fs::copy_options::recursive);
        return dst.string();
    }
    std::string path(const std::string& name) const { return (dir / name).string(); }
};

Bytes read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, "cannot open " << path);
    return Bytes(std::istreambuf_iterator<char>(f), {});
}
void write_file(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// runs `lowbit convert ARGS`, returns the exit code; stderr is captured into *err
int convert(std::vector<std::string> args, std::string* err) {
    args.insert(args.begin(), "convert");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    std::fflush(stdout);
    std::fflush(stderr);
    char tmpl[] = "/tmp/lb_convert_err_XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    const int saved = ::dup(2), saved_out = ::dup(1);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(fd, 2);
    ::dup2(null, 1);  // the report
    const int rc = cmd_convert(int(argv.size()), argv.data());
    std::fflush(stdout);
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::dup2(saved_out, 1);
    ::close(saved);
    ::close(saved_out);
    ::close(null);
    ::close(fd);
    const Bytes e = read_file(tmpl);
    ::unlink(tmpl);
    *err = std::string(e.begin(), e.end());
    return rc;
}

// safetensors: rewrite the JSON header (the data part stays as it is)
void edit_safetensors(const std::string& path, const std::function<void(json&)>& edit) {
    const Bytes b = read_file(path);
    uint64_t n = 0;
    std::memcpy(&n, b.data(), 8);
    json h = json::parse(std::string(b.begin() + 8, b.begin() + 8 + long(n)));
    edit(h);
    std::string t = h.dump();
    while ((8 + t.size()) % 8) t += ' ';
    Bytes out(8);
    const uint64_t m = t.size();
    std::memcpy(out.data(), &m, 8);
    out.insert(out.end(), t.begin(), t.end());
    out.insert(out.end(), b.begin() + 8 + long(n), b.end());
    write_file(path, out);
}

// the error case: exit 1, the message contains each of `needles`, no output file
void expect_error(const std::vector<std::string>& args, const std::string& out,
                  std::initializer_list<const char*> needles) {
    std::string err;
    const int rc = convert(args, &err);
    INFO("stderr: " << err);
    CHECK(rc == 1);
    for (const char* s : needles) CHECK(err.find(s) != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(fs::path(out).parent_path()))  // no temporary left either
        CHECK(e.path().filename().string().find(".lbf") == std::string::npos);
}

}  // namespace

TEST_CASE("convert DIR: --dry-run writes nothing; the written file passes check and keeps its provenance") {
    TempDir t;
    const std::string out = t.path("m.lbf");
    std::string err;
    CHECK(convert({"fixtures/hqq018-1bit-g8-a0", "-o", out, "--dry-run"}, &err) == 0);
    CHECK_FALSE(fs::exists(out));
    CHECK(
        convert({"fixtures/hqq018-1bit-g8-a0", "-o", out, "--adapter", "fixtures/hqq018-1bit-g8-a0/adapter_v0.1.lora"},
                &err) == 0);
    const auto f = LbfFile::open(out);
    CHECK(f->metadata().get_string("general.source.family") == "HQQ");
    CHECK(f->metadata().get_string("general.source.layout").find("1-bit g8 axis 0") != std::string::npos);
    CHECK(f->metadata().get_string("general.converter.version") == "lowbit 0.1.0");
    CHECK(f->metadata().get_string("general.source.adapter").find("adapter_v0.1.lora") != std::string::npos);
    CHECK(f->find_tensor("blk.0.attn_q.lora_a") != nullptr);
    CHECK(f->find_tensor("blk.0.attn_k.lora_a") == nullptr);  // the fixture's k_proj has no LoRA
    std::vector<std::string> a = {"check", out};
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    CHECK(cmd_check(int(argv.size()), argv.data()) == 0);
}

TEST_CASE("convert DIR: a truncated torch.save zip") {
    TempDir t;
    const std::string dir = t.copy_fixture("greenbit-asym-4bit-g32"), out = t.path("m.lbf");
    Bytes b = read_file(dir + "/pytorch_model.bin");
    for (double cut : {0.99, 0.6, 0.1}) {
        write_file(dir + "/pytorch_model.bin", Bytes(b.begin(), b.begin() + long(double(b.size()) * cut)));
        expect_error({dir, "-o", out}, out, {"pytorch_model.bin"});
    }
}

TEST_CASE("convert DIR: a pickle naming os.system (or any global off the allow-list) is refused, never run") {
    TempDir t;
    const std::string dir = t.copy_fixture("greenbit-asym-4bit-g32"), out = t.path("m.lbf");
    const std::string marker = t.path("pwned");
    for (auto [mod, name] : {std::pair<const char*, const char*>{"os", "system"},
                             {"posix", "system"},
                             {"builtins", "eval"},
                             {"torch", "load"}}) {
        lb_test::Pickle p;  // {'x': os.system('touch <marker>')}
        p.op('}').mark().str("x").global(mod, name).str("touch " + marker).op(0x85).op('R').op('u');
        lb_test::Zip z;
        z.add("pytorch_model/data.pkl", p.stop()).add("pytorch_model/version", "3\n");
        write_file(dir + "/pytorch_model.bin", z.build());
        const std::string g = std::string(mod) + "." + name;
        expect_error({dir, "-o", out}, out, {g.c_str(), "not allowed"});
        CHECK_FALSE(fs::exists(marker));
    }
}

TEST_CASE("convert DIR: a missing tensor, a wrong dtype, a wrong shape") {
    TempDir t;
    const std::string out = t.path("m.lbf");
    {
        const std::string dir = t.copy_fixture("hqq-hf-safetensors");
        edit_safetensors(dir + "/model.safetensors", [](json& h) { h.erase("model.norm.weight"); });
        expect_error({dir, "-o", out}, out, {"model.norm.weight", "not found"});
    }
    {
        const std::string dir = t.copy_fixture("hqq-hf-safetensors");
        edit_safetensors(dir + "/model.safetensors",
                         [](json& h) { h["model.layers.0.input_layernorm.weight"]["dtype"] = "I16"; });
        expect_error({dir, "-o", out}, out, {"model.layers.0.input_layernorm.weight", "dtype i16"});
    }
    {
        const std::string dir = t.copy_fixture("hqq-hf-safetensors");
        edit_safetensors(dir + "/model.safetensors", [](json& h) {
            auto& s = h["lm_head.weight"]["shape"];
            s = json::array({s[1], s[0]});
        });
        expect_error({dir, "-o", out}, out, {"lm_head.weight", "shape"});
    }
    {  // a quantized tensor of the wrong dtype (W_q as f16 of the same bytes is fine: view_as_float)
        const std::string dir = t.copy_fixture("hqq-hf-safetensors");
        edit_safetensors(dir + "/model.safetensors",
                         [](json& h) { h["model.layers.0.self_attn.q_proj.scale"]["dtype"] = "I16"; });
        expect_error({dir, "-o", out}, out, {"model.layers.0.self_attn.q_proj.scale", "dtype i16"});
    }
    {  // GreenBit: packed tensors that do not fit the config (MLP width 128 stored, 256 claimed)
        const std::string dir = t.copy_fixture("greenbit-asym-4bit-g32");
        std::ifstream f(dir + "/config.json");
        json c = json::parse(f);
        c["intermediate_size"] = 256;
        std::ofstream(dir + "/config.json") << c.dump();
        expect_error({dir, "-o", out}, out, {"model.layers.0.mlp.gate_proj", "the config needs 256"});
    }
}

TEST_CASE("convert DIR --adapter: an adapter for another model, a missing adapter, an adapter on a GGUF") {
    TempDir t;
    const std::string out = t.path("m.lbf");
    // greenbit-asym-v1 has 4 kv heads (k/v outputs 128), the adapter's model 2 (64)
    expect_error(
        {"fixtures/greenbit-asym-v1-2bit-g32", "-o", out, "--adapter", "fixtures/hqq018-1bit-g8-a0/adapter_v0.1.lora"},
        out, {"adapter", "an adapter for another model"});
    expect_error({"fixtures/hqq018-1bit-g8-a0", "-o", out, "--adapter", t.path("none.lora")}, out, {"none.lora"});
    expect_error({"../../shared/data/stories260K/stories260K.bin", "-o", out, "--adapter",
                  "fixtures/hqq018-1bit-g8-a0/adapter_v0.1.lora"},
                 out, {"--adapter: only for model directories"});
    // a directory without config.json
    fs::create_directories(t.path("empty"));
    expect_error({t.path("empty"), "-o", out}, out, {"without config.json"});
}

// The OneBit training layout (float latent weights, only their signs count) is packed on the way:
// built here from the packed fixture (sign * 0.01, as OneBit's start checkpoint; some +1 entries
// written as 0.0 and -0.0, which OneBit's packer stores as +1), saved as safetensors, it must
// convert to exactly the same lowbit tensors as the packed checkpoint.
TEST_CASE("convert DIR: OneBit training checkpoint (float latent signs) packs like the packed one") {
    TempDir t;
    const std::string dir = t.path("onebit-train-st");
    fs::create_directories(dir);
    fs::copy_file("fixtures/onebit-packed/config.json", dir + "/config.json");
    const TensorStore packed = TensorStore::open("fixtures/onebit-packed");
    json header = json::object();
    Bytes data;
    int zeros = 0;
    for (const std::string& name : packed.names()) {
        const SourceTensor& s = packed.get(name);
        const uint64_t off = data.size();
        std::vector<int64_t> shape = s.shape;
        std::string dtype = s.dtype == DType::f32 ? "F32" : s.dtype == DType::f16 ? "F16" : "BF16";
        if (s.dtype == DType::i8) {  // packed signs [N, K/8] -> latent f32 [N, K]
            shape[1] *= 8;
            dtype = "F32";
            for (int64_t o = 0; o < shape[0]; ++o)
                for (int64_t i = 0; i < shape[1]; ++i) {
                    const bool neg = (s.data[o * (shape[1] / 8) + i / 8] >> (i % 8)) & 1;
                    float v = neg ? -0.01f : 0.01f;
                    if (!neg && (o + i) % 97 == 0) v = (zeros++ % 2) ? 0.0f : -0.0f;
                    const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
                    data.insert(data.end(), p, p + 4);
                }
        } else {
            data.insert(data.end(), s.data, s.data + s.nbytes);
        }
        header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {off, data.size()}}};
    }
    CHECK(zeros > 10);
    std::string h = header.dump();
    while (h.size() % 8) h += ' ';
    Bytes file(8);
    const uint64_t n = h.size();
    std::memcpy(file.data(), &n, 8);
    file.insert(file.end(), h.begin(), h.end());
    file.insert(file.end(), data.begin(), data.end());
    write_file(dir + "/model.safetensors", file);

    const HfImportResult a = import_hf_model("fixtures/onebit-packed", {});
    const HfImportResult b = import_hf_model(dir, {});
    REQUIRE(a.ck.tensors.size() == b.ck.tensors.size());
    for (size_t i = 0; i < a.ck.tensors.size(); ++i) {
        INFO(a.ck.tensors[i].name);
        CHECK(a.ck.tensors[i].name == b.ck.tensors[i].name);
        CHECK(a.ck.tensors[i].type == b.ck.tensors[i].type);
        CHECK(a.ck.tensors[i].data == b.ck.tensors[i].data);
    }
    CHECK(b.ck.hp.proj_norm_eps == 1e-5f);
    CHECK(b.kind.find("latent float") != std::string::npos);
}
