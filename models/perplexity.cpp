// perplexity.cpp: chunked perplexity, per-sequence NLL, logits files and KL divergence
// (models/perplexity.h documents the method, the statistics and the file format).
#include "models/perplexity.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

#include "core/error.h"
#include "core/threadpool.h"
#include "models/llama.h"

namespace lb {

static_assert(std::numeric_limits<float>::is_iec559, "logits files hold IEEE f32");

double MeanStats::var() const {
    if (n < 2) return 0.0;
    const double m = mean();
    return std::max(0.0, (sum2 - double(n) * m * m) / double(n - 1));
}
double MeanStats::se() const { return n ? std::sqrt(var() / double(n)) : 0.0; }
double MeanStats::ppl() const { return std::exp(mean()); }
double MeanStats::ppl_se() const { return ppl() * se(); }

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMagic[8] = {'L', 'B', 'L', 'O', 'G', 'I', 'T', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeaderBytes = 32;

bool host_little_endian() {
    const uint16_t x = 1;
    uint8_t b;
    std::memcpy(&b, &x, 1);
    return b == 1;
}

// log-sum-exp of one row, in double
double row_lse(const float* x, int64_t n, int64_t* argmax) {
    int64_t am = 0;
    float mx = x[0];
    for (int64_t i = 1; i < n; ++i)
        if (x[i] > mx) mx = x[i], am = i;
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - double(mx));
    if (argmax) *argmax = am;
    return double(mx) + std::log(s);
}

// Per-position results of one batch of scored rows.
struct RowScores {
    std::vector<double> nll, kld;
    std::vector<uint8_t> same_top;
};

// rows[j] (n_vocab floats each) predict targets[j]; base rows (or null) give the KL divergence.
void score_rows(const float* rows, const float* base, const int32_t* targets, int64_t n_rows, int64_t n_vocab,
                ThreadPool& pool, RowScores& out) {
    out.nll.assign(size_t(n_rows), 0.0);
    out.kld.assign(base ? size_t(n_rows) : 0, 0.0);
    out.same_top.assign(base ? size_t(n_rows) : 0, 0);
    pool.parallel_for(uint64_t(n_rows), [&](uint64_t b, uint64_t e, int) {
        for (uint64_t j = b; j < e; ++j) {
            const float* q = rows + j * uint64_t(n_vocab);
            int64_t q_top = 0;
            const double lse_q = row_lse(q, n_vocab, &q_top);
            out.nll[j] = lse_q - double(q[targets[j]]);
            if (!base) continue;
            const float* p = base + j * uint64_t(n_vocab);
            int64_t p_top = 0;
            const double lse_p = row_lse(p, n_vocab, &p_top);
            double kl = 0;
            for (int64_t i = 0; i < n_vocab; ++i) {
                const double lp = double(p[i]) - lse_p, lq = double(q[i]) - lse_q;
                kl += std::exp(lp) * (lp - lq);
            }
            out.kld[j] = std::max(0.0, kl);  // rounding can give -1e-17
            out.same_top[j] = p_top == q_top;
        }
    });
}

// ---- logits files ---------------------------------------------------------------------------------
struct FileCloser {
    void operator()(FILE* f) const {
        if (f) std::fclose(f);
    }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
uint64_t get_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// Writes PATH.tmp and renames it to PATH in commit(); removes the temporary file otherwise.
class LogitsWriter {
 public:
    LogitsWriter(const std::string& path, uint32_t n_vocab, uint32_t n_ctx, const std::vector<int32_t>& ids)
        : path_(path), tmp_(path + ".tmp") {
        f_.reset(std::fopen(tmp_.c_str(), "wb"));
        LB_CHECK(f_ != nullptr, "--save-logits %s: cannot create '%s' (%s)", path.c_str(), tmp_.c_str(),
                 std::strerror(errno));
        uint8_t h[kHeaderBytes] = {};
        std::memcpy(h, kMagic, 8);
        put_u32(h + 8, kVersion);
        put_u32(h + 12, n_vocab);
        put_u32(h + 16, n_ctx);
        put_u64(h + 24, uint64_t(ids.size()));
        write(h, sizeof h);
        write(ids.data(), ids.size() * sizeof(int32_t));
    }
    ~LogitsWriter() {
        if (!done_) {
            f_.reset();
            std::error_code ec;
            std::filesystem::remove(tmp_, ec);
        }
    }
    void write(const void* p, size_t n) {
        LB_CHECK(n == 0 || std::fwrite(p, 1, n, f_.get()) == n, "--save-logits %s: write failed (%s)", path_.c_str(),
                 std::strerror(errno));
    }
    void commit() {
        LB_CHECK(std::fflush(f_.get()) == 0, "--save-logits %s: write failed (%s)", path_.c_str(),
                 std::strerror(errno));
        FILE* f = f_.release();
        LB_CHECK(std::fclose(f) == 0, "--save-logits %s: write failed (%s)", path_.c_str(), std::strerror(errno));
        std::error_code ec;
        std::filesystem::rename(tmp_, path_, ec);
        LB_CHECK(!ec, "--save-logits %s: cannot rename '%s' into place (%s)", path_.c_str(), tmp_.c_str(),
                 ec.message().c_str());
        done_ = true;
    }

