// tokenizer.cpp: the tokenizer core (models/tokenizer.h): validation of TokenizerData, the
// lookups built from it, the shared BPE merge loop (a heap of adjacent pairs over a linked list
// of symbols, O(n log n) per word), SentencePiece and byte-level encoding, and decoding.
// The loaders are in tokenizer_load.cpp, the pre-tokenizer regexes in tokenizer_pretok.cpp.
#include "models/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "models/unicode_tables.h"

namespace lb {

// ---------------------------------------------------------------------------------------------
// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for themselves, the other 68
// bytes take code points 256.. in increasing byte order.

namespace {
struct ByteAlphabet {
    uint32_t cp[256];
    int16_t byte_of[256 + 68];  // code point -> byte, -1 if not in the alphabet
    ByteAlphabet() {
        uint32_t extra = 0;
        for (int b = 0; b < 256; b++) {
            const bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            cp[b] = self ? uint32_t(b) : 256 + extra++;
        }
        std::fill(std::begin(byte_of), std::end(byte_of), int16_t(-1));
        for (int b = 0; b < 256; b++) byte_of[cp[b]] = int16_t(b);
    }
};
const ByteAlphabet& alphabet() {
    static const ByteAlphabet a;
    return a;
}
}  // namespace

std::string byte_to_unicode(uint8_t b) {
    std::string s;
    unicode::utf8_append(s, alphabet().cp[b]);
    return s;
}

bool unicode_to_bytes(std::string_view s, std::string& out) {
    out.clear();
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        i += unicode::utf8_next(p + i, s.size() - i, &cp);
        if (cp >= 256 + 68 || alphabet().byte_of[cp] < 0) return false;
        out += char(alphabet().byte_of[cp]);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Impl: the immutable lookups. string_views point into `text`, which never changes after build.

struct Tokenizer::Impl {
    TokenizerData d;
    bool spm = false;
    bool by_rank = false;                                  // bpe without merges: priority = id of the merged token
    std::vector<std::string> text;                         // spm: the piece; bpe: the raw bytes (specials: as written)
    std::vector<std::string> piece;                        // decoded bytes per token (control: empty)
    std::unordered_map<std::string_view, int32_t> lookup;  // text -> first id with that text
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merge;  // (left, right) -> (rank, result)
    int32_t byte_id[256];           // spm: <0xXX> piece; bpe: one-byte token; -1 if none
    std::vector<int32_t> specials;  // control/user-defined ids, longest text first
    bool special_first[256] = {};   // bytes that start some special token

    TokenType type(int32_t id) const { return d.types.empty() ? TokenType::normal : TokenType(d.types[size_t(id)]); }
    int32_t find_text(std::string_view s) const {
        auto it = lookup.find(s);
        return it == lookup.end() ? -1 : it->second;
    }
    void encode_spm(std::string_view s, bool at_start, std::vector<int32_t>& out) const;
    void encode_bpe(std::string_view s, std::vector<int32_t>& out) const;
};

static const char kSpace[] = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space

// The byte of a "<0xXX>" piece (two hex digits, either case), or -1.
static int parse_byte_piece(const std::string& s) {
    auto hex = [](char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                      : -1;
    };
    if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>' || hex(s[3]) < 0 || hex(s[4]) < 0) return -1;
    return hex(s[3]) * 16 + hex(s[4]);
}

Tokenizer Tokenizer::from_data(TokenizerData d) {
    auto m = std::make_shared<Impl>();
    const size_t n = d.tokens.size();
    LB_CHECK(d.kind == "spm" || d.kind == "bpe", "tokenizer kind: '%s', supported: spm, bpe", d.kind.c_str());
    LB_CHECK(n > 0 && n < (size_t(1) << 30), "tokenizer tokens: count %zu, expected 1..2^30", n);
    LB_CHECK(d.types.empty() || d.types.size() == n, "tokenizer types: %zu entries for %zu tokens", d.types.size(), n);
    LB_CHECK(d.scores.empty() || d.scores.size() == n, "tokenizer scores: %zu entries for %zu tokens", d.scores.size(),
             n);
    for (size_t i = 0; i < d.types.size(); i++)
        LB_CHECK(d.types[i] >= 1 && d.types[i] <= 6, "tokenizer types[%zu]: %d, expected 1..6", i, d.types[i]);
    for (const auto& [name, id] : {std::pair<const char*, int32_t>{"bos", d.bos}, {"eos", d.eos}, {"unk", d.unk}})
        LB_CHECK(id >= -1 && id < int64_t(n), "tokenizer %s id: %d, expected -1..%zu", name, id, n - 1);
    m->spm = d.kind == "spm";
    if (m->spm) {
        LB_CHECK(d.scores.size() == n, "tokenizer scores: an spm tokenizer needs one score per token");
    } else {
        LB_CHECK(d.pretokenizer == "gpt2" || d.pretokenizer == "llama3" || d.pretokenizer == "smollm",
                 "tokenizer pretokenizer: '%s', supported: gpt2, llama3, smollm", d.pretokenizer.c_str());
    }
    m->d = std::move(d);
    const TokenizerData& t = m->d;

    m->text.resize(n);
    m->piece.resize(n);
    std::fill(std::begin(m->byte_id), std::end(m->byte_id), -1);
    for (size_t i = 0; i < n; i++) {
        const TokenType ty = m->type(int32_t(i));
        const bool special = ty == TokenType::control || ty == TokenType::user_defined;
        std::string& s = m->text[i];
        if (m->spm || special || !unicode_to_bytes(t.tokens[i], s)) {
            LB_CHECK(m->spm || special,
                     "tokenizer tokens[%zu]: '%s' has a character outside the byte-to-unicode alphabet", i,
                     t.tokens[i].c_str());
            s = t.tokens[i];
        }
        m->lookup.emplace(s, int32_t(i));
        std::string& p = m->piece[i];
        if (ty == TokenType::control) continue;
        if (m->spm && ty == TokenType::byte) {
            const int b = parse_byte_piece(s);
            LB_CHECK(b >= 0, "tokenizer tokens[%zu]: byte token '%s' is not <0xXX>", i, s.c_str());
            p = std::string(1, char(b));
            if (m->byte_id[b] < 0) m->byte_id[b] = int32_t(i);
            continue;
        }
        p = s;
        if (m->spm)
            for (size_t k; (k = p.find(kSpace)) != std::string::npos;) p.replace(k, 3, " ");
    }
    if (!m->spm) {
        // (some vocabularies, e.g. SmolLM2's, lack a few control bytes: encode drops those bytes)
        for (int b = 0; b < 256; b++) m->byte_id[b] = m->find_text(std::string(1, char(b)));
        m->by_rank = t.merges.empty();
        std::string l, r;
        for (size_t i = 0; i < t.merges.size(); i++) {
            const std::string& mg = t.merges[i];
            const size_t sp = mg.find(' ');
            LB_CHECK(sp != std::string::npos && unicode_to_bytes(std::string_view(mg).substr(0, sp), l) &&
                         unicode_to_bytes(std::string_view(mg).substr(sp + 1), r),
                     "tokenizer merges[%zu]: '%s' is not 'left right' in the byte-to-unicode alphabet", i, mg.c_str());
            const int32_t a = m->find_text(l), b = m->find_text(r), c = m->find_text(l + r);
            LB_CHECK(a >= 0 && b >= 0 && c >= 0, "tokenizer merges[%zu]: '%s' names a token not in the vocabulary", i,
                     mg.c_str());
            m->merge.emplace((uint64_t(uint32_t(a)) << 32) | uint32_t(b), std::make_pair(int32_t(i), c));
        }
    }
    for (size_t i = 0; i < n; i++) {
        const TokenType ty = m->type(int32_t(i));
        if ((ty == TokenType::control || ty == TokenType::user_defined) && !m->text[i].empty()) {
            m->specials.push_back(int32_t(i));
            m->special_first[uint8_t(m->text[i][0])] = true;
        }
    }
    std::stable_sort(m->specials.begin(), m->specials.end(),
                     [&](int32_t a, int32_t b) { return m->text[size_t(a)].size() > m->text[size_t(b)].size(); });
    return Tokenizer(std::move(m));
}

const TokenizerData& Tokenizer::data() const { return impl_->d; }
size_t Tokenizer::n_tokens() const { return impl_->text.size(); }
int32_t Tokenizer::bos() const { return impl_->d.bos; }
int32_t Tokenizer::eos() const { return impl_->d.eos; }

TokenType Tokenizer::type(int32_t id) const {
    LB_CHECK(id >= 0 && size_t(id) < n_tokens(), "token id %d is out of range (vocabulary of %zu)", id, n_tokens());
    return impl_->type(id);
}

int32_t Tokenizer::find(std::string_view token) const {
    if (impl_->spm) return impl_->find_text(token);
    std::string bytes;
    if (unicode_to_bytes(token, bytes)) {
        const int32_t id = impl_->find_text(bytes);
        if (id >= 0) return id;
    }
    return impl_->find_text(token);  // specials are stored as written
}

// ---------------------------------------------------------------------------------------------
// The merge loop. Symbols are byte spans of one buffer in a doubly linked list; candidate pairs
// sit in a min-heap ordered by (priority, position) so that ties go to the leftmost pair. A
// candidate is stale once either side has changed, which shows as a different total length.

namespace {
struct Sym {
    uint32_t start, len;
    int32_t prev, next, id;
};
struct Cand {
    double prio;
    int32_t left, right, id;
    uint32_t len;
};
struct CandAfter {  // heap order: a comes after b
    bool operator()(const Cand& a, const Cand& b) const { return a.prio != b.prio ? a.prio > b.prio : a.left > b.left; }
};

// pair(L, R, &prio, &id) says whether L+R may merge, with what priority (lower first) into which id.
template <class PairFn>
void merge_symbols(std::vector<Sym>& sym, std::vector<Cand>& heap, PairFn pair) {
    heap.clear();
    auto push = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        Cand c;
        if (!pair(sym[size_t(l)], sym[size_t(r)], &c.prio, &c.id)) return;
        c.left = l, c.right = r, c.len = sym[size_t(l)].len + sym[size_t(r)].len;
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), CandAfter());
    };
    for (size_t i = 0; i + 1 < sym.size(); i++) push(int32_t(i), int32_t(i + 1));
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), CandAfter());
        const Cand c = heap.back();
        heap.pop_back();
        Sym& L = sym[size_t(c.left)];
        Sym& R = sym[size_t(c.right)];
        if (L.len == 0 || R.len == 0 || L.next != c.right || L.len + R.len != c.len) continue;  // stale
        L.len += R.len;
        L.id = c.id;
        L.next = R.next;
        if (R.next >= 0) sym[size_t(R.next)].prev = c.left;
        R.len = 0;
        push(L.prev, c.left);
        push(c.left, L.next);
    }
}
}  // namespace

