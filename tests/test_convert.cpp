// test_convert.cpp: `lowbit convert` and the GGUF importer: exact transcoding of every supported
// ggml block type (lowbit's reference dequantization against the ggml formula evaluated here),
// a synthetic GGUF llama model written by a minimal GGUF writer in this file, stories260K
// (llama2.c + SentencePiece tokenizer) end to end, and bad inputs leaving no output file.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "formats/gguf.h"
#include "formats/gguf_import.h"
#include "formats/lbf.h"
#include "models/llama.h"
#include "models/tokenizer.h"
#include "tools/commands.h"

using namespace lb;
namespace fs = std::filesystem;

static const char* kStories = "../../shared/data/stories260K/stories260K.bin";
static const char* kTok512 = "../../shared/data/stories260K/tok512.model";

// shared/data/README.md section 1: greedy ids after BOS (run.c, fp32)
static const std::vector<int32_t> kGreedy = {
    403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408,
    419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426,
    338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};

// a scratch directory outside the repository, removed with everything in it
struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() / ("lb_test_convert_" + std::to_string(::getpid()));
        fs::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    std::string path(const std::string& name) const { return (dir / name).string(); }
    // nothing but `keep` in the directory (no partial or temporary files)
    std::vector<std::string> files() const {
        std::vector<std::string> v;
        for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
        return v;
    }
};

static int convert(std::vector<std::string> args) {
    args.insert(args.begin(), "convert");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return cmd_convert(int(argv.size()), argv.data());
}

static void write_file(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// ---- a minimal GGUF v3 writer ------------------------------------------------------------------
struct GgufWriter {
    std::vector<uint8_t> kv, infos, data;
    uint64_t n_kv = 0, n_tensors = 0;

    static void put(std::vector<uint8_t>& b, const void* p, size_t n) {
        const uint8_t* s = static_cast<const uint8_t*>(p);
        b.insert(b.end(), s, s + n);
    }
    template <class T>
    static void put(std::vector<uint8_t>& b, T v) {
        put(b, &v, sizeof v);
    }
    static void put_str(std::vector<uint8_t>& b, const std::string& s) {
        put<uint64_t>(b, s.size());
        put(b, s.data(), s.size());
    }
    void key(const std::string& k, uint32_t type) {
        put_str(kv, k);
        put<uint32_t>(kv, type);
        ++n_kv;
    }
    void u32(const std::string& k, uint32_t v) {
        key(k, gguf::u32);
        put(kv, v);
    }
    void f32(const std::string& k, float v) {
        key(k, gguf::f32);
        put(kv, v);
    }
    void str(const std::string& k, const std::string& v) {
        key(k, gguf::string);
        put_str(kv, v);
    }
    void strs(const std::string& k, const std::vector<std::string>& v) {
        key(k, gguf::array);
        put<uint32_t>(kv, gguf::string);
        put<uint64_t>(kv, v.size());
        for (const auto& s : v) put_str(kv, s);
    }
    void f32s(const std::string& k, const std::vector<float>& v) {
        key(k, gguf::array);
        put<uint32_t>(kv, gguf::f32);
        put<uint64_t>(kv, v.size());
        put(kv, v.data(), v.size() * 4);
    }
    void i32s(const std::string& k, const std::vector<int32_t>& v) {
        key(k, gguf::array);
        put<uint32_t>(kv, gguf::i32);
        put<uint64_t>(kv, v.size());
        put(kv, v.data(), v.size() * 4);
    }
    void tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, const std::vector<uint8_t>& bytes) {
        while (data.size() % 32) data.push_back(0);
        put_str(infos, name);
        put<uint32_t>(infos, uint32_t(dims.size()));
        for (uint64_t d : dims) put(infos, d);
        put<uint32_t>(infos, type);
        put<uint64_t>(infos, data.size());
        put(data, bytes.data(), bytes.size());
        ++n_tensors;
    }
    std::vector<uint8_t> bytes() const {
        std::vector<uint8_t> b;
        put(b, "GGUF", 4);
        put<uint32_t>(b, 3);
        put(b, n_tensors);
        put(b, n_kv);
        put(b, kv.data(), kv.size());
        put(b, infos.data(), infos.size());
        while (b.size() % 32) b.push_back(0);
        put(b, data.data(), data.size());
        return b;
    }
};

