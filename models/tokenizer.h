// tokenizer.h: text <-> token ids for the LLaMA family. Two kinds:
//   "spm"  SentencePiece BPE (LLaMA-1/2, TinyLlama, llama2.c): pieces with "▁" for spaces, a dummy
//          prefix space, merges of the adjacent pair whose result has the highest score (leftmost
//          on ties), byte fallback to <0xXX> pieces for characters not in the vocabulary.
//   "bpe"  byte-level BPE (GPT-2, Llama 3, SmolLM2): a pre-tokenizer regex splits the text into
//          words, each word's bytes are merged by priority, either from a merge list ("left right"
//          lines, earlier = first) or, without one, by the lowest id of the merged token (tiktoken
//          ranks, where rank = id).
// Loaders: GGUF vocab (tokenizer.ggml.*), SentencePiece .model (protobuf), tiktoken rank files.
// TokenizerData is the plain key/value form (for .lbf metadata); from_data/data() round-trip it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lb {

class GgufFile;

// Token types as numbered by SentencePiece and GGUF (tokenizer.ggml.token_type).
enum class TokenType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct TokenizerData {
    std::string kind;          // "spm" or "bpe"
    std::string pretokenizer;  // bpe: "gpt2", "llama3" or "smollm"; empty for spm
    // spm: pieces as SentencePiece writes them ("▁the", "<0x0A>"); bpe: the token bytes in GPT-2's
    // byte-to-unicode alphabet ("Ġthe"), so that every token is a valid UTF-8 string
    std::vector<std::string> tokens;
    std::vector<float> scores;              // spm: merge score per token; may be empty for bpe
    std::vector<int32_t> types;             // TokenType per token (empty = all normal)
    std::vector<std::string> merges;        // bpe: "left right" in priority order; empty = rank by id
    int32_t bos = -1, eos = -1, unk = -1;   // -1 = none
    bool add_bos = false;                   // what encode() does when asked for the default
    bool add_dummy_prefix = true;           // spm: prepend one space to non-empty text
    bool remove_extra_whitespaces = false;  // spm: strip and collapse runs of ' ' first
};

class Tokenizer {
 public:
    // Validates everything (sizes, ids in range, merges naming tokens) and builds the lookups.
    static Tokenizer from_data(TokenizerData d);
    // GGUF vocab: tokenizer.ggml.model "llama" (spm) or "gpt2" (bpe, pre "gpt-2"/"default",
    // "llama-bpe"/"llama3" or "smollm"), tokens, scores, token_type, merges, bos/eos/unk ids, add_bos_token.
    static Tokenizer from_gguf(const GgufFile& f);
    static Tokenizer load_gguf(const std::string& path);
    // SentencePiece ModelProto (BPE models only), from a file or from its bytes.
    static Tokenizer load_sentencepiece(const std::string& path);
    static Tokenizer from_sentencepiece(const std::string& bytes, const std::string& origin);
    // tiktoken rank file ("base64 rank" lines, rank = id) plus special tokens appended at ids
    // n_ranks.., all of type control.
    static Tokenizer from_tiktoken(const std::string& bytes, const std::string& origin, const std::string& pretokenizer,
                                   const std::vector<std::string>& specials);
    // The Meta Llama 3 tokenizer.model: tiktoken ranks + its 256 special tokens + the Llama 3
    // regex; bos = <|begin_of_text|> (added by default), eos = <|end_of_text|>.
    static Tokenizer load_llama3(const std::string& path);

    const TokenizerData& data() const;  // the key/value form this tokenizer was built from
    size_t n_tokens() const;
    int32_t bos() const;
    int32_t eos() const;
    TokenType type(int32_t id) const;
    int32_t find(std::string_view token) const;  // id of a token as written in data().tokens, or -1

    // Text (any bytes; invalid UTF-8 is carried through byte tokens) to ids. A byte-level
    // vocabulary without a token for some byte (SmolLM2 lacks a few control bytes) drops it. With parse_special,
    // the text of control/user-defined tokens (e.g. "<|eot_id|>") is mapped to those tokens.
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const;
    std::vector<int32_t> encode(std::string_view text) const { return encode(text, data().add_bos); }
    // Ids to the exact bytes; control tokens give nothing; an spm dummy-prefix space at the start
    // is removed. Throws lb::Error for an id outside [0, n_tokens).
    std::string decode(const std::vector<int32_t>& ids) const;
    // The bytes of one token for streaming output (spaces as ' ', byte tokens as the raw byte,
    // control tokens empty, no dummy-prefix removal).
    const std::string& token_to_piece(int32_t id) const;

    struct Impl;

 private:
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;  // immutable, so copies share it
};

// Splits text into pre-tokenizer words (byte spans [first, first + second)) with the regex
// named `kind` ("gpt2", "llama3" or "smollm"), implemented by hand. Exposed for tests.
void pretokenize(std::string_view text, const std::string& kind, std::vector<std::pair<uint32_t, uint32_t>>& spans);

// GPT-2's byte-to-unicode alphabet: the UTF-8 text standing for one raw byte, and back.
std::string byte_to_unicode(uint8_t b);
// Decodes a token in the byte-to-unicode alphabet; false if it has a character outside it.
bool unicode_to_bytes(std::string_view s, std::string& out);

// The tokenizer as .lbf metadata (keys "tokenizer.*", listed in models/tokenizer_lbf.cpp).
class MetaValue;
class Metadata;
std::vector<std::pair<std::string, MetaValue>> tokenizer_metadata(const TokenizerData& d);
TokenizerData tokenizer_data_from_metadata(const Metadata& md);  // throws if a key is missing or mistyped

}  // namespace lb