 private:
    std::string path_, tmp_;
    FilePtr f_;
    bool done_ = false;
};

// Opens a logits file, validates the header against the size; the file is left at the ids.
FilePtr open_logits(const std::string& path, LogitsFileInfo& info) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    LB_CHECK(!ec, "logits file %s: cannot open (%s)", path.c_str(), ec.message().c_str());
    FilePtr f(std::fopen(path.c_str(), "rb"));
    LB_CHECK(f != nullptr, "logits file %s: cannot open (%s)", path.c_str(), std::strerror(errno));
    uint8_t h[kHeaderBytes];
    LB_CHECK(size >= kHeaderBytes && std::fread(h, 1, sizeof h, f.get()) == sizeof h,
             "logits file %s: %llu bytes, shorter than the %llu-byte header", path.c_str(), (unsigned long long)size,
             (unsigned long long)kHeaderBytes);
    LB_CHECK(std::memcmp(h, kMagic, 8) == 0, "logits file %s: bad magic (expected \"LBLOGITS\"): not a logits file",
             path.c_str());
    const uint32_t version = get_u32(h + 8);
    LB_CHECK(version == kVersion, "logits file %s: version %u, this build supports %u", path.c_str(), version,
             kVersion);
    info.n_vocab = get_u32(h + 12);
    info.n_ctx = get_u32(h + 16);
    info.n_tokens = get_u64(h + 24);
    LB_CHECK(info.n_vocab >= 1, "logits file %s: n_vocab is 0", path.c_str());
    LB_CHECK(get_u32(h + 20) == 0, "logits file %s: reserved field is %u, expected 0", path.c_str(), get_u32(h + 20));
    // expected size = 32 + 4 n_tokens (1 + n_vocab), without overflow
    const uint64_t row = 4 * (1 + uint64_t(info.n_vocab));
    LB_CHECK(info.n_tokens <= (size - kHeaderBytes) / row && kHeaderBytes + info.n_tokens * row == size,
             "logits file %s: n_tokens %llu and n_vocab %u need %s bytes, the file has %llu (truncated or corrupt)",
             path.c_str(), (unsigned long long)info.n_tokens, info.n_vocab,
             info.n_tokens <= (UINT64_MAX - kHeaderBytes) / row
                 ? std::to_string(kHeaderBytes + info.n_tokens * row).c_str()
                 : "more than 2^64",
             (unsigned long long)size);
    return f;
}

}  // namespace

LogitsFileInfo read_logits_info(const std::string& path) {
    LogitsFileInfo info;
    open_logits(path, info);
    return info;
}