// ---- random ggml blocks and the ggml formulas ----------------------------------------------------
static void put_f16(uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    p[0] = uint8_t(h);
    p[1] = uint8_t(h >> 8);
}
static float get_f16(const uint8_t* p) { return f16_to_f32(uint16_t(p[0] | p[1] << 8)); }

// rows x k elements of ggml type `type` with random codes and scales (including zero, negative
// and subnormal scales)
static std::vector<uint8_t> random_blocks(uint32_t type, uint64_t rows, uint64_t k, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> b(gguf::ggml_type_nbytes(type, rows * k));
    for (auto& x : b) x = uint8_t(rng());
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    auto scale = [&](uint64_t i) {
        switch (i % 7) {
            case 0:
                return 0.0f;
            case 1:
                return 3.0e-6f;  // subnormal in fp16
            case 2:
                return -u(rng);
            default:
                return u(rng);
        }
    };
    const uint64_t blocks = rows * k / (type == ggml_id::q6_K ? 256 : 32);
    for (uint64_t i = 0; i < blocks; ++i) {
        if (type == ggml_id::q8_0) put_f16(&b[i * 34], scale(i));
        if (type == ggml_id::q4_0) put_f16(&b[i * 18], scale(i));
        if (type == ggml_id::q4_1) {
            put_f16(&b[i * 20], scale(i));
            put_f16(&b[i * 20 + 2], 4 * u(rng));
        }
        if (type == ggml_id::q6_K) put_f16(&b[i * 210 + 208], scale(i) * 0.1f);
    }
    return b;
}

// element i of a block, evaluated as ggml's reference dequantization writes it
static float ggml_formula(uint32_t type, const uint8_t* blk, int i) {
    if (type == ggml_id::q8_0) return float(int8_t(blk[2 + i])) * get_f16(blk);
    if (type == ggml_id::q4_0 || type == ggml_id::q4_1) {
        const uint8_t* qs = blk + (type == ggml_id::q4_0 ? 2 : 4);
        const int q = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
        if (type == ggml_id::q4_0) return float(q - 8) * get_f16(blk);
        return float(q) * get_f16(blk) + get_f16(blk + 2);
    }
    // Q6_K: 2 halves of 128; within a half, element e = 32 t + l takes ql[l + 32 (t % 2)] (low nibble
    // for t < 2, high for t >= 2) and bits 2t..2t+1 of qh[l]; scale index e / 16 (+ 8 per half)
    const int half = i / 128, e = i % 128, t = e / 32, l = e % 32;
    const uint8_t qlb = blk[64 * half + l + 32 * (t % 2)];
    const int lo = t < 2 ? (qlb & 0xf) : (qlb >> 4);
    const int hi = (blk[128 + 32 * half + l] >> (2 * t)) & 3;
    const float d = get_f16(blk + 208);
    const float sc = float(int8_t(blk[192 + 8 * half + e / 16]));
    return d * sc * float((lo | (hi << 4)) - 32);
}

static uint32_t block_elems(uint32_t type) { return type == ggml_id::q6_K ? 256 : 32; }
static uint32_t block_bytes(uint32_t type) {
    return type == ggml_id::q8_0 ? 34 : type == ggml_id::q4_0 ? 18 : type == ggml_id::q4_1 ? 20 : 210;
}

static std::vector<float> dequant(const CheckpointTensor& t) {
    const uint64_t k = t.dims[0], n = t.dims.size() > 1 ? t.dims[1] : 1;
    const WeightView w = make_view(t.type, t.params, n, k, t.data.data());
    std::vector<float> out(n * k);
    for (uint64_t r = 0; r < n; ++r) dequant_row_ref(w, r, &out[r * k]);
    return out;
}

