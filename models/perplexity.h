// perplexity.h: scoring a model on text: chunked perplexity over a token stream, per-sequence
// negative log-likelihood, and the KL divergence of a model's next-token distributions against
// logits saved from a base model (e.g. a 2-bit model against its f16 original).
//
// Chunked perplexity (the usual method for comparing quantizations): the stream is cut into
// n_chunks = min(max_chunks, n_tokens / n_ctx) chunks of n_ctx consecutive tokens; the first token
// of every chunk is replaced by BOS when `bos` >= 0 (the tokenizer adds one), so that every chunk
// looks like the start of a document. Each chunk is evaluated as one batch from position 0 (a fresh
// context), and only its second half is scored: the logits at positions j = n_ctx/2 .. n_ctx-2
// predict tokens j+1, so every scored token has at least n_ctx/2 tokens of context.
// That is n_ctx - 1 - n_ctx/2 scored tokens per chunk.
//
// Statistics (MeanStats): for per-token values x_i (NLL in nats, or KL divergence) the mean
// m = sum x_i / N and its standard error se(m) = sqrt(var / N) with the unbiased sample variance
// var = (sum x_i^2 - N m^2) / (N - 1). Perplexity is exp(m); its standard error comes from the
// delta method: d exp(m) / dm = exp(m), so se(ppl) = ppl * se(m) = ppl * sqrt(var / N).
// (Tokens of one text are not independent, so this is a lower bound on the real uncertainty; it is
// the usual figure to tell whether two models differ at all on the same tokens.)
//
// Logits file (--save-logits / --kl-divergence), little-endian, written atomically (a temporary
// file renamed into place when complete):
//   offset  0  char[8]  magic "LBLOGITS"
//           8  u32      version = 1
//          12  u32      n_vocab
//          16  u32      n_ctx: the chunk length the logits were made with
//          20  u32      0 (reserved)
//          24  u64      n_tokens: scored tokens
//          32  i32      ids[n_tokens]: the scored (target) token of every position, in order
//   32 + 4 n_tokens     f32 logits[n_tokens][n_vocab]: row t is the distribution that predicts ids[t]
// A file is accepted as a base only if its size is exactly 32 + 4 n_tokens (1 + n_vocab) bytes and
// n_vocab, n_ctx, n_tokens and every id match the run.
//
// KL divergence per scored token: KL(base || model) = sum_v p(v) (log p(v) - log q(v)) with
// p = softmax(base logits), q = softmax(model logits), in nats; plus whether the top-1 (argmax)
// tokens agree, and the largest KL seen.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/types.h"

namespace lb {

class GraphBackend;  // core/graph.h

class LlamaModel;

// Running mean and standard error of a per-token quantity (see the header comment).
struct MeanStats {
    int64_t n = 0;
    double sum = 0, sum2 = 0;
    void add(double x) {
        ++n;
        sum += x;
        sum2 += x * x;
    }
    void merge(const MeanStats& o) {
        n += o.n;
        sum += o.sum;
        sum2 += o.sum2;
    }
    double mean() const { return n ? sum / double(n) : 0.0; }
    double var() const;     // unbiased sample variance, 0 when n < 2
    double se() const;      // sqrt(var / n)
    double ppl() const;     // exp(mean) (for NLL in nats)
    double ppl_se() const;  // ppl * se (delta method)
};

struct KldStats {
    MeanStats kld;         // per-token KL(base || model), nats
    int64_t same_top = 0;  // positions whose argmax agrees
    double max_kld = 0;
    double same_top_frac() const { return kld.n ? double(same_top) / double(kld.n) : 0.0; }
};

struct PerplexityOptions {
    int64_t n_ctx = 512;     // chunk length, >= 4
    int64_t max_chunks = 0;  // 0: every whole chunk of the stream
    int threads = 1;
    int32_t bos = -1;                 // >= 0: the first token of every chunk becomes this id
    Type cache_type = Type::f16;      // KV cache element type (f16 or f32)
    std::string save_logits;          // non-empty: write the logits file here
    std::string kl_base;              // non-empty: compute the KL divergence against this logits file
    GraphBackend* backend = nullptr;  // where the chunk graph runs (null: the CPU; see LlamaGraphOptions)
};

struct ChunkProgress {
    int64_t chunk = 0, n_chunks = 0;  // chunk (0-based) just finished, of n_chunks
    const MeanStats* nll = nullptr;   // running, all chunks so far
    const KldStats* kld = nullptr;    // running; null without kl_base
    double seconds = 0;               // since the start of the first chunk
};

struct PerplexityResult {
    int64_t n_chunks = 0;
    MeanStats nll;  // per scored token, nats
    bool have_kld = false;
    KldStats kld;
    double seconds = 0;  // evaluation time (model + scoring)
};

// Scored tokens per chunk of length n_ctx.
inline int64_t perplexity_scored_per_chunk(int64_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

// Chunked perplexity of `tokens` (see the header comment). Throws lb::Error when the stream has
// fewer than 2 * n_ctx tokens (the message says how many are needed), for a bad n_ctx, a token
// outside the vocabulary, an unwritable --save-logits file, or a base logits file that is
// malformed or does not match (vocabulary, n_ctx, token count, token ids).
PerplexityResult perplexity(const LlamaModel& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                            const std::function<void(const ChunkProgress&)>& progress = {});

// Per-sequence NLL: each sequence is evaluated from position 0 as one batch and every token after
// the first is scored given its prefix. Sequences shorter than 2 tokens contribute nothing.
MeanStats score_sequences(const LlamaModel& m, const std::vector<std::vector<int32_t>>& seqs, int threads);

// The header of a logits file (validated against the file's size).
struct LogitsFileInfo {
    uint32_t n_vocab = 0, n_ctx = 0;
    uint64_t n_tokens = 0;
};
LogitsFileInfo read_logits_info(const std::string& path);

}  // namespace lb
