// tokenizer_load.cpp: building a Tokenizer from the files vocabularies come in: GGUF metadata
// (tokenizer.ggml.*), a SentencePiece ModelProto (read by a minimal protobuf decoder, only the
// fields we need), and a tiktoken rank file ("base64 rank" lines) such as Meta's Llama 3 tokenizer.
// Every loader fills a TokenizerData and hands it to Tokenizer::from_data, which validates it.
#include <cerrno>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "models/tokenizer.h"

namespace lb {

namespace {

Tokenizer build(TokenizerData d, const std::string& origin) {
    try {
        return Tokenizer::from_data(std::move(d));
    } catch (const Error& e) {
        throw Error(origin + ": " + e.what());
    }
}

int32_t id_from(const GgufFile& f, const char* key) {
    const int64_t v = f.get_int(key, -1);
    LB_CHECK(v >= -1 && v <= std::numeric_limits<int32_t>::max(), "%s: %s: %lld is not a token id", f.origin().c_str(),
             key, (long long)v);
    return int32_t(v);
}

// ---- protobuf wire format: varints, fixed 32/64-bit, length-delimited; little-endian ----
class Proto {
 public:
    Proto(const uint8_t* p, size_t n, const std::string& what) : p_(p), n_(n), what_(what) {}
    bool done() const { return i_ >= n_; }
    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            LB_CHECK(i_ < n_, "%s: truncated varint at byte %zu", what_.c_str(), i_);
            const uint8_t b = p_[i_++];
            v |= uint64_t(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
        throw Error(what_ + ": varint longer than 10 bytes");
    }
    Proto sub(const std::string& what) {  // a length-delimited field's bytes
        const uint64_t len = varint();
        LB_CHECK(len <= n_ - i_, "%s: field of %llu bytes runs past the end (%zu left)", what.c_str(),
                 (unsigned long long)len, n_ - i_);
        Proto s(p_ + i_, size_t(len), what);
        i_ += size_t(len);
        return s;
    }
    float fixed32() {
        LB_CHECK(n_ - i_ >= 4, "%s: truncated 32-bit field", what_.c_str());
        float v;
        std::memcpy(&v, p_ + i_, 4);
        i_ += 4;
        return v;
    }
    void skip(uint32_t wire) {
        switch (wire) {
            case 0:
                varint();
                break;
            case 1:
                LB_CHECK(n_ - i_ >= 8, "%s: truncated 64-bit field", what_.c_str());
                i_ += 8;
                break;
            case 2:
                sub(what_);
                break;
            case 5:
                fixed32();
                break;
            default:
                throw Error(what_ + ": unsupported protobuf wire type " + std::to_string(wire));
        }
    }
    std::string bytes() const { return std::string(reinterpret_cast<const char*>(p_), n_); }