// equal values (the sign of a zero may differ: ggml's (q - 8) * 0 is -0 where lowbit's q * 0 - 0 is +0)
static bool same_value(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// ---- (a) transcoding exactness ---------------------------------------------------------------
TEST_CASE("transcode: q8_0, q4_0, q4_1, q6_K reproduce the ggml formula bit for bit") {
    for (uint32_t type : {ggml_id::q8_0, ggml_id::q4_0, ggml_id::q4_1, ggml_id::q6_K}) {
        // K = 32 * odd exercises the code-chunk padding of the 4-bit layout (chunks of 64)
        for (uint64_t k : {uint64_t(256), uint64_t(32 * 9), uint64_t(768)}) {
            const uint64_t n = 5;
            if (k % block_elems(type)) continue;
            const std::vector<uint8_t> src = random_blocks(type, n, k, uint32_t(type * 1000 + k));
            const CheckpointTensor t = transcode_ggml_tensor("w", type, {k, n}, src.data(), src.size());
            CHECK(t.type == (type == ggml_id::q6_K ? Type::f32 : Type::rg));
            if (type == ggml_id::q8_0) CHECK(t.params == preset_params(*find_preset("q8_g32_z128"), n, k));
            if (type == ggml_id::q4_0) CHECK(t.params == preset_params(*find_preset("q4_g32_z8"), n, k));
            if (type == ggml_id::q4_1) CHECK(t.params == preset_params(*find_preset("q4_g32_f16"), n, k));
            // no bloat: Q4_0 4.5 -> 4.53, Q8_0 8.5 -> 8.53, Q4_1 5.0 -> 5.0 bits per weight, up to
            // the 32-byte alignment of the layout's four planes (rows here are whole code chunks)
            if (type != ggml_id::q6_K && k % 64 == 0)
                CHECK(double(t.data.size()) <= double(src.size()) * 1.02 + 4 * 32);
            const std::vector<float> got = dequant(t);
            uint64_t bad = 0;
            for (uint64_t i = 0; i < n * k; ++i) {
                const uint64_t b = i / block_elems(type);
                const float want = ggml_formula(type, &src[b * block_bytes(type)], int(i % block_elems(type)));
                if (!same_value(got[i], want) && bad++ < 3)
                    MESSAGE(std::string(gguf::ggml_type_name(type))
                            << " k " << k << " element " << i << ": " << got[i] << " != " << want);
            }
            CHECK_MESSAGE(bad == 0, std::string(gguf::ggml_type_name(type)) << " k " << k);
            // size: Q4_1 (5 bpw) as the source; Q4_0 (4.5) and Q8_0 (8.5) grow by the explicit fp16
            // zero per group (+0.5 bpw = k/16 bytes per row); plus the 32-byte plane alignment
            if (type == ggml_id::q4_1) CHECK(t.data.size() <= src.size() + 3 * 32);
            if (type == ggml_id::q4_0 || type == ggml_id::q8_0)
                CHECK(t.data.size() <= src.size() + n * k / 16 + 3 * 32);
        }
    }
}

TEST_CASE("transcode: q6_K against values from an independent dequantizer") {
    // a fixed block: ql/qh bytes (37 i + 11) mod 256, scales 29 i - 100, d = f16(0.0123); the expected
    // values were produced by the `gguf` Python package's Q6_K dequantizer (a development-time oracle)
    uint8_t b[210];
    for (int i = 0; i < 192; ++i) b[i] = uint8_t((i * 37 + 11) & 255);
    for (int i = 0; i < 16; ++i) b[192 + i] = uint8_t(int8_t(i * 29 - 100));
    put_f16(b + 208, 0.0123f);
    const CheckpointTensor t = transcode_ggml_tensor("q6", ggml_id::q6_K, {256}, b, sizeof b);
    const std::vector<float> y = dequant(t);
    const int idx[16] = {0, 1, 15, 16, 31, 32, 63, 64, 95, 96, 127, 128, 159, 160, 200, 255};
    const float want[16] = {-33.2061767578125f, 39.35546875f,       -7.379150390625f,    -23.576385498046875f,
                            -5.23919677734375f, -5.68194580078125f, 1.59881591796875f,   -6.296875f,
                            -13.282470703125f,  9.1009521484375f,   -38.00262451171875f, -41.1756591796875f,
                            -7.01019287109375f, -8.92877197265625f, 0.885498046875f,     5.82952880859375f};
    for (int j = 0; j < 16; ++j) CHECK_MESSAGE(y[size_t(idx[j])] == want[j], "element " << idx[j]);
}

TEST_CASE("transcode: plain types are copied; bad blocks and unsupported types name the tensor") {
    std::vector<uint8_t> f16(2 * 64);
    for (size_t i = 0; i < f16.size(); ++i) f16[i] = uint8_t(i * 7);
    const CheckpointTensor t = transcode_ggml_tensor("x", ggml_id::f16, {32, 2}, f16.data(), f16.size());
    CHECK(t.type == Type::f16);
    CHECK(t.data == f16);
    CHECK(transcode_ggml_tensor("x", ggml_id::bf16, {32, 2}, f16.data(), f16.size()).type == Type::bf16);
    CHECK(transcode_ggml_tensor("x", ggml_id::f32, {32}, f16.data(), f16.size()).type == Type::f32);

    std::vector<uint8_t> q8(34 * 2, 1);
    put_f16(&q8[34], 1000.0f);  // a large scale is fine: the zero 128 is a code, not 128 * d
    const CheckpointTensor big = transcode_ggml_tensor("w", ggml_id::q8_0, {64}, q8.data(), q8.size());
    CHECK(dequant(big)[32] == 1000.0f);  // int8 value 1 times d
    put_f16(&q8[34], INFINITY);
    CHECK_THROWS_WITH_AS(transcode_ggml_tensor("blk.0.attn_q.weight", ggml_id::q8_0, {64}, q8.data(), q8.size()),
                         doctest::Contains("tensor 'blk.0.attn_q.weight', row 0, block 1: scale d is not finite"),
                         Error);
    std::vector<uint8_t> q4(18, 0);
    q4[1] = 0x7c;  // d = inf
    CHECK_THROWS_WITH_AS(transcode_ggml_tensor("w", ggml_id::q4_0, {32}, q4.data(), q4.size()),
                         doctest::Contains("scale d is not finite"), Error);
    std::vector<uint8_t> q5k(176);
    CHECK_THROWS_WITH_AS(transcode_ggml_tensor("blk.3.ffn_up.weight", 13, {256}, q5k.data(), q5k.size()),
                         doctest::Contains("tensor 'blk.3.ffn_up.weight': ggml type q5_K (id 13) is not supported"),
                         Error);
    CHECK_THROWS_WITH_AS(transcode_ggml_tensor("w", ggml_id::q6_K, {128, 2}, q5k.data(), 210),
                         doctest::Contains("needs dims[0] divisible by 256"), Error);
    CHECK_THROWS_WITH_AS(transcode_ggml_tensor("w", ggml_id::q8_0, {64}, q8.data(), 34),
                         doctest::Contains("34 bytes of ggml type q8_0 data, expected 68"), Error);
}

// ---- a synthetic GGUF llama model --------------------------------------------------------------
// n_embd 256, n_ff 256, 1 layer, 4 heads (2 kv), vocab 8; one tensor of each supported type.
// `bad_type` replaces the type of ffn_up.
static std::vector<uint8_t> tiny_gguf(uint32_t ffn_up_type = ggml_id::q4_1, bool with_output = false) {
    GgufWriter g;
    g.str("general.architecture", "llama");
    g.str("general.name", "tiny");
    g.u32("llama.context_length", 64);
    g.u32("llama.embedding_length", 256);
    g.u32("llama.feed_forward_length", 256);
    g.u32("llama.block_count", 1);
    g.u32("llama.attention.head_count", 4);
    g.u32("llama.attention.head_count_kv", 2);
    g.u32("llama.rope.dimension_count", 64);
    g.f32("llama.rope.freq_base", 500000.0f);
    g.f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
    g.str("tokenizer.ggml.model", "llama");
    g.strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
                                     "\xe2\x96\x81"
                                     "a",
                                     "ab"});
    g.f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3, -4, -5});
    g.i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1, 1});
    g.u32("tokenizer.ggml.bos_token_id", 1);
    g.u32("tokenizer.ggml.eos_token_id", 2);
    g.u32("tokenizer.ggml.unknown_token_id", 0);
    g.str("tokenizer.chat_template", "{{ messages }}");
    auto norm = [](uint32_t seed) {
        std::vector<uint8_t> b(256 * 4);
        for (int i = 0; i < 256; ++i) {
            const float v = 1.0f + 0.01f * float((i * 7 + int(seed)) % 13);
            std::memcpy(&b[size_t(i) * 4], &v, 4);
        }
        return b;
    };
    auto plain16 = [](bool bf, uint64_t n, uint32_t seed) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd(0.0f, 0.05f);
        std::vector<uint8_t> b(n * 2);
        for (uint64_t i = 0; i < n; ++i) {
            const uint16_t h = bf ? f32_to_bf16(nd(rng)) : f32_to_f16(nd(rng));
            b[2 * i] = uint8_t(h);
            b[2 * i + 1] = uint8_t(h >> 8);
        }
        return b;
    };
    g.tensor("token_embd.weight", {256, 8}, ggml_id::q8_0, random_blocks(ggml_id::q8_0, 8, 256, 1));
    g.tensor("output_norm.weight", {256}, ggml_id::f32, norm(1));
    if (with_output) g.tensor("output.weight", {256, 8}, ggml_id::q6_K, random_blocks(ggml_id::q6_K, 8, 256, 9));
    g.tensor("blk.0.attn_norm.weight", {256}, ggml_id::f32, norm(2));
    g.tensor("blk.0.ffn_norm.weight", {256}, ggml_id::f32, norm(3));
    g.tensor("blk.0.attn_q.weight", {256, 256}, ggml_id::q4_0, random_blocks(ggml_id::q4_0, 256, 256, 2));
    g.tensor("blk.0.attn_k.weight", {256, 128}, ggml_id::q4_1, random_blocks(ggml_id::q4_1, 128, 256, 3));
    g.tensor("blk.0.attn_v.weight", {256, 128}, ggml_id::f16, plain16(false, 256 * 128, 4));
    g.tensor("blk.0.attn_output.weight", {256, 256}, ggml_id::bf16, plain16(true, 256 * 256, 5));
    g.tensor("blk.0.ffn_gate.weight", {256, 256}, ggml_id::q6_K, random_blocks(ggml_id::q6_K, 256, 256, 6));
    const uint64_t up_bytes = ffn_up_type == 13 ? 256 * 176 : gguf::ggml_type_nbytes(ffn_up_type, 256 * 256);
    std::vector<uint8_t> up =
        ffn_up_type == 13 ? std::vector<uint8_t>(up_bytes, 0) : random_blocks(ffn_up_type, 256, 256, 7);
    g.tensor("blk.0.ffn_up.weight", {256, 256}, ffn_up_type, up);
    g.tensor("blk.0.ffn_down.weight", {256, 256}, ggml_id::q8_0, random_blocks(ggml_id::q8_0, 256, 256, 8));
    return g.bytes();
}

