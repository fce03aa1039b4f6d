// test_sampler.cpp: the sampling chain (models/sampler.h) on hand-made logits: greedy, top-k,
// top-p, min-p, temperature, repetition penalty, seeded determinism, and rejected parameters.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <set>
#include <vector>

#include "core/error.h"
#include "models/sampler.h"

#include "alloc_counter.h"  // the sampler must not allocate per token

using namespace lb;

static SamplerParams plain() {  // every filter off, T = 1
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 1;
    return p;
}

// logits whose softmax is exactly `probs`
static std::vector<float> logits_of(const std::vector<double>& probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back(float(std::log(p)));
    return l;
}

static std::set<int32_t> survivors(Sampler& s, const std::vector<float>& logits) {
    s.apply_penalty(logits.data());
    s.filter();
    std::set<int32_t> ids;
    for (size_t i = 0; i < s.n_cands(); ++i) ids.insert(s.cands()[i].id);
    return ids;
}

TEST_CASE("rng: xoshiro256** from splitmix64 is fixed across platforms") {
    Rng a(42), b(42), c(43);
    const uint64_t x = a.next_u64();
    CHECK(x == b.next_u64());
    CHECK(x != c.next_u64());
    // seed 0: splitmix64 gives the state e220a8397b1dcdaf 6e789e6aa1b965f4 06c45d188009454f
    // f88bb8a8724c81ec; xoshiro256** outputs rotl(s1 * 5, 7) * 9 (checked with Python integers)
    Rng z(0);
    CHECK(z.next_u64() == 0x99ec5f36cb75f2b4ull);
    CHECK(z.next_u64() == 0xbf6e1f784956452aull);
    for (int i = 0; i < 1000; ++i) {
        const double d = a.next_double();
        CHECK(d >= 0.0);
        CHECK(d < 1.0);
    }
}

TEST_CASE("greedy (temperature 0) is the argmax, lowest id on ties") {
    SamplerParams p = plain();
    p.temperature = 0.0f;
    Sampler s(p, 6);
    const std::vector<float> l = {0.1f, 2.0f, -1.0f, 3.5f, 3.5f, 0.0f};
    CHECK(s.sample(l.data()) == 3);
    const std::vector<float> l2 = {-5.f, -4.f, -3.f, -2.f, -1.f, -0.5f};
    CHECK(s.sample(l2.data()) == 5);
}

TEST_CASE("top-k 1 is greedy, whatever the seed") {
    const std::vector<float> l = {0.1f, 2.0f, -1.0f, 3.5f, 1.0f, 0.0f};
    for (uint64_t seed = 0; seed < 50; ++seed) {
        SamplerParams p = plain();
        p.top_k = 1;
        p.seed = seed;
        Sampler s(p, 6);
        CHECK(s.sample(l.data()) == 3);
    }
}

TEST_CASE("temperature -> 0 behaves greedy") {
    const std::vector<float> l = {0.1f, 2.0f, -1.0f, 3.5f, 3.4f, 0.0f};
    for (uint64_t seed = 0; seed < 50; ++seed) {
        SamplerParams p = plain();
        p.temperature = 1e-4f;
        p.seed = seed;
        Sampler s(p, 6);
        CHECK(s.sample(l.data()) == 3);
    }
}

TEST_CASE("the same seed gives the same sequence; another seed another one") {
    std::vector<float> l(64);
    for (size_t i = 0; i < l.size(); ++i) l[i] = float(std::sin(double(i) * 1.7)) * 2.0f;
    auto run = [&](uint64_t seed) {
        SamplerParams p = plain();
        p.seed = seed;
        p.top_k = 20;
        p.top_p = 0.9f;
        Sampler s(p, int64_t(l.size()));
        std::vector<int32_t> out;
        for (int i = 0; i < 200; ++i) out.push_back(s.sample(l.data()));
        return out;
    };
    const auto a = run(1234), b = run(1234), c = run(999);
    CHECK(a == b);
    CHECK(a != c);
    CHECK(std::set<int32_t>(a.begin(), a.end()).size() > 3);  // it does sample
}

TEST_CASE("sampling frequencies follow the distribution at T = 1") {
    const std::vector<double> probs = {0.5, 0.3, 0.2};
    const auto l = logits_of(probs);
    Sampler s(plain(), 3);
    std::vector<int> count(3, 0);
    const int n = 20000;
    for (int i = 0; i < n; ++i) count[size_t(s.sample(l.data()))]++;
    for (size_t i = 0; i < 3; ++i) CHECK(std::fabs(count[i] / double(n) - probs[i]) < 0.02);
}

TEST_CASE("top-p keeps the shortest prefix reaching p") {
    // sorted: 0.4 (id 2), 0.3 (id 0), 0.2 (id 3), 0.1 (id 1)
    const auto l = logits_of({0.3, 0.1, 0.4, 0.2});
    auto with = [&](float top_p) {
        SamplerParams p = plain();
        p.top_p = top_p;
        Sampler s(p, 4);
        return survivors(s, l);
    };
    CHECK(with(0.35f) == std::set<int32_t>{2});
    CHECK(with(0.5f) == std::set<int32_t>{2, 0});
    CHECK(with(0.69f) == std::set<int32_t>{2, 0});
    CHECK(with(0.75f) == std::set<int32_t>{2, 0, 3});
    CHECK(with(0.95f) == std::set<int32_t>{2, 0, 3, 1});
    CHECK(with(1.0f) == std::set<int32_t>{0, 1, 2, 3});
    // a sampled token is always one of the survivors
    SamplerParams p = plain();
    p.top_p = 0.5f;
    Sampler s(p, 4);
    for (int i = 0; i < 500; ++i) {
        const int32_t t = s.sample(l.data());
        CHECK((t == 2 || t == 0));
    }
}