 private:
    const uint8_t* p_;
    size_t n_, i_ = 0;
    const std::string& what_;
};

bool base64_decode(std::string_view s, std::string& out) {
    out.clear();
    uint32_t acc = 0;
    int bits = 0;
    size_t pad = 0;
    for (char ch : s) {
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else if (ch == '=') {
            pad++;
            continue;
        } else
            return false;
        if (pad) return false;  // data after padding
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += char((acc >> bits) & 0xFF);
        }
    }
    return (s.size() % 4 == 0) && pad <= 2;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
    const Metadata& md = f.metadata();
    TokenizerData d;
    const std::string& model = md.get_string("tokenizer.ggml.model");
    if (model == "llama") {
        d.kind = "spm";
    } else if (model == "gpt2") {
        d.kind = "bpe";
        const std::string pre = md.contains("tokenizer.ggml.pre") ? md.get_string("tokenizer.ggml.pre") : "default";
        if (pre == "default" || pre == "gpt-2")
            d.pretokenizer = "gpt2";
        else if (pre == "llama-bpe" || pre == "llama3")
            d.pretokenizer = "llama3";
        else if (pre == "smollm")
            d.pretokenizer = "smollm";
        else
            throw Error(f.origin() + ": tokenizer.ggml.pre '" + pre +
                        "' is not supported (gpt-2, default, llama-bpe, llama3, smollm)");
    } else {
        throw Error(f.origin() + ": tokenizer.ggml.model '" + model + "' is not supported (llama, gpt2)");
    }
    d.tokens = md.get_array<std::string>("tokenizer.ggml.tokens");
    if (md.contains("tokenizer.ggml.scores")) d.scores = md.get_array<float>("tokenizer.ggml.scores");
    if (md.contains("tokenizer.ggml.token_type")) d.types = md.get_array<int32_t>("tokenizer.ggml.token_type");
    if (md.contains("tokenizer.ggml.merges")) d.merges = md.get_array<std::string>("tokenizer.ggml.merges");
    d.bos = id_from(f, "tokenizer.ggml.bos_token_id");
    d.eos = id_from(f, "tokenizer.ggml.eos_token_id");
    d.unk = id_from(f, "tokenizer.ggml.unknown_token_id");
    d.add_bos =
        md.contains("tokenizer.ggml.add_bos_token") ? md.get_bool("tokenizer.ggml.add_bos_token") : d.kind == "spm";
    if (md.contains("tokenizer.ggml.add_space_prefix"))
        d.add_dummy_prefix = md.get_bool("tokenizer.ggml.add_space_prefix");
    return build(std::move(d), f.origin());
}

Tokenizer Tokenizer::load_gguf(const std::string& path) { return from_gguf(*GgufFile::open(path)); }

Tokenizer Tokenizer::load_sentencepiece(const std::string& path) {
    return from_sentencepiece(read_text_file(path), path);
}

Tokenizer Tokenizer::from_sentencepiece(const std::string& bytes, const std::string& origin) {
    TokenizerData d;
    d.kind = "spm";
    d.add_bos = true;
    d.remove_extra_whitespaces = true;  // the NormalizerSpec defaults
    const std::string what = origin + ": ModelProto";
    Proto pb(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), what);
    while (!pb.done()) {
        const uint64_t key = pb.varint();
        const uint64_t field = key >> 3;
        const uint32_t wire = uint32_t(key & 7);
        if (wire != 2 || field < 1 || field > 3) {
            pb.skip(wire);
            continue;
        }
        const std::string sub_what = what + (field == 1   ? ".pieces[" + std::to_string(d.tokens.size()) + "]"
                                             : field == 2 ? ".trainer_spec"
                                                          : ".normalizer_spec");
        Proto m = pb.sub(sub_what);
        if (field == 1) {  // SentencePiece { 1 piece, 2 score, 3 type }
            std::string piece;
            float score = 0;
            int32_t type = 1;
            while (!m.done()) {
                const uint64_t k = m.varint();
                if (k == (1 << 3 | 2))
                    piece = m.sub(sub_what + ".piece").bytes();
                else if (k == (2 << 3 | 5))
                    score = m.fixed32();
                else if (k == (3 << 3 | 0))
                    type = int32_t(m.varint());
                else
                    m.skip(uint32_t(k & 7));
            }
            LB_CHECK(type >= 1 && type <= 6, "%s.type: %d, expected 1..6", sub_what.c_str(), type);
            d.tokens.push_back(std::move(piece));
            d.scores.push_back(score);
            d.types.push_back(type);
        } else {
            while (!m.done()) {
                const uint64_t k = m.varint();
                if (field == 2 && k == (3 << 3 | 0)) {  // TrainerSpec.model_type: 1 unigram, 2 bpe
                    const uint64_t t = m.varint();
                    LB_CHECK(t == 2, "%s.model_type: %llu, only BPE (2) models are supported", sub_what.c_str(),
                             (unsigned long long)t);
                } else if (field == 3 && k == (3 << 3 | 0)) {
                    d.add_dummy_prefix = m.varint() != 0;
                } else if (field == 3 && k == (4 << 3 | 0)) {
                    d.remove_extra_whitespaces = m.varint() != 0;
                } else {
                    m.skip(uint32_t(k & 7));
                }
            }
        }
    }
    LB_CHECK(!d.tokens.empty(), "%s: no pieces", what.c_str());
    for (size_t i = 0; i < d.tokens.size(); i++) {
        const TokenType t = TokenType(d.types[i]);
        if (t == TokenType::unknown && d.unk < 0) d.unk = int32_t(i);
        if (t == TokenType::control && d.tokens[i] == "<s>") d.bos = int32_t(i);
        if (t == TokenType::control && d.tokens[i] == "</s>") d.eos = int32_t(i);
    }
    return build(std::move(d), origin);
}