TEST_CASE("GGUF import: a synthetic llama model, every tensor exact, tokenizer and template kept") {
    const std::vector<uint8_t> bytes = tiny_gguf();
    const auto f = GgufFile::from_memory(bytes.data(), bytes.size(), "tiny.gguf");
    const LlamaCheckpoint ck = import_gguf_llama(*f);
    CHECK(ck.hp.n_vocab == 8);
    CHECK(ck.hp.n_embd == 256);
    CHECK(ck.hp.n_head_kv == 2);
    CHECK(ck.hp.rope_theta == 500000.0f);
    CHECK(ck.hp.rms_eps == 1e-6f);
    CHECK(ck.hp.rope_mode == rope_interleaved);
    CHECK(ck.hp.tied_output);
    REQUIRE(ck.tokenizer);
    CHECK(ck.tokenizer->kind == "spm");
    CHECK(ck.tokenizer->tokens.size() == 8);
    CHECK(ck.chat_template == "{{ messages }}");
    CHECK(ck.tensors.size() == f->tensors().size());
    for (const GgufTensorInfo& info : f->tensors()) {
        const CheckpointTensor* t = ck.find(info.name);
        REQUIRE(t);
        CHECK(t->dims == info.dims);
        const std::vector<float> got = dequant(*t);
        uint64_t bad = 0;
        for (uint64_t i = 0; i < info.n_elements(); ++i) {
            float want;
            if (info.type == ggml_id::f32)
                std::memcpy(&want, info.data + 4 * i, 4);
            else if (info.type == ggml_id::f16 || info.type == ggml_id::bf16) {
                const uint16_t h = uint16_t(info.data[2 * i] | info.data[2 * i + 1] << 8);
                want = info.type == ggml_id::f16 ? f16_to_f32(h) : bf16_to_f32(h);
            } else {
                const uint64_t be = block_elems(info.type);
                want = ggml_formula(info.type, info.data + i / be * block_bytes(info.type), int(i % be));
            }
            bad += !same_value(got[i], want);
        }
        CHECK_MESSAGE(bad == 0, info.name);
    }
    // an untied model keeps output.weight
    const std::vector<uint8_t> b2 = tiny_gguf(ggml_id::q4_1, true);
    CHECK_FALSE(import_gguf_llama(*GgufFile::from_memory(b2.data(), b2.size())).hp.tied_output);
}