void Tokenizer::Impl::encode_spm(std::string_view s, bool at_start, std::vector<int32_t>& out) const {
    // normalize: optional whitespace cleanup, dummy prefix, ' ' -> "▁"
    std::string norm;
    norm.reserve(s.size() * 3 + 3);
    std::string_view src = s;
    std::string cleaned;
    if (d.remove_extra_whitespaces) {
        for (char c : s)
            if (c != ' ' || (!cleaned.empty() && cleaned.back() != ' ')) cleaned += c;
        while (!cleaned.empty() && cleaned.back() == ' ') cleaned.pop_back();
        src = cleaned;
    }
    if (src.empty()) return;
    if (at_start && d.add_dummy_prefix) norm += kSpace;
    for (char c : src) {
        if (c == ' ')
            norm += kSpace;
        else
            norm += c;
    }

    std::vector<Sym> sym;
    const auto* p = reinterpret_cast<const uint8_t*>(norm.data());
    for (size_t i = 0; i < norm.size();) {
        uint32_t cp;
        const size_t len = unicode::utf8_next(p + i, norm.size() - i, &cp);
        sym.push_back({uint32_t(i), uint32_t(len), int32_t(sym.size()) - 1, int32_t(sym.size()) + 1, -1});
        i += len;
    }
    sym.back().next = -1;
    std::vector<Cand> heap;
    merge_symbols(sym, heap, [&](const Sym& l, const Sym& r, double* prio, int32_t* id) {
        const int32_t t = find_text(std::string_view(norm).substr(l.start, l.len + r.len));
        if (t < 0) return false;
        const TokenType ty = type(t);
        if (ty != TokenType::normal && ty != TokenType::user_defined) return false;
        *prio = -double(d.scores[size_t(t)]);
        *id = t;
        return true;
    });
    for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) {
        const Sym& x = sym[size_t(i)];
        int32_t t = x.id >= 0 ? x.id : find_text(std::string_view(norm).substr(x.start, x.len));
        if (t >= 0 && (type(t) == TokenType::normal || type(t) == TokenType::user_defined)) {
            out.push_back(t);
            continue;
        }
        bool all_bytes = true;  // byte fallback, or one unknown token if a byte piece is missing
        for (uint32_t k = 0; k < x.len; k++) all_bytes = all_bytes && byte_id[p[x.start + k]] >= 0;
        if (all_bytes) {
            for (uint32_t k = 0; k < x.len; k++) out.push_back(byte_id[p[x.start + k]]);
        } else {
            LB_CHECK(d.unk >= 0, "tokenizer: text has a character with no token, no byte token and no unknown token");
            out.push_back(d.unk);
        }
    }
}

