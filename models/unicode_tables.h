// unicode_tables.h: code point classes for the pre-tokenizers (\p{L}, \p{N}, \s) and a lenient
// UTF-8 decoder. The tables are generated (tools/gen_unicode_tables.py -> unicode_tables.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lb {
namespace unicode {

struct CodeRange {
    uint32_t first, last;  // inclusive
};
extern const CodeRange kLetters[];
extern const size_t kLetters_count;
extern const CodeRange kNumbers[];
extern const size_t kNumbers_count;
extern const CodeRange kWhiteSpace[];
extern const size_t kWhiteSpace_count;

// Stands for a byte that does not start a valid UTF-8 sequence: in no class (like punctuation).
constexpr uint32_t kInvalid = 0x110000;

inline bool in_ranges(const CodeRange* r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;  // binary search for the first range with last >= cp
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (r[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && r[lo].first <= cp;
}
inline bool is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(kLetters, kLetters_count, cp);
}
inline bool is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(kNumbers, kNumbers_count, cp);
}
inline bool is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return in_ranges(kWhiteSpace, kWhiteSpace_count, cp);
}

// Decodes the UTF-8 sequence at s[0..n) (n >= 1). Returns its length in bytes and sets *cp.
// Anything invalid (stray continuation byte, overlong form, surrogate, > U+10FFFF, truncated
// sequence) is consumed as one byte with *cp = kInvalid, so every input splits into units.
inline size_t utf8_next(const uint8_t* s, size_t n, uint32_t* cp) {
    const uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        *cp = kInvalid;
        return 1;
    }
    if (len > n) {
        *cp = kInvalid;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = kInvalid;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = kInvalid;
        return 1;
    }
    *cp = v;
    return len;
}

// Appends the UTF-8 encoding of cp (< 0x110000) to out.
template <class String>
void utf8_append(String& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

}  // namespace unicode
}  // namespace lb
