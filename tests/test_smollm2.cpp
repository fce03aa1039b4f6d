// test_smollm2.cpp: SmolLM2-135M-Instruct (the Q4_1 GGUF of tools/smollm2_demo.sh) converted by
// import_gguf_llama and run by lowbit agrees with a plain fp32 PyTorch forward over the same
// dequantized weights (tests/fixtures/gen_smollm2_reference.py; its output
// tests/fixtures/smollm2/reference.json is the fixture). Needs
// build/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf under the repository root (tools/fetch_smollm2.sh,
// which tests/run_all.sh runs): without it the tests FAIL, saying so.
//
// Three prompts (a ChatML chat, "The capital of France is", "1, 2, 3, 4, 5,"); each is run over
// the sequence prompt + the reference's greedy continuation (teacher forcing). Checked:
//   - lowbit's tokenizer gives the fixture's prompt ids (the chat through chat_render);
//   - the converted model with its weights dequantized to f32 and an f32 KV cache (conversion and
//     graph, without lowbit's int8 activations): every stored logit within kF32MaxDiff, the top-1
//     at every position, the top-5 set at the last prompt position, and its greedy continuation
//     equal to the reference's for all 16 steps (the smallest reference margin is 0.08 >> 2e-3);
//   - the model as converted (quantized matmuls with int8 activation blocks, f16 KV cache), in one
//     batch and token by token: every stored logit within kMaxDiff; the top-1 equal to the
//     reference's where the reference's top1 - top2 margin exceeds kMarginBound; the top-5 set at
//     the last prompt position up to near-ties (see check_top5); its greedy continuation equal to
//     the reference's for as long as the reference's margins exceed kMarginBound;
//   - the checkpoint written to .lbf and mapped back gives the same logits bit for bit.
// Set LB_SMOLLM2_DUMP=DIR to write lowbit's logits (DIR/<prompt>.{batch,seq,f32}.f32, fp32
// [T][n_vocab]) for `gen_smollm2_reference.py --compare-lowbit DIR`, which measures the differences
// over the whole vocabulary.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/quant.h"
#include "core/threadpool.h"
#include "core/types.h"
#include "formats/gguf.h"
#include "formats/gguf_import.h"
#include "models/chat.h"
#include "models/llama.h"
#include "models/tokenizer.h"

using namespace lb;

