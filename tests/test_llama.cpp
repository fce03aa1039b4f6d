// test_llama.cpp: llama2.c import, the LLaMA graph and stories260K end to end (shared/data/README.md
// section 1): greedy ids from BOS, next-token probabilities, batch == token-by-token, NLL, an
// allocation-free decode step (tests/alloc_counter.h), and malformed llama2.c files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "core/random_weights.h"
#include "formats/lbf.h"
#include "formats/llama2c.h"
#include "models/llama.h"

#include "alloc_counter.h"

using namespace lb;

static const char* kStories = "../../shared/data/stories260K/stories260K.bin";

// README section 1: greedy ids after BOS (run.c, fp32)
static const std::vector<int32_t> kGreedy = {
    403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408,
    419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426,
    338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};

static std::vector<uint8_t> file_bytes(const char* path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// a temporary .lbf path outside the repository, removed by the destructor
struct TempPath {
    std::string path;
    explicit TempPath(const char* tag) {
        path = (std::filesystem::temp_directory_path() /
                ("lb_test_llama_" + std::to_string(::getpid()) + "_" + tag + ".lbf"))
                   .string();
    }
    ~TempPath() { std::remove(path.c_str()); }
};

// stories260K imported, written to .lbf and mapped back (once for the whole file)
static const LlamaModel& stories() {
    static std::unique_ptr<LlamaModel> m;
    static TempPath tmp("stories");
    if (!m) {
        save_llama_lbf(read_llama2c(kStories), tmp.path);
        m = LlamaModel::load_lbf(tmp.path);
    }
    return *m;
}

static int32_t argmax(const float* x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; ++i)
        if (x[i] > x[b]) b = i;
    return int32_t(b);
}

static std::vector<double> softmax(const float* x, int64_t n) {
    double mx = x[0], sum = 0;
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, double(x[i]));
    std::vector<double> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) sum += p[size_t(i)] = std::exp(double(x[i]) - mx);
    for (auto& v : p) v /= sum;
    return p;
}

// ---- import -----------------------------------------------------------------------------------
TEST_CASE("llama2.c import: stories260K header and tensors") {
    LlamaCheckpoint ck = read_llama2c(kStories);
    CHECK(ck.hp.n_embd == 64);
    CHECK(ck.hp.n_ff == 172);
    CHECK(ck.hp.n_layer == 5);
    CHECK(ck.hp.n_head == 8);
    CHECK(ck.hp.n_head_kv == 4);
    CHECK(ck.hp.n_vocab == 512);
    CHECK(ck.hp.n_ctx_train == 512);
    CHECK(ck.hp.tied_output);
    CHECK(ck.hp.rope_mode == rope_interleaved);
    CHECK(ck.tensors.size() == 2 + 9 * 5);
    CHECK(ck.find("output.weight") == nullptr);
    const CheckpointTensor* wk = ck.find("blk.4.attn_k.weight");
    REQUIRE(wk);
    CHECK(wk->dims == std::vector<uint64_t>{64, 32});
    // the first float after the header is token_embd[0][0]
    const std::vector<uint8_t> raw = file_bytes(kStories);
    const CheckpointTensor* emb = ck.find("token_embd.weight");
    REQUIRE(emb);
    CHECK(std::memcmp(emb->data.data(), raw.data() + 28, emb->data.size()) == 0);
}

TEST_CASE("lbf round trip keeps the hyper-parameters under documented keys") {
    const LlamaModel& m = stories();
    CHECK(m.hp.n_layer == 5);
    CHECK(m.hp.kv_dim() == 32);
    CHECK(m.hp.rms_eps == 1e-5f);
    CHECK(m.hp.tied_output);
    TempPath tmp("keys");
    save_llama_lbf(read_llama2c(kStories), tmp.path);
    auto f = LbfFile::open(tmp.path);
    CHECK(f->metadata().get_string("general.architecture") == "llama");
    CHECK(f->metadata().get_u32("llama.embedding_length") == 64);
    CHECK(f->metadata().get_u32("llama.attention.head_count_kv") == 4);
    CHECK(f->metadata().get_string("llama.rope.mode") == "interleaved");
    CHECK(f->verify_checksums().empty());
}