TEST_CASE("lowbit convert: GGUF -> .lbf loads as a model; dry run writes nothing") {
    TempDir tmp;
    const std::string src = tmp.path("tiny.gguf"), out = tmp.path("tiny.lbf");
    write_file(src, tiny_gguf());
    CHECK(convert({src, "-o", out, "--dry-run"}) == 0);
    CHECK_FALSE(fs::exists(out));
    REQUIRE(convert({src, "-o", out}) == 0);
    {
        const auto f = LbfFile::open(out);
        CHECK(f->verify_checksums().empty());
        CHECK(f->metadata().get_string("tokenizer.chat_template") == "{{ messages }}");
        CHECK(f->metadata().get_string("tokenizer.kind") == "spm");
        CHECK(f->metadata().get_string("llama.rope.mode") == "interleaved");
        CHECK(f->find_tensor("blk.0.attn_k.weight")->type == Type::rg);
        CHECK(f->find_tensor("blk.0.ffn_gate.weight")->type == Type::f32);
    }
    const auto m = LlamaModel::load_lbf(out);
    KvCache cache(m->hp, 8);
    ThreadPool pool(1);
    LlamaDecoder dec(*m, cache, 1);
    const float* logits = dec.eval(1, 0, pool);
    for (int i = 0; i < 8; ++i) CHECK(std::isfinite(logits[i]));
    // -o must not be the input
    CHECK(convert({src, "-o", src}) == 1);
    CHECK(fs::file_size(src) == tiny_gguf().size());
}

