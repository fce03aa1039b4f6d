// sampler.h: picks the next token from a row of logits. The chain (llama.cpp's default order):
//   repetition penalty over the last repeat_last_n accepted tokens (each distinct token once:
//   a positive logit is divided by the penalty, a negative one multiplied)
//   -> temperature 0: greedy (argmax, lowest id on ties), nothing else applies
//   -> top-k (k largest logits; 0 = off) -> top-p (smallest prefix of the probabilities at T = 1
//   whose sum reaches p; 1 = off) -> min-p (drop tokens with p < min_p * p_max; 0 = off)
//   -> softmax of logit / temperature over what is left -> one draw from the seeded RNG.
// Candidates are ordered by (logit descending, id ascending), a total order, so the result does not
// depend on the standard library's sort. The RNG is our own xoshiro256** seeded by splitmix64, so a
// seed gives the same tokens everywhere. All buffers are sized at construction: sample() and
// accept() allocate nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lb {

struct SamplerParams {
    float temperature = 0.8f;     // >= 0; 0 = greedy
    int32_t top_k = 40;           // >= 0; 0 = off
    float top_p = 0.95f;          // (0, 1]; 1 = off
    float min_p = 0.05f;          // [0, 1]; 0 = off
    float repeat_penalty = 1.0f;  // > 0; 1 = off
    int32_t repeat_last_n = 64;   // 0..1048576 tokens of history; 0 = off
    uint64_t seed = 0;
    // throws lb::Error naming the first bad field and the accepted range
    void validate() const;
};

// xoshiro256** (Blackman & Vigna), state from splitmix64(seed).
class Rng {
 public:
    explicit Rng(uint64_t seed) { reseed(seed); }
    void reseed(uint64_t seed);
    uint64_t next_u64();
    double next_double();  // uniform in [0, 1), 53 bits

 private:
    uint64_t s_[4];
};

class Sampler {
 public:
    Sampler(const SamplerParams& p, int64_t n_vocab);  // validates p; n_vocab >= 1

    // The next token for one row of n_vocab logits (not modified).
    int32_t sample(const float* logits);
    // Adds a token to the repetition-penalty history (prompt tokens and generated ones).
    void accept(int32_t token);
    void reset();  // clears the history (the RNG goes on)

    const SamplerParams& params() const { return p_; }

    // The steps one by one, for tests. A candidate list is `n` (id, logit) pairs; after each step
    // the survivors are cands()[0..n_cands()).
    struct Cand {
        int32_t id;
        float logit;
    };
    // copies the logits into the work buffer with the repetition penalty applied
    void apply_penalty(const float* logits);
    const float* penalized() const { return work_.data(); }
    // builds candidates from the penalized logits and applies top-k, top-p, min-p
    void filter();
    const Cand* cands() const { return cands_.data(); }
    size_t n_cands() const { return n_; }

 private:
    SamplerParams p_;
    int64_t n_vocab_;
    Rng rng_;
    std::vector<float> work_;       // penalized logits [n_vocab]
    std::vector<Cand> cands_;       // [n_vocab]
    std::vector<double> probs_;     // [n_vocab]
    std::vector<int32_t> history_;  // ring buffer [repeat_last_n]
    std::vector<uint32_t> stamp_;   // per token: the sample() call that last penalized it
    size_t n_ = 0, hist_len_ = 0, hist_next_ = 0;
    uint32_t call_ = 0;
};

}  // namespace lb