// ---- stories260K end to end -------------------------------------------------------------------
TEST_CASE("stories260K: greedy decode from BOS reproduces the 64 reference ids, allocation-free") {
    const LlamaModel& m = stories();
    for (int nt : {1, 2}) {
        KvCache cache(m.hp, 128);
        LlamaGraphOptions o;
        o.n_tokens = 1;
        o.max_threads = nt;
        LlamaGraph g(m, cache, o);
        ThreadPool pool(nt);
        std::vector<int32_t> got;
        int32_t tok = 1;
        long allocs = 0;
        for (int64_t pos = 0; pos < int64_t(kGreedy.size()); ++pos) {
            const long before = allocations();
            const float* logits = g.eval(&tok, pos, pool);
            tok = argmax(logits, m.hp.n_vocab);
            if (pos > 0) allocs += allocations() - before;  // the first call may warm up
            got.push_back(tok);
        }
        CHECK_MESSAGE(got == kGreedy, "threads " << nt);
        CHECK_MESSAGE(allocs == 0, "threads " << nt << ": " << allocs << " allocations over the decode steps");
    }
}

TEST_CASE("stories260K: the decoder (graphs per attention span) equals one full-span graph, allocation-free") {
    const LlamaModel& m = stories();
    const int64_t steps = 100, V = m.hp.n_vocab;
    KvCache c1(m.hp, 128), c2(m.hp, 128);
    LlamaDecoder dec(m, c1, 2);
    CHECK(dec.n_graphs() == 3);  // spans 32, 64, 128
    LlamaGraphOptions o;
    o.max_threads = 2;
    LlamaGraph full(m, c2, o);
    ThreadPool pool(1);  // plans for 2 threads, runs on 1 (fast on a loaded machine)
    int32_t tok = 1;
    long allocs = 0;
    double worst = 0;
    for (int64_t pos = 0; pos < steps; ++pos) {
        const long before = allocations();
        const float* l = dec.eval(tok, pos, pool);
        allocs += allocations() - before;
        const float* r = full.eval(&tok, pos, pool);
        for (int64_t j = 0; j < V; ++j) worst = std::max(worst, double(std::fabs(l[j] - r[j])));
        tok = argmax(l, V);
        if (pos < int64_t(kGreedy.size())) CHECK(tok == kGreedy[size_t(pos)]);
    }
    CHECK(allocs == 0);
    CHECK(worst < 1e-5);
    CHECK_THROWS_WITH_AS(dec.eval(1, 128, pool), doctest::Contains("positions 128..128 do not fit n_kv 128"), Error);
}

TEST_CASE("stories260K: the prompt 'Once upon a time' as one batch gives the reference probabilities") {
    const LlamaModel& m = stories();
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
    for (bool all : {true, false}) {
        KvCache cache(m.hp, 64);
        LlamaGraphOptions o;
        o.n_tokens = int64_t(prompt.size());
        o.all_logits = all;
        o.max_threads = 2;
        LlamaGraph g(m, cache, o);
        ThreadPool pool(2);
        const float* logits = g.eval(prompt.data(), 0, pool);
        const float* last = logits + (g.n_logits() - 1) * m.hp.n_vocab;
        const std::vector<double> p = softmax(last, m.hp.n_vocab);
        CHECK(std::fabs(p[432] - 0.9688) < 1e-3);
        CHECK(std::fabs(p[383] - 0.0287) < 1e-3);
        CHECK(std::fabs(p[322] - 0.0003) < 1e-3);
        MESSAGE("p(',') = " << p[432] << ", p(' there') = " << p[383] << ", p(' in') = " << p[322]);
    }
}