namespace {

const std::string kGguf = std::string(LB_SOURCE_DIR) + "/build/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kReference = std::string(LB_SOURCE_DIR) + "/tests/fixtures/smollm2/reference.json";

// f32 weights, f32 KV cache: measured max |lowbit - reference| 9e-5 over the whole vocabulary (fp32
// summation order; the fixture rounds logits to 4 decimals).
constexpr float kF32MaxDiff = 2e-3f;
// The quantized matmuls quantize their input to int8 blocks of 32 (core/quant_ref.cpp), and over
// 30 layers the rounding is chaotic: the same emulated forward in fp32 and in fp64 differs by up
// to 1.1 in a logit. Measured with the avx512, avx2 and scalar kernels (LB_ISA) and NEON (under
// qemu), which all differ (gen_smollm2_reference.py --compare-lowbit): max |lowbit - reference|
// 1.9-3.3 over the whole vocabulary, 1.1-1.8 over the stored top-5 logits; the error of the gap
// top1 - t (t within 3 of the top-1), which a top-1 flip must exceed, at most 0.72 (0.95 for the
// two emulations); lowbit's top-1 differs only where the reference margin is 0.08-0.22.
// kMaxDiff is a sanity bound: the wrong rope order moves the top-5 logits by 13.6, but a wrong rope
// theta (1e4 for 1e5) by only 1.9, which only the f32 test case can see.
constexpr float kMaxDiff = 3.0f;
constexpr float kMarginBound = 1.5f;  // 1.6x the largest gap error of those six realizations
constexpr int kThreads = 1;           // ctest runs the tests side by side

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct RefPosition {
    std::vector<int32_t> top5;
    std::vector<float> top5_logits;
    float margin = 0, max_abs = 0;
};

struct RefPrompt {
    std::string name;
    std::vector<ChatMessage> messages;  // the chat prompt
    std::string text;                   // a plain prompt
    std::vector<int32_t> ids, continuation;
    std::vector<int32_t> last_top10;  // at the last prompt position
    std::vector<float> last_top10_logits;
    std::vector<RefPosition> pos;  // over sequence()
    std::vector<int32_t> sequence() const {
        std::vector<int32_t> s = ids;
        s.insert(s.end(), continuation.begin(), continuation.end() - 1);
        return s;
    }
};

struct Reference {
    uint64_t gguf_bytes = 0;
    std::vector<RefPrompt> prompts;
};

Reference load_reference() {
    std::ifstream in(kReference);
    REQUIRE_MESSAGE(in.good(), kReference << " is missing");
    std::stringstream ss;
    ss << in.rdbuf();
    const nlohmann::json j = nlohmann::json::parse(ss.str());
    Reference r;
    r.gguf_bytes = j.at("gguf").at("bytes").get<uint64_t>();
    for (const auto& p : j.at("prompts")) {
        RefPrompt rp;
        rp.name = p.at("name").get<std::string>();
        if (p.contains("messages"))
            for (const auto& m : p.at("messages"))
                rp.messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
        if (p.contains("text")) rp.text = p.at("text").get<std::string>();
        rp.ids = p.at("ids").get<std::vector<int32_t>>();
        rp.continuation = p.at("continuation").get<std::vector<int32_t>>();
        rp.last_top10 = p.at("last_top10_ids").get<std::vector<int32_t>>();
        rp.last_top10_logits = p.at("last_top10_logits").get<std::vector<float>>();
        for (const auto& q : p.at("positions"))
            rp.pos.push_back({q.at("top5_ids").get<std::vector<int32_t>>(),
                              q.at("top5_logits").get<std::vector<float>>(), q.at("margin").get<float>(),
                              q.at("max_abs_logit").get<float>()});
        REQUIRE(rp.continuation.size() >= 2);
        REQUIRE(rp.last_top10.size() == 10);
        REQUIRE(rp.pos.size() == rp.ids.size() + rp.continuation.size() - 1);
        r.prompts.push_back(std::move(rp));
    }
    REQUIRE(r.prompts.size() == 3);
    return r;
}

// The GGUF converted once for every test case.
struct Smol {
    std::unique_ptr<GgufFile> gguf;
    std::unique_ptr<Tokenizer> tok;
    std::unique_ptr<LlamaModel> model;   // from the checkpoint, as converted
    std::unique_ptr<LlamaModel> mapped;  // the same checkpoint through .lbf
    std::unique_ptr<LlamaModel> f32;     // its quantized weights dequantized to f32
    double convert_s = 0;
};

const Smol& smol(const Reference& ref) {
    static std::unique_ptr<Smol> s;
    if (s) return *s;
    if (!std::filesystem::exists(kGguf))
        FAIL(kGguf << " is missing: run tools/fetch_smollm2.sh (tests/run_all.sh does) to download it");
    auto n = std::make_unique<Smol>();
    n->gguf = GgufFile::open(kGguf);
    REQUIRE_MESSAGE(n->gguf->file_size() == ref.gguf_bytes, kGguf << " is not the file of the fixture");
    const auto t0 = std::chrono::steady_clock::now();
    LlamaCheckpoint ck = import_gguf_llama(*n->gguf);
    n->convert_s = seconds_since(t0);
    CHECK(ck.hp.rope_mode == rope_interleaved);
    CHECK(ck.hp.tied_output);
    CHECK(ck.hp.n_layer == 30);
    CHECK(ck.hp.n_head == 9);
    CHECK(ck.hp.n_head_kv == 3);
    n->tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*n->gguf));
    const std::string lbf =
        (std::filesystem::temp_directory_path() / ("lowbit_test_smollm2_" + std::to_string(::getpid()) + ".lbf"))
            .string();
    save_llama_lbf(ck, lbf);
    n->mapped = LlamaModel::load_lbf(lbf);
    std::filesystem::remove(lbf);  // the mapping stays valid
    n->f32 = LlamaModel::from_checkpoint(dequantize_checkpoint(ck));
    n->model = LlamaModel::from_checkpoint(std::move(ck));
    s = std::move(n);
    return *s;
}

