// tokenizer_pretok.cpp: the byte-level BPE pre-tokenizers, hand-written matchers for two regexes
// (no std::regex: it is slow and has no \p{L}/\p{N}). At each position the alternatives are tried
// in order and the first that matches wins, as in a backtracking regex engine:
//   gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//           \s*[\r\n]+|\s+(?!\S)|\s+
//   smollm: every \p{N} alone, then gpt2 on the text between (SmolLM/SmolLM2: digits split first)
// Text is matched per code point; an invalid UTF-8 byte is one unit in no class (like punctuation).
#include <cctype>

#include "core/error.h"
#include "models/tokenizer.h"
#include "models/unicode_tables.h"

namespace lb {

namespace {

struct Units {
    std::vector<uint32_t> cp;   // code point per unit (unicode::kInvalid for a bad byte)
    std::vector<uint32_t> off;  // byte offset per unit, plus the end
    size_t end = 0;             // matchers see units [0, end)
    size_t n() const { return end; }
};

using unicode::is_letter;
using unicode::is_number;
using unicode::is_space;

bool is_other(uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }
bool is_newline(uint32_t c) { return c == '\r' || c == '\n'; }

// Length in units of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
size_t contraction(const Units& u, size_t i, bool ignore_case) {
    if (u.cp[i] != '\'' || i + 1 >= u.n()) return 0;
    auto at = [&](size_t k) -> uint32_t {
        if (k >= u.n()) return 0;
        const uint32_t c = u.cp[k];
        return ignore_case && c < 0x80 ? uint32_t(std::tolower(int(c))) : c;
    };
    const uint32_t a = at(i + 1), b = at(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

template <class Pred>
size_t run(const Units& u, size_t i, Pred pred) {  // end of the run of units matching pred from i
    while (i < u.n() && pred(u.cp[i])) i++;
    return i;
}

// \s+(?!\S)|\s+ at i (u.cp[i] is a space): the run, less its last unit if a non-space follows
// and the run is longer than one.
size_t spaces(const Units& u, size_t i) {
    const size_t e = run(u, i, is_space);
    return (e < u.n() && e - i > 1) ? e - 1 : e;
}

size_t match_gpt2(const Units& u, size_t i) {
    if (size_t k = contraction(u, i, false)) return i + k;
    const size_t j = u.cp[i] == ' ' && i + 1 < u.n() ? i + 1 : i;  // optional leading space
    const uint32_t c = u.cp[j];
    if (is_letter(c)) return run(u, j, is_letter);
    if (is_number(c)) return run(u, j, is_number);
    if (is_other(c)) return run(u, j, is_other);
    return spaces(u, i);
}

size_t match_llama3(const Units& u, size_t i) {
    if (size_t k = contraction(u, i, true)) return i + k;
    const uint32_t c = u.cp[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(c)) return run(u, i, is_letter);
    if (!is_newline(c) && !is_number(c) && i + 1 < u.n() && is_letter(u.cp[i + 1])) return run(u, i + 1, is_letter);
    // \p{N}{1,3}
    if (is_number(c)) {
        size_t e = i;
        while (e < u.n() && e - i < 3 && is_number(u.cp[e])) e++;
        return e;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t j = c == ' ' && i + 1 < u.n() ? i + 1 : i;
    if (is_other(u.cp[j])) return run(u, run(u, j, is_other), is_newline);
    // \s*[\r\n]+ : up to and including the last newline of the space run
    const size_t e = run(u, i, is_space);
    for (size_t k = e; k > i; k--)
        if (is_newline(u.cp[k - 1])) return k;
    return spaces(u, i);
}

}  // namespace

void pretokenize(std::string_view text, const std::string& kind, std::vector<std::pair<uint32_t, uint32_t>>& spans) {
    LB_CHECK(text.size() < (size_t(1) << 32), "pretokenize: text of %zu bytes is too long (4 GiB at most)",
             text.size());
    const bool llama3 = kind == "llama3", smollm = kind == "smollm";
    LB_CHECK(llama3 || smollm || kind == "gpt2", "pretokenizer '%s' is not supported (gpt2, llama3, smollm)",
             kind.c_str());
    Units u;
    u.cp.reserve(text.size());
    u.off.reserve(text.size() + 1);
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    for (size_t i = 0; i < text.size();) {
        uint32_t cp;
        const size_t len = unicode::utf8_next(p + i, text.size() - i, &cp);
        u.cp.push_back(cp);
        u.off.push_back(uint32_t(i));
        i += len;
    }
    u.off.push_back(uint32_t(text.size()));
    const size_t total = u.cp.size();
    u.end = smollm ? 0 : total;  // smollm: the end of the current run without numbers
    spans.clear();
    for (size_t i = 0; i < total;) {
        size_t e;
        if (smollm && is_number(u.cp[i])) {
            e = i + 1;
        } else {
            if (smollm && u.end <= i) {
                u.end = total;
                u.end = run(u, i, [](uint32_t c) { return !is_number(c); });
            }
            e = llama3 ? match_llama3(u, i) : match_gpt2(u, i);
        }
        spans.emplace_back(u.off[i], u.off[e] - u.off[i]);
        i = e;
    }
}

}  // namespace lb