TEST_CASE("stories260K: batch prompt processing equals token-by-token decode; NLL of the greedy text") {
    const LlamaModel& m = stories();
    std::vector<int32_t> seq = {1};
    seq.insert(seq.end(), kGreedy.begin(), kGreedy.end());  // 65 ids
    const int64_t n = int64_t(seq.size()), V = m.hp.n_vocab;
    ThreadPool pool(1);

    KvCache cb(m.hp, 96);
    LlamaGraphOptions ob;
    ob.n_tokens = n;
    ob.max_threads = 2;
    LlamaGraph gb(m, cb, ob);
    const float* lb_all = gb.eval(seq.data(), 0, pool);
    std::vector<float> batch(lb_all, lb_all + n * V);

    KvCache cs(m.hp, 96);
    LlamaGraphOptions os;
    os.max_threads = 2;
    LlamaGraph gs(m, cs, os);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float* l = gs.eval(&seq[size_t(i)], i, pool);
        for (int64_t j = 0; j < V; ++j) {
            const double a = batch[size_t(i * V + j)], b = l[j];
            worst = std::max(worst, std::fabs(a - b) / std::max(1.0, std::fabs(b)));
        }
    }
    MESSAGE("largest relative difference batch vs token-by-token: " << worst);
    CHECK(worst < 1e-4);
    CHECK(cb.k == cs.k);  // the caches hold the same keys and values
    CHECK(cb.v == cs.v);

    // mean NLL of the model's own greedy continuation (every id after BOS given its prefix).
    // The README's 1.6568 nats/token on the TinyStories sample needs the tokenizer: not tested here.
    double nll = 0;
    for (int64_t i = 0; i + 1 < n; ++i) nll += token_nll(&batch[size_t(i * V)], V, seq[size_t(i + 1)]);
    nll /= double(n - 1);
    MESSAGE("mean NLL of the greedy continuation: " << nll << " nats/token");
    CHECK(std::isfinite(nll));
    CHECK(nll > 0);
    CHECK(nll < 1.0);
}

TEST_CASE("stories260K: a prompt in two batches, then decode, equals one batch") {
    const LlamaModel& m = stories();
    const std::vector<int32_t> seq = {1, 403, 407, 261, 378, 432};
    ThreadPool pool(1);
    KvCache c1(m.hp, 32), c2(m.hp, 32);
    LlamaGraphOptions o;
    o.n_tokens = 6;
    LlamaGraph one(m, c1, o);
    const float* l1 = one.eval(seq.data(), 0, pool);
    std::vector<float> ref(l1 + 5 * m.hp.n_vocab, l1 + 6 * m.hp.n_vocab);
    o.n_tokens = 3;
    o.all_logits = false;
    LlamaGraph three(m, c2, o);
    o.n_tokens = 1;
    o.n_kv = 16;  // attends to fewer positions than the cache holds
    LlamaGraph dec(m, c2, o);
    three.eval(seq.data(), 0, pool);
    three.eval(seq.data() + 3, 3, pool);
    CHECK(three.n_logits() == 1);
    // positions 3..5 again, one at a time: same cache contents, same logits
    const float* l2 = nullptr;
    for (int64_t p = 3; p < 6; ++p) l2 = dec.eval(&seq[size_t(p)], p, pool);
    for (int64_t j = 0; j < m.hp.n_vocab; ++j) CHECK(l2[j] == doctest::Approx(ref[size_t(j)]).epsilon(1e-4));
}

