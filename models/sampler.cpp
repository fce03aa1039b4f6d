// sampler.cpp: the sampling chain of models/sampler.h.
#include "models/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lb {

void SamplerParams::validate() const {
    LB_CHECK(std::isfinite(temperature) && temperature >= 0.0f, "temperature %g: must be a finite number >= 0",
             double(temperature));
    LB_CHECK(top_k >= 0, "top-k %d: must be >= 0 (0 = off)", top_k);
    LB_CHECK(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f, "top-p %g: must be in (0, 1] (1 = off)",
             double(top_p));
    LB_CHECK(std::isfinite(min_p) && min_p >= 0.0f && min_p <= 1.0f, "min-p %g: must be in [0, 1] (0 = off)",
             double(min_p));
    LB_CHECK(std::isfinite(repeat_penalty) && repeat_penalty > 0.0f,
             "repeat-penalty %g: must be a finite number > 0 (1 = off)", double(repeat_penalty));
    LB_CHECK(repeat_last_n >= 0 && repeat_last_n <= (1 << 20), "repeat-last-n %d: must be in 0..1048576 (0 = off)",
             repeat_last_n);
}

// ---- RNG ----------------------------------------------------------------------------------------
static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void Rng::reseed(uint64_t seed) {
    for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next_u64() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
}

double Rng::next_double() { return double(next_u64() >> 11) * 0x1.0p-53; }

// ---- sampler ------------------------------------------------------------------------------------
Sampler::Sampler(const SamplerParams& p, int64_t n_vocab) : p_(p), n_vocab_(n_vocab), rng_(p.seed) {
    p.validate();
    LB_CHECK(n_vocab >= 1 && n_vocab <= (int64_t(1) << 31) - 1, "sampler: vocabulary size %lld must be >= 1",
             (long long)n_vocab);
    work_.resize(size_t(n_vocab));
    cands_.resize(size_t(n_vocab));
    probs_.resize(size_t(n_vocab));
    history_.resize(size_t(p.repeat_last_n));
    stamp_.assign(size_t(n_vocab), 0);
}

void Sampler::accept(int32_t token) {
    if (history_.empty()) return;
    history_[hist_next_] = token;
    hist_next_ = (hist_next_ + 1) % history_.size();
    hist_len_ = std::min(hist_len_ + 1, history_.size());
}

void Sampler::reset() { hist_len_ = hist_next_ = 0; }

void Sampler::apply_penalty(const float* logits) {
    std::copy(logits, logits + n_vocab_, work_.begin());
    if (p_.repeat_penalty == 1.0f || hist_len_ == 0) return;
    if (++call_ == 0) {  // wrapped: old stamps could collide
        std::fill(stamp_.begin(), stamp_.end(), 0u);
        call_ = 1;
    }
    for (size_t i = 0; i < hist_len_; ++i) {
        const int32_t t = history_[i];
        if (t < 0 || t >= n_vocab_ || stamp_[size_t(t)] == call_) continue;  // each distinct token once
        stamp_[size_t(t)] = call_;
        float& l = work_[size_t(t)];
        l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
}

void Sampler::filter() {
    const size_t V = size_t(n_vocab_);
    for (size_t i = 0; i < V; ++i) cands_[i] = {int32_t(i), work_[i]};
    n_ = V;
    auto before = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
    bool sorted = false;
    if (p_.top_k > 0 && size_t(p_.top_k) < n_) {
        std::partial_sort(cands_.begin(), cands_.begin() + p_.top_k, cands_.begin() + ptrdiff_t(n_), before);
        n_ = size_t(p_.top_k);
        sorted = true;
    } else if (p_.top_p < 1.0f) {
        std::sort(cands_.begin(), cands_.begin() + ptrdiff_t(n_), before);
        sorted = true;
    }
    if (p_.top_p < 1.0f && n_ > 1) {
        // softmax at T = 1 over the sorted survivors; keep the shortest prefix reaching top_p
        const double mx = cands_[0].logit;
        double sum = 0;
        for (size_t i = 0; i < n_; ++i) sum += probs_[i] = std::exp(double(cands_[i].logit) - mx);
        double cum = 0;
        size_t keep = n_;
        for (size_t i = 0; i < n_; ++i) {
            cum += probs_[i] / sum;
            if (cum >= double(p_.top_p)) {
                keep = i + 1;
                break;
            }
        }
        n_ = keep;
    }
    if (p_.min_p > 0.0f && n_ > 1) {
        // p_i / p_max = exp(l_i - l_max) >= min_p, kept in order
        float mx = cands_[0].logit;
        if (!sorted)
            for (size_t i = 1; i < n_; ++i) mx = std::max(mx, cands_[i].logit);
        const double floor_log = std::log(double(p_.min_p));
        size_t w = 0;
        for (size_t i = 0; i < n_; ++i)
            if (double(cands_[i].logit) - double(mx) >= floor_log) cands_[w++] = cands_[i];
        n_ = w;  // the max itself always survives (0 >= log(min_p))
    }
}

int32_t Sampler::sample(const float* logits) {
    apply_penalty(logits);
    if (p_.temperature == 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < size_t(n_vocab_); ++i)
            if (work_[i] > work_[best]) best = i;
        return int32_t(best);
    }
    filter();
    float mx = cands_[0].logit;
    for (size_t i = 1; i < n_; ++i) mx = std::max(mx, cands_[i].logit);
    const double inv_t = 1.0 / double(p_.temperature);
    double sum = 0;
    for (size_t i = 0; i < n_; ++i) sum += probs_[i] = std::exp((double(cands_[i].logit) - double(mx)) * inv_t);
    const double u = rng_.next_double() * sum;
    double cum = 0;
    for (size_t i = 0; i < n_; ++i) {
        cum += probs_[i];
        if (u < cum) return cands_[i].id;
    }
    // rounding: the last candidate with a non-zero probability
    for (size_t i = n_; i-- > 0;)
        if (probs_[i] > 0) return cands_[i].id;
    return cands_[0].id;
}

}  // namespace lb