int32_t argmax(const float* l, int64_t n) { return int32_t(std::max_element(l, l + n) - l); }

std::vector<int32_t> top_k(const float* l, int64_t n, int k) {
    std::vector<int32_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = int32_t(i);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    idx.resize(size_t(k));
    return idx;
}

// logits [T][n_vocab] of the whole sequence in one batch
std::vector<float> run_batch(const LlamaModel& m, const std::vector<int32_t>& toks, ThreadPool& pool, Type kv) {
    KvCache cache(m.hp, 128, kv);
    LlamaGraphOptions o;
    o.n_tokens = int64_t(toks.size());
    o.max_threads = pool.size();
    LlamaGraph g(m, cache, o);
    const float* l = g.eval(toks.data(), 0, pool);
    return std::vector<float>(l, l + toks.size() * size_t(m.hp.n_vocab));
}

// the same, one token at a time through the KV cache
std::vector<float> run_sequential(const LlamaModel& m, const std::vector<int32_t>& toks, ThreadPool& pool) {
    KvCache cache(m.hp, 128);
    LlamaDecoder d(m, cache, pool.size());
    const size_t nv = size_t(m.hp.n_vocab);
    std::vector<float> out(toks.size() * nv);
    for (size_t p = 0; p < toks.size(); ++p) {
        const float* l = d.eval(toks[p], int64_t(p), pool);
        std::copy(l, l + nv, out.begin() + long(p * nv));
    }
    return out;
}

// greedy continuation of the prompt, n tokens
std::vector<int32_t> greedy(const LlamaModel& m, const std::vector<int32_t>& prompt, size_t n, ThreadPool& pool,
                            Type kv) {
    KvCache cache(m.hp, 128, kv);
    LlamaDecoder d(m, cache, pool.size());
    const float* l = nullptr;
    int64_t pos = 0;
    for (int32_t t : prompt) l = d.eval(t, pos++, pool);
    std::vector<int32_t> gen;
    for (size_t i = 0; i < n; ++i) {
        gen.push_back(argmax(l, m.hp.n_vocab));
        if (i + 1 < n) l = d.eval(gen.back(), pos++, pool);
    }
    return gen;
}

std::string join(const std::vector<int32_t>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
    return s;
}

void dump(const std::string& name, const std::vector<float>& logits) {
    const char* dir = std::getenv("LB_SMOLLM2_DUMP");
    if (!dir || !*dir) return;
    std::filesystem::create_directories(dir);
    std::ofstream f(std::string(dir) + "/" + name + ".f32", std::ios::binary);
    f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
}