TEST_CASE("llama graph: bad positions, tokens and shapes are errors") {
    const LlamaModel& m = stories();
    KvCache cache(m.hp, 8);
    LlamaGraphOptions o;
    o.n_tokens = 4;
    LlamaGraph g(m, cache, o);
    ThreadPool pool(1);
    const int32_t toks[4] = {1, 2, 3, 4}, bad[4] = {1, 2, 512, 4};
    CHECK_NOTHROW(g.eval(toks, 4, pool));
    CHECK_THROWS_WITH_AS(g.eval(toks, 5, pool), doctest::Contains("positions 5..8 do not fit n_kv 8"), Error);
    CHECK_THROWS_WITH_AS(g.eval(toks, -1, pool), doctest::Contains("positions"), Error);
    CHECK_THROWS_WITH_AS(g.eval(bad, 0, pool), doctest::Contains("token 512"), Error);
    o.n_tokens = 9;
    CHECK_THROWS_WITH_AS(LlamaGraph(m, cache, o), doctest::Contains("n_tokens 9"), Error);
    o.n_tokens = 1;
    o.n_kv = 9;
    CHECK_THROWS_WITH_AS(LlamaGraph(m, cache, o), doctest::Contains("n_kv 9"), Error);
    LlamaHParams other = m.hp;
    other.n_layer = 4;
    KvCache small(other, 8);
    o.n_kv = 0;
    CHECK_THROWS_WITH_AS(LlamaGraph(m, small, o), doctest::Contains("does not fit the model"), Error);
    CHECK_THROWS_WITH_AS(KvCache(m.hp, 0), doctest::Contains("n_ctx 0"), Error);
    CHECK_THROWS_WITH_AS(KvCache(m.hp, 8, Type::i32), doctest::Contains("type i32"), Error);
}

// ---- malformed llama2.c files -----------------------------------------------------------------
static std::vector<uint8_t> with_header(std::vector<uint8_t> b, int field, int32_t value) {
    std::memcpy(b.data() + 4 * field, &value, 4);
    return b;
}

TEST_CASE("llama2.c: malformed files give a clear lb::Error") {
    const std::vector<uint8_t> good = file_bytes(kStories);
    auto parse = [](const std::vector<uint8_t>& b) { return parse_llama2c(b.data(), b.size(), "bad.bin"); };
    CHECK_NOTHROW(parse(good));
    CHECK_THROWS_WITH_AS(parse(std::vector<uint8_t>(good.begin(), good.begin() + 10)),
                         doctest::Contains("truncated llama2.c header: 10 bytes"), Error);
    CHECK_THROWS_WITH_AS(parse_llama2c(nullptr, 0, "empty.bin"), doctest::Contains("empty.bin: truncated"), Error);
    CHECK_THROWS_WITH_AS(parse(std::vector<uint8_t>(good.begin(), good.end() - 4)), doctest::Contains("truncated"),
                         Error);
    CHECK_THROWS_WITH_AS(parse(std::vector<uint8_t>(good.begin(), good.begin() + 1000)),
                         doctest::Contains("needs 1056540 bytes (truncated)"), Error);
    std::vector<uint8_t> longer = good;
    longer.push_back(0);
    CHECK_THROWS_WITH_AS(parse(longer), doctest::Contains("trailing bytes"), Error);
    // absurd and negative header values, each named
    CHECK_THROWS_WITH_AS(parse(with_header(good, 0, -64)), doctest::Contains("field dim = -64"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 0, 0)), doctest::Contains("field dim = 0"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 0, 0x7fffffff)), doctest::Contains("field dim = 2147483647"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 1, -172)), doctest::Contains("hidden_dim = -172"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 2, 1 << 30)), doctest::Contains("n_layers = 1073741824"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 3, 0)), doctest::Contains("n_heads = 0"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 3, 7)), doctest::Contains("not a multiple of n_heads 7"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 4, 3)), doctest::Contains("not a multiple of n_kv_heads 3"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 4, 16)), doctest::Contains("n_kv_heads = 16"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 5, 0)), doctest::Contains("vocab_size = 0"), Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 5, INT32_MIN)), doctest::Contains("vocab_size (absolute value)"),
                         Error);
    CHECK_THROWS_WITH_AS(parse(with_header(good, 6, -1)), doctest::Contains("seq_len = -1"), Error);
    // a huge but in-range header is caught by the size check, without allocating for it
    CHECK_THROWS_WITH_AS(parse(with_header(good, 1, 1 << 20)), doctest::Contains("(truncated)"), Error);
    // head size odd: dim 64, n_heads 64 -> head size 1
    CHECK_THROWS_WITH_AS(parse(with_header(with_header(good, 3, 64), 4, 64)), doctest::Contains("must be even"), Error);
    // unshared classifier: negative vocab_size needs wcls after the rope tables
    CHECK_THROWS_WITH_AS(parse(with_header(good, 5, -512)), doctest::Contains("(truncated)"), Error);
    std::vector<uint8_t> unshared = with_header(good, 5, -512);
    unshared.insert(unshared.end(), good.begin() + 28, good.begin() + 28 + 512 * 64 * 4);  // wcls = embedding
    LlamaCheckpoint ck = parse(unshared);
    CHECK_FALSE(ck.hp.tied_output);
    REQUIRE(ck.find("output.weight"));
    // newer exports are refused by name
    std::vector<uint8_t> v1 = good;
    std::memcpy(v1.data(), "ak42", 4);
    CHECK_THROWS_WITH_AS(parse(v1), doctest::Contains("ak42"), Error);
    CHECK_THROWS_WITH_AS(read_llama2c("../../shared/data/stories260K/no-such-file.bin"),
                         doctest::Contains("cannot open"), Error);
}