// ---- chunked perplexity ---------------------------------------------------------------------------
PerplexityResult perplexity(const LlamaModel& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                            const std::function<void(const ChunkProgress&)>& progress) {
    const int64_t n_ctx = opt.n_ctx, n_vocab = m.hp.n_vocab;
    LB_CHECK(n_ctx >= 4 && n_ctx <= (int64_t(1) << 20), "perplexity: n_ctx (-c) %lld, supported 4..%lld",
             (long long)n_ctx, (long long)(int64_t(1) << 20));
    LB_CHECK(opt.max_chunks >= 0, "perplexity: max_chunks (--chunks) %lld must be >= 0", (long long)opt.max_chunks);
    LB_CHECK(opt.threads >= 1, "perplexity: threads %d must be >= 1", opt.threads);
    LB_CHECK(opt.bos < n_vocab, "perplexity: bos %d is outside the vocabulary of %lld", opt.bos, (long long)n_vocab);
    const int64_t n_tok = int64_t(tokens.size());
    LB_CHECK(n_tok >= 2 * n_ctx,
             "perplexity: the text is %lld tokens; a context of %lld (-c) needs at least 2 * %lld = %lld tokens",
             (long long)n_tok, (long long)n_ctx, (long long)n_ctx, (long long)(2 * n_ctx));
    int64_t n_chunks = n_tok / n_ctx;
    if (opt.max_chunks > 0) n_chunks = std::min(n_chunks, opt.max_chunks);
    for (int64_t i = 0; i < n_chunks * n_ctx; ++i)
        LB_CHECK(tokens[size_t(i)] >= 0 && tokens[size_t(i)] < n_vocab,
                 "perplexity: token %lld (id %d) is outside the model's vocabulary of %lld", (long long)i,
                 tokens[size_t(i)], (long long)n_vocab);

    const int64_t first = n_ctx / 2, n_scored = perplexity_scored_per_chunk(n_ctx);
    // the targets of every scored position, in order (what a logits file records)
    std::vector<int32_t> targets;
    targets.reserve(size_t(n_chunks * n_scored));
    for (int64_t c = 0; c < n_chunks; ++c)
        for (int64_t j = first; j < n_ctx - 1; ++j) targets.push_back(tokens[size_t(c * n_ctx + j + 1)]);

    const bool use_files = !opt.save_logits.empty() || !opt.kl_base.empty();
    LB_CHECK(!use_files || host_little_endian(), "logits files are little-endian; this host is not");
    LB_CHECK(n_vocab <= int64_t(UINT32_MAX), "perplexity: n_vocab %lld does not fit a logits file", (long long)n_vocab);

    // the base logits file: header and ids must match this run
    FilePtr base;
    if (!opt.kl_base.empty()) {
        LB_CHECK(opt.kl_base != opt.save_logits, "--kl-divergence and --save-logits name the same file %s",
                 opt.kl_base.c_str());
        LogitsFileInfo info;
        base = open_logits(opt.kl_base, info);
        const char* p = opt.kl_base.c_str();
        LB_CHECK(int64_t(info.n_vocab) == n_vocab,
                 "logits file %s: n_vocab %u, the model has %lld: the base was made by a model with another vocabulary",
                 p, info.n_vocab, (long long)n_vocab);
        LB_CHECK(int64_t(info.n_ctx) == n_ctx, "logits file %s: made with -c %u, this run uses -c %lld", p, info.n_ctx,
                 (long long)n_ctx);
        LB_CHECK(info.n_tokens == targets.size(),
                 "logits file %s: %llu scored tokens, this run scores %zu (use the same text, -c and --chunks)", p,
                 (unsigned long long)info.n_tokens, targets.size());
        std::vector<int32_t> ids(targets.size());
        LB_CHECK(std::fread(ids.data(), sizeof(int32_t), ids.size(), base.get()) == ids.size(),
                 "logits file %s: cannot read the token ids", p);
        for (size_t i = 0; i < ids.size(); ++i)
            LB_CHECK(ids[i] == targets[i],
                     "logits file %s: scored token %zu is id %d, this run has id %d (another text or tokenizer?)", p, i,
                     ids[i], targets[i]);
    }
    std::unique_ptr<LogitsWriter> writer;
    if (!opt.save_logits.empty())
        writer = std::make_unique<LogitsWriter>(opt.save_logits, uint32_t(n_vocab), uint32_t(n_ctx), targets);

    KvCache cache(m.hp, n_ctx, opt.cache_type);
    LlamaGraphOptions go;
    go.n_tokens = n_ctx;
    go.n_kv = n_ctx;
    go.all_logits = true;
    go.max_threads = opt.threads;
    go.backend = opt.backend;
    LlamaGraph graph(m, cache, go);
    ThreadPool pool(opt.threads);

    PerplexityResult r;
    r.n_chunks = n_chunks;
    r.have_kld = bool(base);
    std::vector<int32_t> batch(static_cast<size_t>(n_ctx));
    std::vector<float> base_rows(base ? size_t(n_scored * n_vocab) : 0);
    RowScores s;
    const auto t0 = Clock::now();
    for (int64_t c = 0; c < n_chunks; ++c) {
        std::copy(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx, batch.begin());
        if (opt.bos >= 0) batch[0] = opt.bos;
        const float* logits = graph.eval(batch.data(), 0, pool);
        const float* rows = logits + first * n_vocab;
        if (writer) writer->write(rows, size_t(n_scored * n_vocab) * sizeof(float));
        if (base)
            LB_CHECK(std::fread(base_rows.data(), sizeof(float), base_rows.size(), base.get()) == base_rows.size(),
                     "logits file %s: cannot read the logits of chunk %lld", opt.kl_base.c_str(), (long long)c);
        score_rows(rows, base ? base_rows.data() : nullptr, targets.data() + c * n_scored, n_scored, n_vocab, pool, s);
        for (int64_t j = 0; j < n_scored; ++j) {
            r.nll.add(s.nll[size_t(j)]);
            if (!base) continue;
            r.kld.kld.add(s.kld[size_t(j)]);
            r.kld.same_top += s.same_top[size_t(j)];
            r.kld.max_kld = std::max(r.kld.max_kld, s.kld[size_t(j)]);
        }
        r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        if (progress) {
            ChunkProgress p;
            p.chunk = c;
            p.n_chunks = n_chunks;
            p.nll = &r.nll;
            p.kld = base ? &r.kld : nullptr;
            p.seconds = r.seconds;
            progress(p);
        }
    }
    if (writer) writer->commit();
    return r;
}