// ---- (b) stories260K + tok512.model ------------------------------------------------------------
TEST_CASE("lowbit convert: stories260K.bin + tok512.model -> .lbf with tokenizer, greedy ids match") {
    TempDir tmp;
    const std::string out = tmp.path("stories.lbf");
    REQUIRE(convert({kStories, "--tokenizer", kTok512, "-o", out}) == 0);
    {
        const auto f = LbfFile::open(out);
        const Metadata& md = f->metadata();
        CHECK(md.get_string("tokenizer.kind") == "spm");
        CHECK(md.get_array<std::string>("tokenizer.tokens").size() == 512);
        const Tokenizer tok = Tokenizer::from_data(tokenizer_data_from_metadata(md));
        CHECK(tok.encode("Once upon a time", true) == std::vector<int32_t>{1, 403, 407, 261, 378});
        CHECK(tok.decode(kGreedy).rfind("Once upon a time, there was a little girl named Lily.", 0) == 0);
    }
    const auto m = LlamaModel::load_lbf(out);
    KvCache cache(m->hp, 128);
    ThreadPool pool(1);
    LlamaDecoder dec(*m, cache, 1);
    std::vector<int32_t> got;
    int32_t t = 1;
    for (int64_t pos = 0; pos < int64_t(kGreedy.size()); ++pos) {
        const float* logits = dec.eval(t, pos, pool);
        int32_t best = 0;
        for (int32_t i = 1; i < m->hp.n_vocab; ++i)
            if (logits[i] > logits[best]) best = i;
        got.push_back(t = best);
    }
    CHECK(got == kGreedy);
    CHECK(tmp.files() == std::vector<std::string>{"stories.lbf"});
}