TEST_CASE("llama2.c: random header values and cuts parse or throw lb::Error, never crash") {
    const std::vector<uint8_t> good = file_bytes(kStories);
    Rng rng{7};
    int parsed = 0, refused = 0;
    for (int it = 0; it < 300; ++it) {
        std::vector<uint8_t> b = good;
        const int field = int(rng.next() % 7);
        const uint64_t r = rng.next();
        int32_t v;
        switch (r % 4) {
            case 0:
                v = int32_t(uint32_t(rng.next()));
                break;  // anything
            case 1:
                v = -int32_t(rng.next() % 1024);
                break;  // small negative
            case 2:
                v = int32_t(rng.next() % 1024);
                break;  // small positive
            default:
                v = int32_t((rng.next() % 2 ? 1 : -1) * (1 << (rng.next() % 31)));
                break;  // powers of two
        }
        std::memcpy(b.data() + 4 * field, &v, 4);
        if (rng.next() % 3 == 0) b.resize(size_t(rng.next() % (b.size() + 1)));
        try {
            LlamaCheckpoint ck = parse_llama2c(b.data(), b.size(), "mutated.bin");
            ++parsed;
        } catch (const Error&) {
            ++refused;
        }
    }
    CHECK(parsed + refused == 300);
    CHECK(refused > 250);
}

TEST_CASE("llama2.c: an unshared classifier runs like the tied one when wcls equals the embedding") {
    const std::vector<uint8_t> good = file_bytes(kStories);
    std::vector<uint8_t> unshared = with_header(good, 5, -512);
    unshared.insert(unshared.end(), good.begin() + 28, good.begin() + 28 + 512 * 64 * 4);
    auto m = LlamaModel::from_checkpoint(parse_llama2c(unshared.data(), unshared.size(), "unshared.bin"));
    CHECK_FALSE(m->hp.tied_output);
    KvCache cache(m->hp, 16);
    LlamaGraph g(*m, cache, LlamaGraphOptions{});
    ThreadPool pool(1);
    int32_t tok = 1;
    for (int64_t pos = 0; pos < 8; ++pos) {
        tok = argmax(g.eval(&tok, pos, pool), m->hp.n_vocab);
        CHECK(tok == kGreedy[size_t(pos)]);
    }
}

TEST_CASE("llama model: a checkpoint missing a tensor or with a wrong shape is refused by name") {
    LlamaCheckpoint ck = read_llama2c(kStories);
    ck.tensors.erase(ck.tensors.begin() + 3);  // a blk.*.attn_norm.weight
    CHECK_THROWS_WITH_AS(LlamaModel::from_checkpoint(std::move(ck)),
                         doctest::Contains("tensor 'blk.2.attn_norm.weight' not found"), Error);
    LlamaCheckpoint ck2 = read_llama2c(kStories);
    ck2.hp.n_ff = 171;
    CHECK_THROWS_WITH_AS(
        LlamaModel::from_checkpoint(std::move(ck2)),
        doctest::Contains("'blk.0.ffn_gate.weight' has dims [64, 172], the hyper-parameters need [64, 171]"), Error);
}

