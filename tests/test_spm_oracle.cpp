// test_spm_oracle.cpp: the lowbit SentencePiece BPE tokenizer (models/tokenizer.h) against
// libsentencepiece itself, the test oracle: identical ids on the whole WikiText-2 test text with the
// LLaMA-2 tokenizer.model, line by line (without the CRLF) and as one string (CRLFs included), and
// decode(encode(x)) == x. Built only where libsentencepiece is installed (tests/CMakeLists.txt).
#include <doctest/doctest.h>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "models/tokenizer.h"

using namespace lb;

static const char* kModel = "../../shared/data/llama2-tokenizer/tokenizer.model";
static const char* kText = "../../shared/data/text/wikitext-2-raw-v1-test.rows-crlf.txt";

static std::string file_text(const char* path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

static std::string ids_str(const std::vector<int32_t>& ids) {
    std::ostringstream s;
    s << "[";
    for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
    return s.str() + "]";
}

// the oracle's ids (no BOS, as Tokenizer::encode(text, false))
static std::vector<int32_t> spm_ids(const sentencepiece::SentencePieceProcessor& sp, const std::string& text) {
    std::vector<int> ids;
    const auto st = sp.Encode(text, &ids);
    REQUIRE_MESSAGE(st.ok(), "libsentencepiece Encode: " << st.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
}

// lines of the CRLF file, without their line ends
static std::vector<std::string> crlf_lines(const std::string& text) {
    std::vector<std::string> lines;
    size_t b = 0;
    while (b < text.size()) {
        size_t e = text.find("\r\n", b);
        if (e == std::string::npos) e = text.size();
        lines.push_back(text.substr(b, e - b));
        b = e + 2;
    }
    return lines;
}

struct Fixture {
    sentencepiece::SentencePieceProcessor sp;
    Tokenizer tok = Tokenizer::load_sentencepiece(kModel);
    std::string text = file_text(kText);
    Fixture() {
        const auto st = sp.Load(kModel);
        REQUIRE_MESSAGE(st.ok(), "libsentencepiece Load: " << st.ToString());
    }
};

static Fixture& fixture() {
    static Fixture f;
    return f;
}

TEST_CASE("spm oracle: the vocabularies agree (size, pieces, bos/eos)") {
    Fixture& f = fixture();
    REQUIRE(size_t(f.sp.GetPieceSize()) == f.tok.n_tokens());
    int differ = 0;
    for (int i = 0; i < f.sp.GetPieceSize(); ++i)
        if (f.sp.IdToPiece(i) != f.tok.data().tokens[size_t(i)] && differ++ < 5)
            MESSAGE("piece " << i << ": libsentencepiece '" << f.sp.IdToPiece(i) << "', lowbit '"
                             << f.tok.data().tokens[size_t(i)] << "'");
    CHECK(differ == 0);
    CHECK(f.sp.bos_id() == f.tok.bos());
    CHECK(f.sp.eos_id() == f.tok.eos());
}

TEST_CASE("spm oracle: WikiText-2 test, line by line: same ids as libsentencepiece, decode round trip") {
    Fixture& f = fixture();
    const std::vector<std::string> lines = crlf_lines(f.text);
    REQUIRE(lines.size() == 2891);
    int mismatches = 0, bad_decode = 0, bad_spm_decode = 0;
    size_t n_ids = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        const std::vector<int32_t> want = spm_ids(f.sp, line);
        const std::vector<int32_t> got = f.tok.encode(line, false);
        n_ids += want.size();
        if (got != want && mismatches++ == 0)
            MESSAGE("first differing line " << i + 1 << ": '" << line << "'\n  libsentencepiece " << ids_str(want)
                                            << "\n  lowbit           " << ids_str(got));
        const std::string back = f.tok.decode(got);
        if (back != line && bad_decode++ == 0)
            MESSAGE("line " << i + 1 << ": lowbit decode(encode(x)) != x: '" << back << "'");
        std::string spm_back;
        const std::vector<int> wi(want.begin(), want.end());
        REQUIRE(f.sp.Decode(wi, &spm_back).ok());
        if (f.tok.decode(want) != spm_back && bad_spm_decode++ == 0)
            MESSAGE("line " << i + 1 << ": lowbit decode of the oracle's ids '" << f.tok.decode(want)
                            << "' != libsentencepiece's '" << spm_back << "'");
    }
    MESSAGE(lines.size() << " lines, " << n_ids << " ids; lines with different ids: " << mismatches);
    CHECK(mismatches == 0);
    CHECK(bad_decode == 0);
    CHECK(bad_spm_decode == 0);
}

TEST_CASE("spm oracle: WikiText-2 test as one string (CRLF included): same ids, decode round trip") {
    Fixture& f = fixture();
    const std::vector<int32_t> want = spm_ids(f.sp, f.text);
    const std::vector<int32_t> got = f.tok.encode(f.text, false);
    MESSAGE("whole text: " << f.text.size() << " bytes, " << want.size() << " ids (libsentencepiece), " << got.size()
                           << " ids (lowbit)");
    size_t i = 0;
    while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
    if (i < want.size() || i < got.size()) {
        const size_t b = i >= 8 ? i - 8 : 0;
        auto slice = [&](const std::vector<int32_t>& v) {
            return ids_str(std::vector<int32_t>(v.begin() + long(std::min(b, v.size())),
                                                v.begin() + long(std::min(i + 8, v.size()))));
        };
        MESSAGE("first differing id at " << i << " (ids " << b << "..):\n  libsentencepiece " << slice(want)
                                         << "\n  lowbit           " << slice(got));
    }
    CHECK(got == want);
    CHECK(f.tok.decode(got) == f.text);
}

TEST_CASE("spm oracle: edge cases (spaces, tabs, newlines, CJK, emoji, control-token text)") {
    Fixture& f = fixture();
    const std::vector<std::string> cases = {"",
                                            " ",
                                            "  ",
                                            "a",
                                            " a",
                                            "a ",
                                            "  hello   world  ",
                                            "\t",
                                            "\n",
                                            "\r\n",
                                            "line1\nline2\n\n",
                                            "日本語のテキスト",
                                            "🦙 llama 🦙🦙",
                                            "<s> </s> <unk>",
                                            "Ünïcödé ñ ß ø",
                                            "1234567890 3.14159",
                                            "@-@ @,@ @.@",
                                            "\xe2\x96\x81 already a sentencepiece space",
                                            "a\u00a0b",
                                            "tab\tsep\tvalues"};
    for (const std::string& s : cases) {
        const std::vector<int32_t> want = spm_ids(f.sp, s);
        const std::vector<int32_t> got = f.tok.encode(s, false);
        CHECK_MESSAGE(got == want, "'" << s << "': libsentencepiece " << ids_str(want) << ", lowbit " << ids_str(got));
        std::string spm_back;
        REQUIRE(f.sp.Decode(std::vector<int>(want.begin(), want.end()), &spm_back).ok());
        CHECK_MESSAGE(f.tok.decode(got) == spm_back, "'" << s << "': lowbit decodes to '" << f.tok.decode(got)
                                                         << "', libsentencepiece to '" << spm_back << "'");
        // a literal U+2581 in the input is a space to both (it is SentencePiece's space mark)
        if (s.find("\xe2\x96\x81") == std::string::npos)
            CHECK_MESSAGE(f.tok.decode(got) == s, "'" << s << "' decodes to '" << f.tok.decode(got) << "'");
    }
}