TEST_CASE("min-p drops tokens below min_p * p_max") {
    // p_max = 0.4: min_p 0.5 -> floor 0.2 keeps 0.4, 0.3, 0.2; min_p 0.6 -> floor 0.24 keeps 0.4, 0.3
    const auto l = logits_of({0.3, 0.1, 0.4, 0.2});
    auto with = [&](float min_p) {
        SamplerParams p = plain();
        p.min_p = min_p;
        Sampler s(p, 4);
        return survivors(s, l);
    };
    CHECK(with(0.49f) == std::set<int32_t>{0, 2, 3});
    CHECK(with(0.6f) == std::set<int32_t>{0, 2});
    CHECK(with(0.8f) == std::set<int32_t>{2});
    CHECK(with(1.0f) == std::set<int32_t>{2});
    CHECK(with(0.2f) == std::set<int32_t>{0, 1, 2, 3});
}

TEST_CASE("top-k keeps the k largest, ties by lower id") {
    const std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f, 0.5f};
    SamplerParams p = plain();
    p.top_k = 2;
    Sampler s(p, 5);
    CHECK(survivors(s, l) == std::set<int32_t>{1, 3});
    p.top_k = 3;
    Sampler s3(p, 5);
    CHECK(survivors(s3, l) == std::set<int32_t>{1, 2, 3});
    p.top_k = 100;  // more than the vocabulary: everything
    Sampler s100(p, 5);
    CHECK(survivors(s100, l).size() == 5);
}

TEST_CASE("repetition penalty: positive logits divided, negative multiplied, each token once, last N only") {
    SamplerParams p = plain();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    Sampler s(p, 5);
    const std::vector<float> l = {4.0f, -1.0f, 0.0f, 6.0f, 2.0f};
    for (int32_t t : {0, 1, 1, 2}) s.accept(t);  // history of 3: {1, 1, 2}; 0 fell out
    s.apply_penalty(l.data());
    const float* w = s.penalized();
    CHECK(w[0] == 4.0f);   // not in the last 3
    CHECK(w[1] == -2.0f);  // negative: multiplied, once although it occurs twice
    CHECK(w[2] == 0.0f);   // zero stays zero
    CHECK(w[3] == 6.0f);
    CHECK(w[4] == 2.0f);
    s.accept(3);  // history {1, 2, 3}
    s.apply_penalty(l.data());
    CHECK(w[3] == 3.0f);
    CHECK(w[1] == -2.0f);  // from the original logits, not compounded
    // greedy with the penalty: 3 (6 -> 3) now loses to 0 (4)
    p.temperature = 0.0f;
    Sampler g(p, 5);
    CHECK(g.sample(l.data()) == 3);
    g.accept(3);
    CHECK(g.sample(l.data()) == 0);
    g.reset();
    CHECK(g.sample(l.data()) == 3);
    // repeat_last_n 0: no penalty
    p.repeat_last_n = 0;
    Sampler off(p, 5);
    off.accept(3);
    CHECK(off.sample(l.data()) == 3);
}

TEST_CASE("absurd parameters are rejected with the field named") {
    auto bad = [](auto set, const char* msg) {
        SamplerParams p;
        set(p);
        CHECK_THROWS_WITH_AS(p.validate(), doctest::Contains(msg), Error);
        CHECK_THROWS_AS(Sampler(p, 10), Error);
    };
    bad([](SamplerParams& p) { p.temperature = -1.0f; }, "temperature -1");
    bad([](SamplerParams& p) { p.temperature = NAN; }, "temperature");
    bad([](SamplerParams& p) { p.top_k = -1; }, "top-k -1");
    bad([](SamplerParams& p) { p.top_p = 2.0f; }, "top-p 2: must be in (0, 1]");
    bad([](SamplerParams& p) { p.top_p = 0.0f; }, "top-p 0");
    bad([](SamplerParams& p) { p.min_p = -0.1f; }, "min-p");
    bad([](SamplerParams& p) { p.min_p = 1.5f; }, "min-p 1.5");
    bad([](SamplerParams& p) { p.repeat_penalty = 0.0f; }, "repeat-penalty 0");
    bad([](SamplerParams& p) { p.repeat_penalty = -1.0f; }, "repeat-penalty -1");
    bad([](SamplerParams& p) { p.repeat_last_n = -5; }, "repeat-last-n -5");
    CHECK_NOTHROW(SamplerParams().validate());
    CHECK_THROWS_WITH_AS(Sampler(SamplerParams(), 0), doctest::Contains("vocabulary size 0"), Error);
}

TEST_CASE("sample() and accept() allocate nothing, every step on") {
    const int64_t V = 5000;
    std::vector<float> l(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) l[size_t(i)] = float(std::sin(double(i) * 0.37) * 4.0);
    for (int32_t k : {0, 50}) {
        SamplerParams p;
        p.temperature = 0.9f;
        p.top_k = k;
        p.top_p = 0.9f;
        p.min_p = 0.02f;
        p.repeat_penalty = 1.3f;
        p.repeat_last_n = 32;
        p.seed = 3;
        Sampler s(p, V);
        const long before = allocations();
        for (int i = 0; i < 200; ++i) s.accept(s.sample(l.data()));
        const long news = allocations() - before;  // read before doctest builds its message
        CHECK_MESSAGE(news == 0, "top-k " << k);
    }
}