void Tokenizer::Impl::encode_bpe(std::string_view s, std::vector<int32_t>& out) const {
    std::vector<std::pair<uint32_t, uint32_t>> words;
    pretokenize(s, d.pretokenizer, words);
    std::vector<Sym> sym;
    std::vector<Cand> heap;
    for (const auto& [start, len] : words) {
        const std::string_view w = s.substr(start, len);
        if (by_rank) {  // tiktoken: a word that is a token is taken whole
            const int32_t t = find_text(w);
            if (t >= 0) {
                out.push_back(t);
                continue;
            }
        }
        sym.clear();
        for (uint32_t i = 0; i < len; i++)
            sym.push_back({i, 1, int32_t(i) - 1, i + 1 < len ? int32_t(i + 1) : -1, byte_id[uint8_t(w[i])]});
        if (by_rank) {
            merge_symbols(sym, heap, [&](const Sym& l, const Sym& r, double* prio, int32_t* id) {
                const int32_t t = find_text(w.substr(l.start, l.len + r.len));
                if (t < 0) return false;
                *prio = t;
                *id = t;
                return true;
            });
        } else {
            merge_symbols(sym, heap, [&](const Sym& l, const Sym& r, double* prio, int32_t* id) {
                auto it = merge.find((uint64_t(uint32_t(l.id)) << 32) | uint32_t(r.id));
                if (it == merge.end()) return false;
                *prio = it->second.first;
                *id = it->second.second;
                return true;
            });
        }
        for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next)
            if (sym[size_t(i)].id >= 0) out.push_back(sym[size_t(i)].id);  // -1: a byte with no token
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
    const Impl& m = *impl_;
    std::vector<int32_t> out;
    if (add_bos) {
        LB_CHECK(m.d.bos >= 0, "tokenizer: BOS requested but the vocabulary has no BOS token");
        out.push_back(m.d.bos);
    }
    auto plain = [&](std::string_view s, bool at_start) {
        if (s.empty()) return;
        if (m.spm)
            m.encode_spm(s, at_start, out);
        else
            m.encode_bpe(s, out);
    };
    if (!parse_special || m.specials.empty()) {
        plain(text, true);
        return out;
    }
    size_t done = 0;  // text[done, i) is plain text not yet encoded
    for (size_t i = 0; i < text.size();) {
        int32_t hit = -1;
        if (m.special_first[uint8_t(text[i])])
            for (int32_t id : m.specials)
                if (text.compare(i, m.text[size_t(id)].size(), m.text[size_t(id)]) == 0) {
                    hit = id;
                    break;
                }
        if (hit < 0) {
            i++;
            continue;
        }
        plain(text.substr(done, i - done), done == 0);
        out.push_back(hit);
        i += m.text[size_t(hit)].size();
        done = i;
    }
    plain(text.substr(done), done == 0);
    return out;
}

const std::string& Tokenizer::token_to_piece(int32_t id) const {
    LB_CHECK(id >= 0 && size_t(id) < n_tokens(), "token id %d is out of range (vocabulary of %zu)", id, n_tokens());
    return impl_->piece[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    bool first = true;
    for (int32_t id : ids) {
        const std::string& p = token_to_piece(id);
        if (p.empty()) continue;
        if (first && impl_->spm && impl_->d.add_dummy_prefix && p[0] == ' ' && type(id) != TokenType::byte)
            out.append(p, 1, std::string::npos);
        else
            out += p;
        first = false;
    }
    return out;
}

}  // namespace lb