// ---- weights of any lowbit type ---------------------------------------------------------------
// A synthetic GQA model whose projections (and embedding) use a different block type each; the
// same model with every weight dequantized to f32 must give nearly the same logits (the quantized
// mul_mat runs on int8 activations, hence the tolerance).
TEST_CASE("llama graph: quantized weights of every geometry run through the model") {
    LlamaHParams hp;
    hp.n_vocab = 64;
    hp.n_embd = 64;
    hp.n_ff = 128;
    hp.n_layer = 2;
    hp.n_head = 4;
    hp.n_head_kv = 2;
    hp.n_ctx_train = 32;
    hp.rope_mode = rope_neox;
    LlamaCheckpoint q, f;
    q.hp = f.hp = hp;
    uint64_t seed = 100;
    auto add = [&](const std::string& name, const char* preset, uint64_t k, uint64_t n) {
        CheckpointTensor tq, tf;
        tq.name = tf.name = name;
        tq.dims = tf.dims = n > 1 ? std::vector<uint64_t>{k, n} : std::vector<uint64_t>{k};
        std::vector<float> w(size_t(k * n));
        if (preset) {
            const Preset* pr = find_preset(preset);
            REQUIRE(pr);
            tq.type = pr->type;
            tq.params = preset_params(*pr, n, k);
            tq.data = random_weight(tq.type, tq.params, n, k, seed++);
            const WeightView v = make_view(tq.type, tq.params, n, k, tq.data.data());
            for (uint64_t r = 0; r < n; ++r) dequant_row_ref(v, r, w.data() + r * k);
        } else {  // a norm weight
            Rng rng{seed++};
            for (auto& x : w) x = 1.0f + 0.1f * rng.normal();
            tq.data.resize(w.size() * 4);
            std::memcpy(tq.data.data(), w.data(), tq.data.size());
        }
        tf.data.resize(w.size() * 4);
        std::memcpy(tf.data.data(), w.data(), tf.data.size());
        q.tensors.push_back(std::move(tq));
        f.tensors.push_back(std::move(tf));
    };
    const char* kinds[2][7] = {
        {"q4_g32_f16", "q2_g8", "q8_g32_f16", "q4_g64_hqq", "q2_g32", "q1_g8_a0", "q2_g16_hqq"},
        {"b1_sign", "q4_g32", "q2_g16_a0", "q4_g64_a0", "q4_g64_hqqm", "q1_g8_hqq", "q3_g64_hqq"}};
    add("token_embd.weight", "q8_g32_f16", 64, 64);
    add("output_norm.weight", nullptr, 64, 1);
    for (int l = 0; l < 2; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        const char* const* k = kinds[l];
        add(p + "attn_norm.weight", nullptr, 64, 1);
        add(p + "ffn_norm.weight", nullptr, 64, 1);
        add(p + "attn_q.weight", k[0], 64, 64);
        add(p + "attn_k.weight", k[1], 64, 32);
        add(p + "attn_v.weight", k[2], 64, 32);
        add(p + "attn_output.weight", k[3], 64, 64);
        add(p + "ffn_gate.weight", k[4], 64, 128);
        add(p + "ffn_up.weight", k[5], 64, 128);
        add(p + "ffn_down.weight", k[6], 128, 64);
    }
    TempPath tmp("quant");
    save_llama_lbf(q, tmp.path);
    auto mq = LlamaModel::load_lbf(tmp.path);
    auto mf = LlamaModel::from_checkpoint(std::move(f));
    CHECK(mq->layers[1].wq.w.type == Type::sign);
    const std::vector<int32_t> toks = {1, 5, 9, 33, 60, 2, 17, 8};
    ThreadPool pool(2);
    KvCache cq(hp, 16), cf(hp, 16), cd(hp, 16);
    LlamaGraphOptions o;
    o.n_tokens = int64_t(toks.size());
    o.max_threads = 2;
    LlamaGraph gq(*mq, cq, o), gf(*mf, cf, o);
    const float* lq = gq.eval(toks.data(), 0, pool);
    const float* lf = gf.eval(toks.data(), 0, pool);
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < o.n_tokens * hp.n_vocab; ++i) {
        REQUIRE(std::isfinite(lq[i]));
        mx = std::max(mx, double(std::fabs(lf[i])));
        worst = std::max(worst, double(std::fabs(lq[i] - lf[i])));
    }
    MESSAGE("quantized vs dequantized-f32 model: largest logit difference " << worst << " (largest logit " << mx
                                                                            << ")");
    CHECK(mx > 0.1);
    CHECK(worst < 0.05 * mx);
    // the quantized model decodes token by token like its batch (GEMV vs GEMM paths)
    LlamaDecoder dec(*mq, cd, 2);
    std::vector<float> batch(lq, lq + o.n_tokens * hp.n_vocab);
    double wd = 0;
    for (int64_t i = 0; i < o.n_tokens; ++i) {
        const float* l = dec.eval(toks[size_t(i)], i, pool);
        for (int64_t j = 0; j < hp.n_vocab; ++j)
            wd = std::max(wd, double(std::fabs(l[j] - batch[size_t(i * hp.n_vocab + j)])));
    }
    MESSAGE("quantized model, batch vs token-by-token: largest logit difference " << wd);
    CHECK(wd < 1e-3 * mx);
}