// The top-5 set at the last prompt position equals the reference's up to near-ties: every reference
// top-5 token that leads the reference's 6th by more than `bound` is in lowbit's top 5, and every
// token of lowbit's top 5 is among the reference's top 10 with a logit of at least the reference's
// 5th minus `bound`.
void check_top5(const RefPrompt& r, const float* l, int64_t nv, float bound) {
    const std::vector<int32_t> mine = top_k(l, nv, 5);
    const float r5 = r.last_top10_logits[4], r6 = r.last_top10_logits[5];
    INFO("last prompt position: lowbit top 5 [" << join(mine) << "], reference top 10 [" << join(r.last_top10) << "]");
    for (size_t i = 0; i < 5; ++i)
        if (r.last_top10_logits[i] - r6 > bound) CHECK(std::count(mine.begin(), mine.end(), r.last_top10[i]) == 1);
    for (int32_t t : mine) {
        const auto it = std::find(r.last_top10.begin(), r.last_top10.end(), t);
        const bool near =
            it != r.last_top10.end() && r.last_top10_logits[size_t(it - r.last_top10.begin())] >= r5 - bound;
        CHECK_MESSAGE(near, "token " << t);
    }
    std::vector<int32_t> a = mine, b(r.last_top10.begin(), r.last_top10.begin() + 5);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    const std::string verdict = a == b ? "equal" : "differ (near-ties)";
    MESSAGE(r.name << ": last-position top-5 sets " << verdict << "; reference 5th - 6th " << r5 - r6);
}

// The per-position checks of one run against the reference.
void check_positions(const RefPrompt& r, const std::vector<float>& logits, int64_t nv, const std::string& mode,
                     float max_diff_bound, float margin_bound) {
    INFO("prompt " << r.name << ", " << mode);
    float max_diff = 0, max_abs_diff = 0;
    size_t checked = 0, agree = 0;
    for (size_t p = 0; p < r.pos.size(); ++p) {
        const RefPosition& rp = r.pos[p];
        const float* l = logits.data() + p * size_t(nv);
        for (size_t j = 0; j < rp.top5.size(); ++j)
            max_diff = std::max(max_diff, std::fabs(l[rp.top5[j]] - rp.top5_logits[j]));
        float mx = 0;
        for (int64_t i = 0; i < nv; ++i) mx = std::max(mx, std::fabs(l[i]));
        max_abs_diff = std::max(max_abs_diff, std::fabs(mx - rp.max_abs));
        const int32_t top1 = argmax(l, nv);
        agree += top1 == rp.top5[0];
        if (rp.margin > margin_bound) {
            ++checked;
            INFO("position " << p << ": reference top-1 " << rp.top5[0] << " (margin " << rp.margin << "), lowbit "
                             << top1 << " (logit " << l[top1] << " vs " << l[rp.top5[0]] << ")");
            CHECK(top1 == rp.top5[0]);
        }
    }
    MESSAGE(r.name << " " << mode << ": top-1 checked at " << checked << "/" << r.pos.size()
                   << " positions (reference margin > " << margin_bound << "), agrees at " << agree << "/"
                   << r.pos.size() << "; max |lowbit - ref| over the stored top-5 logits " << max_diff
                   << ", of max |logit| " << max_abs_diff);
    CHECK(max_diff <= max_diff_bound);
    CHECK(max_abs_diff <= max_diff_bound);
    check_top5(r, logits.data() + (r.ids.size() - 1) * size_t(nv), nv, margin_bound);
}

}  // namespace

TEST_CASE("smollm2: the tokenizer gives the fixture's prompt ids") {
    const Reference ref = load_reference();
    const Smol& s = smol(ref);
    for (const RefPrompt& r : ref.prompts) {
        INFO("prompt " << r.name);
        if (!r.messages.empty()) {
            const std::string bos = s.tok->data().tokens.at(size_t(s.tok->bos()));
            const std::string eos = s.tok->data().tokens.at(size_t(s.tok->eos()));
            const std::string text = chat_render(ChatTemplate::chatml, r.messages, true, bos, eos);
            CHECK(!s.tok->data().add_bos);  // chatml: no BOS (lb_chat_tokenize adds one only when asked)
            CHECK(s.tok->encode(text, false, true) == r.ids);
        } else {
            CHECK(s.tok->encode(r.text) == r.ids);  // the tokenizer's default: no BOS
        }
    }
}