// ---- per-sequence NLL -----------------------------------------------------------------------------
MeanStats score_sequences(const LlamaModel& m, const std::vector<std::vector<int32_t>>& seqs, int threads) {
    LB_CHECK(threads >= 1, "score_sequences: threads %d must be >= 1", threads);
    const int64_t n_vocab = m.hp.n_vocab;
    size_t max_len = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
        max_len = std::max(max_len, seqs[i].size());
        for (int32_t id : seqs[i])
            LB_CHECK(id >= 0 && id < n_vocab, "score_sequences: sequence %zu has id %d, outside the vocabulary of %lld",
                     i, id, (long long)n_vocab);
    }
    MeanStats st;
    if (max_len < 2) return st;
    KvCache cache(m.hp, int64_t(max_len));
    ThreadPool pool(threads);
    RowScores s;
    for (const auto& seq : seqs) {
        if (seq.size() < 2) continue;
        LlamaGraphOptions go;
        go.n_tokens = int64_t(seq.size());
        go.n_kv = go.n_tokens;
        go.all_logits = true;
        go.max_threads = threads;
        LlamaGraph g(m, cache, go);
        const float* logits = g.eval(seq.data(), 0, pool);
        const int64_t n = go.n_tokens - 1;
        score_rows(logits, nullptr, seq.data() + 1, n, n_vocab, pool, s);
        for (int64_t j = 0; j < n; ++j) st.add(s.nll[size_t(j)]);
    }
    return st;
}

}  // namespace lb