// ---- .lbf files that do not describe a valid LLaMA ----------------------------------------------
// copies the stories .lbf with one metadata key replaced (or, with drop_tensor, one tensor left out)
static void rewrite_lbf(const std::string& src, const std::string& dst, const std::string& key, MetaValue value,
                        const std::string& drop_tensor = "") {
    auto f = LbfFile::open(src);
    LbfWriter w(dst);
    for (const auto& [k, v] : f->metadata().entries()) w.set(k, v);
    if (!key.empty()) w.set(key, std::move(value));
    for (const TensorInfo& t : f->tensors())
        if (t.name != drop_tensor) w.add_tensor(t.name, t.type, t.params, t.dims, t.data, size_t(t.nbytes));
    w.finish();
}

TEST_CASE("llama .lbf: wrong or missing hyper-parameters and tensors are refused by name") {
    TempPath good("good"), bad("bad");
    save_llama_lbf(read_llama2c(kStories), good.path);
    auto expect = [&](const char* key, MetaValue v, const char* msg) {
        rewrite_lbf(good.path, bad.path, key, std::move(v));
        CHECK_THROWS_WITH_AS(LlamaModel::load_lbf(bad.path), doctest::Contains(msg), Error);
    };
    rewrite_lbf(good.path, bad.path, "", MetaValue());
    CHECK_NOTHROW(LlamaModel::load_lbf(bad.path));
    expect("general.architecture", "gpt2", "general.architecture is 'gpt2', expected 'llama'");
    expect("llama.block_count", int32_t(5), "'llama.block_count': expected u32, found i32");
    expect("llama.block_count", uint32_t(0), "n_layer = 0");
    expect("llama.block_count", uint32_t(6), "tensor 'blk.5.attn_norm.weight' not found");
    expect("llama.attention.head_count", uint32_t(7), "n_embd 64 is not a multiple of n_head 7");
    expect("llama.attention.head_count_kv", uint32_t(3), "n_head 8 is not a multiple of n_head_kv 3");
    expect("llama.embedding_length", uint32_t(4000000000u), "n_embd = 4000000000");
    expect("llama.attention.layer_norm_rms_epsilon", -1.0f, "rms_eps -1");
    expect("llama.rope.mode", "yarn", "'llama.rope.mode' is 'yarn'");
    expect("llama.output_tied", false, "tensor 'output.weight' not found");
    rewrite_lbf(good.path, bad.path, "", MetaValue(), "blk.3.ffn_up.weight");
    CHECK_THROWS_WITH_AS(LlamaModel::load_lbf(bad.path), doctest::Contains("tensor 'blk.3.ffn_up.weight' not found"),
                         Error);
    rewrite_lbf(good.path, bad.path, "llama.feed_forward_length", uint32_t(171));
    CHECK_THROWS_WITH_AS(LlamaModel::load_lbf(bad.path), doctest::Contains("blk.0.ffn_gate.weight' has dims"), Error);
}