static TokenizerData tiktoken_data(const std::string& bytes, const std::string& origin, const std::string& pretokenizer,
                                   const std::vector<std::string>& specials) {
    TokenizerData d;
    d.kind = "bpe";
    d.pretokenizer = pretokenizer;
    std::vector<std::string> raw;
    std::vector<bool> seen;
    size_t line_no = 0, n_lines = 0;
    std::string tok;
    for (size_t pos = 0; pos < bytes.size();) {
        size_t end = bytes.find('\n', pos);
        if (end == std::string::npos) end = bytes.size();
        const std::string_view line = std::string_view(bytes).substr(pos, end - pos);
        pos = end + 1;
        line_no++;
        if (line.empty()) continue;
        const size_t sp = line.find(' ');
        LB_CHECK(sp != std::string::npos && base64_decode(line.substr(0, sp), tok) && !tok.empty(),
                 "%s: line %zu: expected '<base64> <rank>'", origin.c_str(), line_no);
        uint64_t rank = 0;
        const std::string_view r = line.substr(sp + 1);
        LB_CHECK(!r.empty() && r.size() <= 9, "%s: line %zu: bad rank", origin.c_str(), line_no);
        for (char c : r) {
            LB_CHECK(c >= '0' && c <= '9', "%s: line %zu: rank '%.*s' is not a number", origin.c_str(), line_no,
                     int(r.size()), r.data());
            rank = rank * 10 + uint64_t(c - '0');
        }
        LB_CHECK(rank < bytes.size(), "%s: line %zu: rank %llu is larger than the file could hold", origin.c_str(),
                 line_no, (unsigned long long)rank);
        if (rank >= raw.size()) {
            raw.resize(size_t(rank) + 1);
            seen.resize(size_t(rank) + 1);
        }
        LB_CHECK(!seen[size_t(rank)], "%s: line %zu: rank %llu appears twice", origin.c_str(), line_no,
                 (unsigned long long)rank);
        seen[size_t(rank)] = true;
        raw[size_t(rank)] = tok;
        n_lines++;
    }
    LB_CHECK(n_lines == raw.size() && n_lines > 0, "%s: ranks are not 0..%zu without gaps", origin.c_str(), n_lines);
    d.tokens.reserve(raw.size() + specials.size());
    for (const std::string& b : raw) {
        std::string u;
        for (char c : b) u += byte_to_unicode(uint8_t(c));
        d.tokens.push_back(std::move(u));
    }
    d.types.assign(raw.size(), int32_t(TokenType::normal));
    for (const std::string& s : specials) {
        d.tokens.push_back(s);
        d.types.push_back(int32_t(TokenType::control));
    }
    return d;
}

Tokenizer Tokenizer::from_tiktoken(const std::string& bytes, const std::string& origin, const std::string& pretokenizer,
                                   const std::vector<std::string>& specials) {
    return build(tiktoken_data(bytes, origin, pretokenizer, specials), origin);
}

Tokenizer Tokenizer::load_llama3(const std::string& path) {
    std::vector<std::string> sp = {"<|begin_of_text|>", "<|end_of_text|>"};  // ids 128000, 128001
    for (int i = 0; i < 4; i++) sp.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
    sp.push_back("<|start_header_id|>");
    sp.push_back("<|end_header_id|>");
    sp.push_back("<|reserved_special_token_4|>");
    sp.push_back("<|eot_id|>");  // 128009
    for (int i = 5; i <= 250; i++) sp.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
    TokenizerData d = tiktoken_data(read_text_file(path), path, "llama3", sp);
    LB_CHECK(d.tokens.size() == 128256, "%s: %zu ranks, the Llama 3 tokenizer has 128000", path.c_str(),
             d.tokens.size() - sp.size());
    d.bos = 128000;
    d.eos = 128001;
    d.add_bos = true;
    return build(std::move(d), path);
}

}  // namespace lb
