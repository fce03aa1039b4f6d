// test_perplexity.cpp: models/perplexity.h and `lowbit perplexity` (tools/cmd_perplexity.cpp) on
// stories260K (shared/data/README.md section 1): the README's per-sequence reference NLL, chunked
// perplexity against a direct computation from LlamaGraph logits, logits files and the KL
// divergence (zero against itself, positive against a perturbed model or perturbed logits), and bad
// inputs (API errors and CLI exit codes / messages).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "formats/llama2c.h"
#include "models/llama.h"
#include "models/perplexity.h"
#include "models/tokenizer.h"
#include "tools/commands.h"

using namespace lb;
namespace fs = std::filesystem;

static const char* kStories = "../../shared/data/stories260K/stories260K.bin";
static const char* kTok = "../../shared/data/stories260K/tok512.model";
static const char* kText = "../../shared/data/text/tinystories-sample-18lines.crlf.txt";

namespace {

struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() / ("lb_test_ppl_" + std::to_string(::getpid()));
        fs::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    std::string file(const std::string& name) const { return (dir / name).string(); }
};

TempDir& tmp() {
    static TempDir t;
    return t;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

const Tokenizer& tokenizer() {
    static const Tokenizer t = Tokenizer::load_sentencepiece(kTok);
    return t;
}

const LlamaModel& stories() {
    static std::unique_ptr<LlamaModel> m = LlamaModel::from_checkpoint(read_llama2c(kStories));
    return *m;
}

// stories260K with its tokenizer as .lbf (for the CLI)
std::string stories_lbf() {
    const std::string path = tmp().file("stories.lbf");
    if (fs::exists(path)) return path;
    LlamaCheckpoint ck = read_llama2c(kStories);
    ck.tokenizer = tokenizer().data();
    save_llama_lbf(ck, path);
    return path;
}

// the whole sample text tokenized in one piece with BOS (as the CLI does)
const std::vector<int32_t>& text_tokens() {
    static const std::vector<int32_t> ids = tokenizer().encode(slurp(kText), true);
    return ids;
}

std::string strip(const std::string& s) {
    const char* ws = " \t\r\n\v\f";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string expect_error(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    FAIL("no lb::Error thrown");
    return "";
}

struct Result {
    int rc;
    std::string out, err;
};

// runs cmd_perplexity with argv {"perplexity", args...}; stdout and stderr go to files
Result cli(const std::vector<std::string>& args) {
    std::vector<std::string> a = {"perplexity"};
    a.insert(a.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    const std::string out_path = tmp().file("stdout.txt"), err_path = tmp().file("stderr.txt");
    std::fflush(stdout);
    std::fflush(stderr);
    const int saved_out = ::dup(1), saved_err = ::dup(2);
    const int fo = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int fe = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE((fo >= 0 && fe >= 0 && saved_out >= 0 && saved_err >= 0));
    ::dup2(fo, 1);
    ::dup2(fe, 2);
    const int rc = cmd_perplexity(int(a.size()), argv.data());
    std::fflush(stdout);
    std::fflush(stderr);
    ::dup2(saved_out, 1);
    ::dup2(saved_err, 2);
    for (int fd : {fo, fe, saved_out, saved_err}) ::close(fd);
    return {rc, slurp(out_path), slurp(err_path)};
}

}  // namespace

// ---- (a) the README reference -----------------------------------------------------------------------
TEST_CASE("perplexity: stories260K per-sequence mean NLL on the 18-line sample is the README's 1.6568") {
    // README section 1: each of the first 18 lines, CRLF removed and whitespace stripped, becomes
    // [1] + encode(line), cut to 512 ids; every id after BOS is scored given its prefix
    const std::string text = slurp(kText);
    REQUIRE(!text.empty());
    std::vector<std::vector<int32_t>> seqs;
    size_t pos = 0;
    while (seqs.size() < 18 && pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::vector<int32_t> ids = tokenizer().encode(strip(text.substr(pos, nl - pos)), true);
        REQUIRE(ids.at(0) == 1);
        if (ids.size() > 512) ids.resize(512);
        seqs.push_back(std::move(ids));
        pos = nl + 1;
    }
    REQUIRE(seqs.size() == 18);
    const MeanStats st = score_sequences(stories(), seqs, 1);
    CHECK(st.n == 8852);
    CHECK(std::fabs(st.mean() - 1.6568) < 5e-4);
    CHECK(st.ppl() == doctest::Approx(5.242).epsilon(1e-3));
    // two threads give the same numbers (on a few lines: these build machines share their cores)
    const std::vector<std::vector<int32_t>> few(seqs.begin(), seqs.begin() + 3);
    const MeanStats a = score_sequences(stories(), few, 1), b = score_sequences(stories(), few, 2);
    CHECK(a.n == b.n);
    CHECK(a.mean() == doctest::Approx(b.mean()).epsilon(1e-6));
    // short sequences score nothing
    CHECK(score_sequences(stories(), {{1}, {}}, 1).n == 0);
}

// ---- (b) chunked perplexity ----------------------------------------------------------------------------
TEST_CASE("perplexity: chunked, consistent with the NLL computed from LlamaGraph logits") {
    const std::vector<int32_t>& ids = text_tokens();
    REQUIRE(ids.size() > 4096);
    const int64_t n_ctx = 128, first = n_ctx / 2, vocab = stories().hp.n_vocab;

    // the direct computation: chunks 0 and 1 as batches from position 0, BOS first, second halves scored
    std::vector<std::vector<double>> direct(2);
    {
        KvCache cache(stories().hp, n_ctx);
        LlamaGraphOptions go;
        go.n_tokens = n_ctx;
        go.n_kv = n_ctx;
        LlamaGraph g(stories(), cache, go);
        ThreadPool pool(1);
        for (int64_t c = 0; c < 2; ++c) {
            std::vector<int32_t> batch(ids.begin() + c * n_ctx, ids.begin() + (c + 1) * n_ctx);
            batch[0] = 1;
            const float* logits = g.eval(batch.data(), 0, pool);
            for (int64_t j = first; j < n_ctx - 1; ++j)
                direct[size_t(c)].push_back(token_nll(logits + j * vocab, vocab, ids[size_t(c * n_ctx + j + 1)]));
        }
    }
    REQUIRE(int64_t(direct[0].size()) == perplexity_scored_per_chunk(n_ctx));
    CHECK(perplexity_scored_per_chunk(512) == 255);

    PerplexityOptions po;
    po.n_ctx = n_ctx;
    po.max_chunks = 2;
    po.bos = 1;
    for (int threads : {1, 2}) {
        po.threads = threads;
        std::vector<MeanStats> running;
        const PerplexityResult r = perplexity(stories(), ids, po, [&](const ChunkProgress& p) {
            CHECK(p.chunk == int64_t(running.size()));
            CHECK(p.n_chunks == 2);
            CHECK(p.kld == nullptr);
            running.push_back(*p.nll);
        });
        REQUIRE(running.size() == 2);
        CHECK(r.n_chunks == 2);
        CHECK_FALSE(r.have_kld);
        CHECK(r.nll.n == 2 * 63);
        // chunk 0 alone, then both: mean, standard error (sqrt(var/N)), ppl and its delta-method error
        MeanStats d;
        for (int c = 0; c < 2; ++c) {
            for (double x : direct[size_t(c)]) d.add(x);
            const MeanStats& got = running[size_t(c)];
            REQUIRE(got.n == d.n);
            CHECK(got.mean() == doctest::Approx(d.mean()).epsilon(1e-5));
            double var = 0;
            for (int cc = 0; cc <= c; ++cc)
                for (double x : direct[size_t(cc)]) var += (x - d.mean()) * (x - d.mean());
            var /= double(d.n - 1);
            CHECK(got.se() == doctest::Approx(std::sqrt(var / double(d.n))).epsilon(1e-4));
            CHECK(got.ppl() == doctest::Approx(std::exp(d.mean())).epsilon(1e-5));
            CHECK(got.ppl_se() == doctest::Approx(std::exp(d.mean()) * std::sqrt(var / double(d.n))).epsilon(1e-4));
        }
        CHECK(std::isfinite(r.nll.ppl()));
        CHECK(r.nll.ppl() > 1.0);
        CHECK(r.nll.ppl() < 50.0);  // a trained model on its own domain (the README: ppl ~5.2 per story)
    }

    // every whole chunk by default (of a 20.5-chunk stream)
    po.max_chunks = 0;
    po.threads = 1;
    const std::vector<int32_t> part(ids.begin(), ids.begin() + 20 * n_ctx + n_ctx / 2);
    const PerplexityResult all = perplexity(stories(), part, po);
    CHECK(all.n_chunks == 20);
    CHECK(all.nll.n == all.n_chunks * 63);
    CHECK(std::isfinite(all.nll.ppl()));
    CHECK(all.nll.ppl_se() > 0);
}

// ---- (c) logits files and KL divergence ---------------------------------------------------------------
TEST_CASE("perplexity: saved logits, KL divergence against itself is 0, against a perturbed model > 0") {
    const std::vector<int32_t>& ids = text_tokens();
    const int64_t vocab = stories().hp.n_vocab;
    const std::string base = tmp().file("base.logits");
    PerplexityOptions po;
    po.n_ctx = 64;
    po.max_chunks = 3;
    po.bos = 1;
    po.threads = 1;
    po.save_logits = base;
    const PerplexityResult r0 = perplexity(stories(), ids, po);
    const LogitsFileInfo info = read_logits_info(base);
    CHECK(info.n_vocab == vocab);
    CHECK(info.n_ctx == 64);
    CHECK(info.n_tokens == 3 * 31);
    CHECK(fs::file_size(base) == 32 + 4 * info.n_tokens * (1 + info.n_vocab));
    CHECK_FALSE(fs::exists(base + ".tmp"));
    // the header and the ids as documented
    const std::string bytes = slurp(base);
    CHECK(bytes.substr(0, 8) == "LBLOGITS");
    int32_t id0 = 0;
    std::memcpy(&id0, bytes.data() + 32, 4);
    CHECK(id0 == ids[33]);  // chunk 0, position 32 predicts token 33

    // against itself
    po.save_logits.clear();
    po.kl_base = base;
    int calls = 0;
    const PerplexityResult self = perplexity(stories(), ids, po, [&](const ChunkProgress& p) {
        ++calls;
        CHECK(p.kld != nullptr);
    });
    CHECK(calls == 3);
    REQUIRE(self.have_kld);
    CHECK(self.kld.kld.n == 93);
    CHECK(self.kld.kld.mean() < 1e-9);
    CHECK(self.kld.max_kld < 1e-9);
    CHECK(self.kld.same_top == 93);
    CHECK(self.kld.same_top_frac() == 1.0);
    CHECK(self.nll.mean() == doctest::Approx(r0.nll.mean()).epsilon(1e-9));

    // a perturbed model: the final norm scaled (sharper logits) and one layer's ffn_down scaled
    LlamaCheckpoint ck = read_llama2c(kStories);
    int touched = 0;
    for (CheckpointTensor& t : ck.tensors) {
        if (t.name != "output_norm.weight" && t.name != "blk.2.ffn_down.weight") continue;
        REQUIRE(t.type == Type::f32);
        float* w = reinterpret_cast<float*>(t.data.data());
        for (size_t i = 0; i < t.data.size() / 4; ++i) w[i] *= t.name[0] == 'o' ? 1.5f : 0.5f;
        ++touched;
    }
    REQUIRE(touched == 2);
    const std::unique_ptr<LlamaModel> other = LlamaModel::from_checkpoint(std::move(ck));
    const PerplexityResult pert = perplexity(*other, ids, po);
    REQUIRE(pert.have_kld);
    CHECK(pert.kld.kld.mean() > 1e-3);
    CHECK(pert.kld.kld.se() > 0);
    CHECK(pert.kld.max_kld >= pert.kld.kld.mean());
    CHECK(pert.kld.same_top <= 93);
    CHECK(std::isfinite(pert.nll.ppl()));

    // perturbed logits: the base's row 0 gets a large logit on a token the model finds unlikely
    std::string mod = bytes;
    const size_t row0 = 32 + 4 * 93;
    const float big = 30.0f;
    std::memcpy(&mod[row0 + 4 * 7], &big, 4);
    const std::string modified = tmp().file("modified.logits");
    spit(modified, mod);
    po.kl_base = modified;
    const PerplexityResult pm = perplexity(stories(), ids, po);
    CHECK(pm.kld.max_kld > 1.0);
    CHECK(pm.kld.kld.mean() == doctest::Approx(pm.kld.max_kld / 93).epsilon(1e-6));
    CHECK(pm.kld.same_top == 92);
}

// ---- (d) bad inputs -----------------------------------------------------------------------------------
TEST_CASE("perplexity: bad inputs give lb::Error naming the problem") {
    const std::vector<int32_t>& ids = text_tokens();
    PerplexityOptions po;
    po.n_ctx = 64;
    po.bos = 1;
    const std::vector<int32_t> short_ids(ids.begin(), ids.begin() + 100);
    CHECK(expect_error([&] { perplexity(stories(), short_ids, po); })
              .find("the text is 100 tokens; a context of 64 "
                    "(-c) needs at least 2 * 64 = 128 tokens") != std::string::npos);
    po.n_ctx = 2;
    CHECK(expect_error([&] { perplexity(stories(), ids, po); }).find("n_ctx (-c) 2, supported 4..") !=
          std::string::npos);
    po.n_ctx = 64;
    std::vector<int32_t> bad = ids;
    bad[70] = 512;
    CHECK(expect_error([&] { perplexity(stories(), bad, po); }).find("token 70 (id 512) is outside") !=
          std::string::npos);
    CHECK(expect_error([&] { score_sequences(stories(), {{1, 2, 600}}, 1); }).find("id 600") != std::string::npos);

    // an unwritable logits file, and nothing left behind
    po.save_logits = tmp().file("no_such_dir/x.logits");
    CHECK(expect_error([&] { perplexity(stories(), ids, po); }).find("--save-logits") != std::string::npos);
    po.save_logits.clear();

    // base logits files that are missing, malformed or made for other tokens
    po.max_chunks = 2;
    const std::string base = tmp().file("bad_base.logits");
    po.save_logits = base;
    perplexity(stories(), ids, po);
    po.save_logits.clear();
    const std::string good = slurp(base);
    auto kl_error = [&](const std::string& bytes, PerplexityOptions o) {
        const std::string p = tmp().file("broken.logits");
        spit(p, bytes);
        o.kl_base = p;
        return expect_error([&] { perplexity(stories(), ids, o); });
    };
    po.kl_base = tmp().file("missing.logits");
    CHECK(expect_error([&] { perplexity(stories(), ids, po); }).find("missing.logits: cannot open") !=
          std::string::npos);
    po.kl_base.clear();
    CHECK(kl_error("hello", po).find("shorter than the 32-byte header") != std::string::npos);
    CHECK(kl_error("NOTLOGIT" + good.substr(8), po).find("bad magic") != std::string::npos);
    CHECK(kl_error(good.substr(0, good.size() - 4), po).find("(truncated or corrupt)") != std::string::npos);
    std::string v2 = good;
    v2[8] = 2;
    CHECK(kl_error(v2, po).find("version 2, this build supports 1") != std::string::npos);
    std::string other_id = good;
    other_id[32 + 4 * 5] ^= 1;
    CHECK(kl_error(other_id, po).find("scored token 5 is id") != std::string::npos);
    PerplexityOptions more = po;
    more.max_chunks = 3;
    CHECK(kl_error(good, more).find("62 scored tokens, this run scores 93") != std::string::npos);
    PerplexityOptions ctx = po;
    ctx.n_ctx = 32;
    CHECK(kl_error(good, ctx).find("made with -c 64, this run uses -c 32") != std::string::npos);
    // a header claiming another vocabulary, with the size to match
    std::string vocab = good.substr(0, 32 + 4 * 62);
    const uint32_t nv = 16;
    std::memcpy(&vocab[12], &nv, 4);
    vocab.append(size_t(62 * 16 * 4), '\0');
    CHECK(kl_error(vocab, po).find("n_vocab 16, the model has 512") != std::string::npos);
    // a huge n_tokens does not overflow the size check
    std::string huge = good;
    const uint64_t nt = ~uint64_t(0) / 2;
    std::memcpy(&huge[24], &nt, 8);
    CHECK(kl_error(huge, po).find("(truncated or corrupt)") != std::string::npos);
}

// ---- the CLI --------------------------------------------------------------------------------------------
TEST_CASE("lowbit perplexity: runs, saves logits, KL divergence, errors") {
    const std::string m = stories_lbf();
    const std::string base = tmp().file("cli_base.logits");
    Result r = cli({"-m", m, "-f", kText, "-c", "128", "--chunks", "3", "-t", "1", "--save-logits", base});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.out.find("[1/3] ppl = ") != std::string::npos);
    CHECK(r.out.find("[3/3] ppl = ") != std::string::npos);
    CHECK(r.out.find("over 189 tokens") != std::string::npos);
    CHECK(r.out.find(" +/- ") != std::string::npos);
    CHECK(r.err.find("tokens/s") != std::string::npos);
    CHECK(read_logits_info(base).n_tokens == 189);

    // the same numbers as the API on the whole text tokenized with BOS
    PerplexityOptions po;
    po.n_ctx = 128;
    po.max_chunks = 3;
    po.bos = 1;
    const PerplexityResult api = perplexity(stories(), text_tokens(), po);
    char line[64];
    std::snprintf(line, sizeof line, "ppl = %.4f +/- %.4f", api.nll.ppl(), api.nll.ppl_se());
    CHECK(r.out.find(line) != std::string::npos);

    r = cli({"-m", m, "-f", kText, "-c", "128", "--chunks", "3", "--kl-divergence", base});
    REQUIRE(r.rc == 0);
    CHECK(r.out.find("mean KLD = 0.000000 +/- 0.000000, same top = 100.00 % (189 of 189)") != std::string::npos);

    // errors: exit 1 and a message on stderr
    auto err = [&](const std::vector<std::string>& args, const std::string& msg) {
        const Result e = cli(args);
        INFO(e.err);
        CHECK(e.rc == 1);
        CHECK(e.err.find(msg) != std::string::npos);
    };
    err({"-m", m, "-f", kText, "-c", "256", "--kl-divergence", base, "--chunks", "3"}, "made with -c 128");
    err({"-m", m, "-f", kText, "-c", "128", "--kl-divergence", base}, "scored tokens, this run scores");
    err({"-m", m, "-f", kText, "-c", "1"}, "-c: '1' is not an integer in 4..65536");
    err({"-m", m, "-f", kText, "-c", "lots"}, "-c: 'lots' is not an integer");
    err({"-m", m, "-f", kText, "--chunks", "0"}, "--chunks: '0' is not an integer");
    err({"-m", m, "-f", kText, "-c", "65536"}, "needs at least 2 * 65536 = 131072 tokens");
    err({"-m", m, "-f", "../../shared/data/text/wikitext-2-raw-v1-test.rows-crlf.txt", "-c", "65536"},
        "-c 65536: one chunk would need 128.1 GiB");
    err({"-f", kText}, "no model: give -m MODEL.lbf");
    err({"-m", m}, "no text: give -f TEXT");
    err({"-m", m, "-f", kText, "--fast"}, "unknown option '--fast'");
    err({"-m", tmp().file("nope.lbf"), "-f", kText}, "nope.lbf");
    err({"-m", m, "-f", tmp().file("nope.txt")}, "nope.txt: cannot open: No such file or directory");
    const std::string bad_utf8 = tmp().file("bad.txt");
    spit(bad_utf8, "Once upon a \xff time");
    err({"-m", m, "-f", bad_utf8}, "not valid UTF-8 (a malformed sequence at byte 12)");
    const std::string short_text = tmp().file("short.txt");
    spit(short_text, "Once upon a time there was a cat.");
    err({"-m", m, "-f", short_text}, "needs at least 2 * 512 = 1024 tokens");
    err({"-m", m, "-f", kText, "--kl-divergence", tmp().file("missing.logits")}, "missing.logits: cannot open");
    r = cli({"--help"});
    CHECK(r.rc == 0);
    CHECK(r.out.find("--kl-divergence") != std::string::npos);
}