TEST_CASE("smollm2: dequantized to f32, the converted model is the reference") {
    const Reference ref = load_reference();
    const Smol& s = smol(ref);
    const LlamaModel& m = *s.f32;
    ThreadPool pool(kThreads);
    for (const RefPrompt& r : ref.prompts) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<float> l = run_batch(m, r.sequence(), pool, Type::f32);
        MESSAGE(r.name << ": f32 batch of " << r.pos.size() << " tokens " << seconds_since(t0) << " s");
        dump(r.name + ".f32", l);
        check_positions(r, l, m.hp.n_vocab, "f32 weights, f32 KV cache", kF32MaxDiff, 2 * kF32MaxDiff);
        const std::vector<int32_t> gen = greedy(m, r.ids, r.continuation.size(), pool, Type::f32);
        INFO("greedy: lowbit [" << join(gen) << "], reference [" << join(r.continuation) << "]");
        CHECK(gen == r.continuation);
    }
}

TEST_CASE("smollm2: as converted, next tokens agree with the reference, batch and token by token") {
    const Reference ref = load_reference();
    const Smol& s = smol(ref);
    const LlamaModel& m = *s.model;
    const int64_t nv = m.hp.n_vocab;
    ThreadPool pool(kThreads);
    MESSAGE("import_gguf_llama " << s.convert_s << " s");
    for (const RefPrompt& r : ref.prompts) {
        const std::vector<int32_t> seq = r.sequence();
        auto t0 = std::chrono::steady_clock::now();
        const std::vector<float> batch = run_batch(m, seq, pool, Type::f16);
        const double batch_s = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        const std::vector<float> sequential = run_sequential(m, seq, pool);
        const double seq_s = seconds_since(t0);
        MESSAGE(r.name << ": " << seq.size() << " tokens, batch " << batch_s << " s, token by token " << seq_s << " s ("
                       << kThreads << " threads)");
        dump(r.name + ".batch", batch);
        dump(r.name + ".seq", sequential);
        check_positions(r, batch, nv, "batch", kMaxDiff, kMarginBound);
        check_positions(r, sequential, nv, "token by token", kMaxDiff, kMarginBound);
        float bs = 0;
        for (size_t i = 0; i < batch.size(); ++i) bs = std::max(bs, std::fabs(batch[i] - sequential[i]));
        MESSAGE(r.name << ": max |batch - token by token| " << bs);
        CHECK(bs <= kMaxDiff);
        // the same checkpoint written to .lbf and mapped: the same logits, bit for bit
        CHECK(run_batch(*s.mapped, seq, pool, Type::f16) == batch);
    }
}

TEST_CASE(
    "smollm2: as converted, the greedy continuation equals the reference's while its margins are above the bound") {
    const Reference ref = load_reference();
    const Smol& s = smol(ref);
    ThreadPool pool(kThreads);
    size_t required_total = 0;
    for (const RefPrompt& r : ref.prompts) {
        INFO("prompt " << r.name);
        // the steps whose reference margin is above the bound, up to the first that is not
        size_t sure = 0;
        while (sure < r.continuation.size() && r.pos[r.ids.size() - 1 + sure].margin > kMarginBound) ++sure;
        required_total += sure;
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<int32_t> gen = greedy(*s.model, r.ids, r.continuation.size(), pool, Type::f16);
        const double gen_s = seconds_since(t0);
        size_t same = 0;
        while (same < gen.size() && gen[same] == r.continuation[same]) ++same;
        MESSAGE(r.name << ": greedy (prompt + " << gen.size() << " tokens) " << gen_s << " s; lowbit [" << join(gen)
                       << "], reference [" << join(r.continuation) << "]; equal for " << same << ", required for "
                       << sure << " (margins > " << kMarginBound << ")");
        CHECK(std::vector<int32_t>(gen.begin(), gen.begin() + long(sure)) ==
              std::vector<int32_t>(r.continuation.begin(), r.continuation.begin() + long(sure)));
    }
    CHECK(required_total >= 16);  // the count prompt: all 16 steps
}