// ---- (c) bad inputs ----------------------------------------------------------------------------
TEST_CASE("lowbit convert: bad inputs give an error and leave no output file") {
    TempDir tmp;
    const std::string out = tmp.path("out.lbf");
    CHECK(convert({tmp.path("missing.gguf"), "-o", out}) == 1);
    CHECK(convert({tmp.dir.string(), "-o", out}) == 1);
    write_file(tmp.path("junk.bin"), std::vector<uint8_t>(1000, 7));
    CHECK(convert({tmp.path("junk.bin"), "-o", out}) == 1);

    const std::vector<uint8_t> good = tiny_gguf();
    for (size_t cut : {size_t(3), size_t(200), good.size() / 2, good.size() - 1}) {
        write_file(tmp.path("trunc.gguf"), std::vector<uint8_t>(good.begin(), good.begin() + long(cut)));
        CHECK_MESSAGE(convert({tmp.path("trunc.gguf"), "-o", out}) == 1, "cut at " << cut);
    }
    write_file(tmp.path("q5k.gguf"), tiny_gguf(13));
    CHECK(convert({tmp.path("q5k.gguf"), "-o", out}) == 1);
    {
        const std::vector<uint8_t> b = tiny_gguf(13);
        CHECK_THROWS_WITH_AS(import_gguf_llama(*GgufFile::from_memory(b.data(), b.size(), "q5k.gguf")),
                             doctest::Contains("tensor 'blk.0.ffn_up.weight': ggml type q5_K (id 13) is not supported"),
                             Error);
    }
    // llama2.c: truncated, and a tokenizer of the wrong size
    std::ifstream sf(kStories, std::ios::binary);
    std::vector<uint8_t> stories((std::istreambuf_iterator<char>(sf)), {});
    REQUIRE(stories.size() == 1056540);
    write_file(tmp.path("short.bin"), std::vector<uint8_t>(stories.begin(), stories.end() - 4));
    CHECK(convert({tmp.path("short.bin"), "-o", out}) == 1);
    CHECK(convert({kStories, "--tokenizer", "../../shared/data/llama2-tokenizer/tokenizer.model", "-o", out}) == 1);
    CHECK(convert({kStories, "--tokenizer", tmp.path("none.model"), "-o", out}) == 1);
    // an output directory that does not exist
    CHECK(convert({kStories, "-o", tmp.path("no/such/dir/out.lbf")}) == 1);
    // usage errors
    CHECK(convert({kStories}) == 2);
    CHECK(convert({kStories, "-o", out, "--frobnicate"}) == 2);

    CHECK_FALSE(fs::exists(out));
    for (const std::string& name : tmp.files()) CHECK_MESSAGE(name.find("out.lbf") == std::string::npos, name);
}
