// test_tokenizer.cpp: the tokenizers (models/tokenizer.h) against real vocabularies in
// ../../shared/data (README sections 1-4): llama.cpp's 46 conformance vectors for the LLaMA
// SentencePiece vocab, GPT-2 and Llama 3 (tiktoken ranks); the same ids from the LLaMA-2
// SentencePiece .model as from the GGUF; stories260K's documented encoding; exact decode round
// trips on the vectors, random UTF-8 and random bytes; key/value round trip; malformed input.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/lbf.h"
#include "models/tokenizer.h"
#include "test_data.h"

using namespace lb;
using Ids = std::vector<int32_t>;

namespace {

const std::string kVocab = "../../shared/data/llama.cpp-vocab/";

using Vector = lb_test::VocabVector;
using lb_test::read_all;

std::vector<Vector> load_vectors(const std::string& base) { return lb_test::load_vocab_vectors(kVocab + base); }

void check_vectors(const Tokenizer& t, const std::string& base) {
    for (const Vector& v : load_vectors(base)) {
        CAPTURE(v.text);
        CHECK(t.encode(v.text, false) == v.ids);
        CHECK(t.decode(v.ids) == v.text);
        CHECK(t.decode(t.encode(v.text, true)) == v.text);
    }
}

// Random valid UTF-8 mixing ASCII (many spaces and newlines), Latin, Cyrillic, CJK and emoji.
std::string random_utf8(std::mt19937& rng, size_t n_chars) {
    static const uint32_t pools[][2] = {{0x20, 0x7E},   {0x20, 0x20},     {0x0A, 0x0D},       {0xC0, 0x24F},
                                        {0x400, 0x4FF}, {0x4E00, 0x4FFF}, {0x1F300, 0x1F64F}, {0x30, 0x39}};
    std::string s;
    for (size_t i = 0; i < n_chars; i++) {
        const auto& p = pools[rng() % 8];
        const uint32_t cp = p[0] + rng() % (p[1] - p[0] + 1);
        if (cp < 0x80)
            s += char(cp);
        else if (cp < 0x800)
            s += {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
        else if (cp < 0x10000)
            s += {char(0xE0 | (cp >> 12)), char(0x80 | ((cp >> 6) & 0x3F)), char(0x80 | (cp & 0x3F))};
        else
            s += {char(0xF0 | (cp >> 18)), char(0x80 | ((cp >> 12) & 0x3F)), char(0x80 | ((cp >> 6) & 0x3F)),
                  char(0x80 | (cp & 0x3F))};
    }
    return s;
}

void check_random_round_trips(const Tokenizer& t) {
    std::mt19937 rng(1234);
    for (int i = 0; i < 200; i++) {
        const std::string s = random_utf8(rng, rng() % 64);
        CAPTURE(s);
        CHECK(t.decode(t.encode(s, false)) == s);
    }
    for (int i = 0; i < 200; i++) {  // arbitrary bytes: invalid UTF-8 goes through byte tokens
        std::string s(rng() % 48, '\0');
        for (char& c : s) c = char(rng());
        const Ids ids = t.encode(s, false);
        for (int32_t id : ids) REQUIRE((id >= 0 && size_t(id) < t.n_tokens()));
        CHECK(t.decode(ids) == s);
    }
}

const Tokenizer& llama_spm() {
    static const Tokenizer t = Tokenizer::load_gguf(kVocab + "ggml-vocab-llama-spm.gguf");
    return t;
}
const Tokenizer& gpt2() {
    static const Tokenizer t = Tokenizer::load_gguf(kVocab + "ggml-vocab-gpt-2.gguf");
    return t;
}
const Tokenizer& llama3() {
    static const Tokenizer t = Tokenizer::load_llama3("../../shared/data/llama3-tokenizer/tokenizer.model");
    return t;
}

}  // namespace

TEST_CASE("tokenizer: llama-spm conformance vectors (GGUF vocab)") {
    const Tokenizer& t = llama_spm();
    CHECK(t.n_tokens() == 32000);
    CHECK(t.bos() == 1);
    CHECK(t.eos() == 2);
    CHECK(t.data().add_bos);
    check_vectors(t, "ggml-vocab-llama-spm.gguf");
    CHECK(t.encode("Hello", true) == Ids{1, 15043});
}

TEST_CASE("tokenizer: gpt-2 conformance vectors (GGUF vocab with merges)") {
    const Tokenizer& t = gpt2();
    CHECK(t.n_tokens() == 50257);
    CHECK(t.data().merges.size() == 50000);
    check_vectors(t, "ggml-vocab-gpt-2.gguf");
}

TEST_CASE("tokenizer: llama-bpe conformance vectors (Llama 3 tiktoken ranks)") {
    const Tokenizer& t = llama3();
    CHECK(t.n_tokens() == 128256);
    CHECK(t.bos() == 128000);
    CHECK(t.find("<|eot_id|>") == 128009);
    CHECK(t.type(128009) == TokenType::control);
    check_vectors(t, "ggml-vocab-llama-bpe.gguf");
}

TEST_CASE("tokenizer: the LLaMA-2 SentencePiece .model equals the GGUF vocab") {
    const Tokenizer sp = Tokenizer::load_sentencepiece("../../shared/data/llama2-tokenizer/tokenizer.model");
    const Tokenizer& gg = llama_spm();
    CHECK(sp.data().tokens == gg.data().tokens);
    CHECK(sp.data().scores == gg.data().scores);
    CHECK(sp.data().types == gg.data().types);
    CHECK(sp.bos() == 1);
    CHECK(sp.eos() == 2);
    CHECK(sp.data().unk == 0);
    CHECK(sp.data().add_dummy_prefix);
    CHECK_FALSE(sp.data().remove_extra_whitespaces);
    for (const Vector& v : load_vectors("ggml-vocab-llama-spm.gguf")) {
        CAPTURE(v.text);
        CHECK(sp.encode(v.text, false) == v.ids);
    }
}

TEST_CASE("tokenizer: stories260K tok512.model") {
    const Tokenizer t = Tokenizer::load_sentencepiece("../../shared/data/stories260K/tok512.model");
    CHECK(t.n_tokens() == 512);
    CHECK(t.encode("Once upon a time", true) == Ids{1, 403, 407, 261, 378});
    const Ids greedy = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                        401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385,
                        328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267,
                        337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
    Ids with_bos = {1};
    with_bos.insert(with_bos.end(), greedy.begin(), greedy.end());
    CHECK(t.decode(with_bos) ==
          "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
          "saw a "
          "big, red ball. She wanted to play with it, but it was too high.\nLily");
    CHECK(t.token_to_piece(403) == " Once");
    CHECK(t.token_to_piece(13) == "\n");
}

TEST_CASE("tokenizer: random text round-trips exactly, invalid UTF-8 included") {
    SUBCASE("llama-spm") { check_random_round_trips(llama_spm()); }
    SUBCASE("gpt-2") { check_random_round_trips(gpt2()); }
    SUBCASE("llama3") { check_random_round_trips(llama3()); }
}

TEST_CASE("tokenizer: decode rejects out-of-range ids") {
    for (const Tokenizer* t : {&llama_spm(), &gpt2(), &llama3()}) {
        CHECK_THROWS_AS(t->decode({1, int32_t(t->n_tokens())}), Error);
        CHECK_THROWS_AS(t->decode({-1}), Error);
        CHECK_THROWS_AS(t->token_to_piece(int32_t(t->n_tokens()) + 5), Error);
    }
}

TEST_CASE("tokenizer: special tokens") {
    const Tokenizer& t = llama3();
    const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>";
    const Ids ids = t.encode(chat, true, true);
    REQUIRE(ids.size() >= 5);
    CHECK(ids[0] == 128000);
    CHECK(ids[1] == 128006);
    CHECK(ids.back() == 128009);
    CHECK(t.decode(ids) == "user\n\nHi!");  // control tokens decode to nothing
    const Ids plain = t.encode(chat, false);
    for (int32_t id : plain) CHECK(id < 128000);  // without parse_special the text is just text
    CHECK(t.decode(plain) == chat);
    CHECK(t.token_to_piece(128009).empty());
}

TEST_CASE("tokenizer: key/value form round-trips") {
    std::mt19937 rng(7);
    for (const Tokenizer* t : {&llama_spm(), &gpt2(), &llama3()}) {
        const Tokenizer back = Tokenizer::from_data(t->data());
        CHECK(back.data().tokens == t->data().tokens);
        for (int i = 0; i < 20; i++) {
            const std::string s = random_utf8(rng, 40);
            CHECK(back.encode(s, true) == t->encode(s, true));
        }
    }
}

TEST_CASE("tokenizer: pre-tokenizer splits") {
    auto split = [](const std::string& s, const std::string& kind) {
        std::vector<std::pair<uint32_t, uint32_t>> spans;
        pretokenize(s, kind, spans);
        std::vector<std::string> out;
        for (auto [a, n] : spans) out.push_back(s.substr(a, n));
        return out;
    };
    using V = std::vector<std::string>;
    CHECK(split("Hello world  it's 12345!!\n\n x", "gpt2") ==
          V{"Hello", " world", " ", " it", "'s", " 12345", "!!", "\n\n", " x"});
    CHECK(split("Hello world  IT'S 12345!!\n\n x", "llama3") ==
          V{"Hello", " world", " ", " IT", "'S", " ", "123", "45", "!!\n\n", " x"});
    CHECK(split("a \n\n  b", "llama3") == V{"a", " \n\n", " ", " b"});
    CHECK(split("a 12x3 ", "smollm") == V{"a", " ", "1", "2", "x", "3", " "});
    CHECK(split("", "gpt2").empty());
    CHECK_THROWS_AS(split("x", "bert"), Error);
}

TEST_CASE("tokenizer: malformed data and files") {
    TokenizerData d;
    d.kind = "wordpiece";
    d.tokens = {"a"};
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(d), doctest::Contains("kind"), Error);
    d.kind = "spm";
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(d), doctest::Contains("scores"), Error);
    d.scores = {0.f};
    d.types = {1, 1};
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(d), doctest::Contains("types"), Error);
    d.types = {9};
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(d), doctest::Contains("types[0]"), Error);
    d.types = {1};
    d.bos = 5;
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(d), doctest::Contains("bos"), Error);

    TokenizerData g = gpt2().data();
    g.merges.push_back("\xC4\xA0 zzzzzz");
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(g), doctest::Contains("merges[50000]"), Error);
    g.merges.pop_back();
    g.pretokenizer = "bert";
    CHECK_THROWS_WITH_AS(Tokenizer::from_data(g), doctest::Contains("pretokenizer"), Error);

    const std::string model = read_all("../../shared/data/stories260K/tok512.model");
    for (size_t n = 1; n < model.size(); n += 7) {
        // a cut either fails cleanly or (at a field boundary) gives a smaller valid vocabulary
        try {
            Tokenizer::from_sentencepiece(model.substr(0, n), "cut");
        } catch (const Error&) {
        }
    }
    CHECK_THROWS_AS(Tokenizer::from_sentencepiece(model.substr(0, 100), "cut"), Error);
    std::mt19937 rng(3);
    for (int iter = 0; iter < 300; iter++) {  // corrupted protobuf: a clean error or a usable tokenizer
        std::string b = model;
        for (int k = 0; k < 3; k++) b[rng() % b.size()] = char(rng());
        try {
            const Tokenizer t = Tokenizer::from_sentencepiece(b, "corrupt");
            const std::string s = "Once upon a time \xff\xfe there was";
            t.decode(t.encode(s, true));
        } catch (const Error&) {
        }
    }
    CHECK_THROWS_AS(Tokenizer::from_tiktoken("IQ== 0\nnot base64! 1\n", "t", "llama3", {}), Error);
    CHECK_THROWS_AS(Tokenizer::from_tiktoken("IQ== 0\nIg== 2\n", "t", "llama3", {}), Error);
    CHECK_THROWS_AS(Tokenizer::from_tiktoken("IQ== 99999999999\n", "t", "llama3", {}), Error);
}

TEST_CASE("a tokenizer stored as .lbf metadata comes back identical") {
    const Tokenizer t = Tokenizer::load_sentencepiece("../../shared/data/stories260K/tok512.model");
    Metadata md;
    for (auto& [k, v] : tokenizer_metadata(t.data())) md.set(k, v);
    const Tokenizer back = Tokenizer::from_data(tokenizer_data_from_metadata(md));
    const std::string text = "Once upon a time, there was a little girl named Lily.";
    CHECK(back.encode(text, true) == t.encode(text, true));
    CHECK(back.data().tokens == t.data().tokens);
    Metadata none;
    CHECK_THROWS_WITH_AS(tokenizer_data_from_metadata(none), doctest::Contains("tokenizer.kind"), Error);
}
