// hf_tokenizer_json.cpp: the Hugging Face tokenizers file (tokenizer.json) -> TokenizerData, for
// the two BPE families lowbit implements (byte-level BPE and SentencePiece-style BPE with byte
// fallback). The rules, and why the SentencePiece scores are what they are, are in
// formats/hf_config.h (hf_tokenizer_json_data).
#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "formats/hf_config.h"
#include "formats/hf_json.h"

namespace lb {

using hf::member;
using nlohmann::json;

namespace {

// The pre-tokenizer regexes as tokenizers writes them in Split { pattern: { Regex: ... } }.
const char kGpt2Regex[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kMeta[] = "\xE2\x96\x81";  // U+2581 "▁"

std::string brief(const json& v) {
    std::string s = v.dump();
    return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

std::string type_of(const json& v) {
    const json* t = member(v, "type");
    return t && t->is_string() ? t->get<std::string>() : std::string();
}

bool flag(const json& v, const char* key, bool fallback) {
    const json* b = member(v, key);
    return b && b->is_boolean() ? b->get<bool>() : fallback;
}

// the list of a Sequence (of pre-tokenizers or normalizers), or the one element
std::vector<json> flatten(const json& v, const char* list_key) {
    if (v.is_null()) return {};
    if (type_of(v) == "Sequence") {
        const json* l = member(v, list_key);
        if (l && l->is_array()) return std::vector<json>(l->begin(), l->end());
    }
    return {v};
}

bool is_byte_level(const json& p, bool use_regex) {
    return type_of(p) == "ByteLevel" && !flag(p, "add_prefix_space", false) && flag(p, "use_regex", true) == use_regex;
}

bool is_split(const json& p, const char* regex) {
    const json* pat = member(p, "pattern");
    const json* re = pat ? member(*pat, "Regex") : nullptr;
    const json* beh = member(p, "behavior");
    return type_of(p) == "Split" && re && re->is_string() && re->get<std::string>() == regex && beh &&
           beh->is_string() && beh->get<std::string>() == "Isolated" && !flag(p, "invert", false);
}

// the lowbit pretokenizer kind of a byte-level BPE pre_tokenizer, or throws
std::string byte_level_kind(const json& pre, const std::string& origin) {
    const std::vector<json> p = flatten(pre, "pretokenizers");
    if (p.size() == 1 && is_byte_level(p[0], true)) return "gpt2";
    if (p.size() == 2 && type_of(p[0]) == "Digits" && flag(p[0], "individual_digits", false) &&
        is_byte_level(p[1], true))
        return "smollm";
    if (p.size() == 2 && is_split(p[0], kLlama3Regex) && is_byte_level(p[1], false)) return "llama3";
    if (p.size() == 2 && is_split(p[0], kGpt2Regex) && is_byte_level(p[1], false)) return "gpt2";
    throw Error(origin + ": pre_tokenizer " + brief(pre) +
                " is not supported for byte-level BPE (supported: ByteLevel (GPT-2), Digits(individual) + ByteLevel "
                "(SmolLM), Split(Llama 3 or GPT-2 regex) + ByteLevel)");
}

// SentencePiece-style: whether a "▁" is prepended (throws for a form it does not know)
bool spm_dummy_prefix(const json& root, const std::string& origin) {
    const json* norm = member(root, "normalizer");
    const json* pre = member(root, "pre_tokenizer");
    const json null_v;
    const std::vector<json> ns = flatten(norm ? *norm : null_v, "normalizers");
    const std::vector<json> ps = flatten(pre ? *pre : null_v, "pretokenizers");
    bool prepend = false, replace = false;
    for (const json& n : ns) {
        const std::string t = type_of(n);
        const json* pp = member(n, "prepend");
        const json* pat = member(n, "pattern");
        const json* str = pat ? member(*pat, "String") : nullptr;
        const json* con = member(n, "content");
        if (t == "Prepend" && pp && pp->is_string() && pp->get<std::string>() == kMeta && !replace) {
            prepend = true;
        } else if (t == "Replace" && str && str->is_string() && str->get<std::string>() == " " && con &&
                   con->is_string() && con->get<std::string>() == kMeta) {
            replace = true;
        } else {
            throw Error(origin + ": normalizer " + brief(*norm) +
                        " is not supported for a byte-fallback BPE (supported: Prepend(\"\u2581\"), Replace(\" \", "
                        "\"\u2581\"))");
        }
    }
    if (ps.empty()) {
        LB_CHECK(replace,
                 "%s: a byte-fallback BPE with neither a Replace(\" \", \"\u2581\") normalizer nor a Metaspace "
                 "pre_tokenizer is not supported",
                 origin.c_str());
        return prepend;
    }
    const json& m = ps[0];
    const json* rep = member(m, "replacement");
    LB_CHECK(ps.size() == 1 && type_of(m) == "Metaspace" && rep && rep->is_string() &&
                 rep->get<std::string>() == kMeta && !flag(m, "split", false) && !replace && !prepend,
             "%s: pre_tokenizer %s is not supported for a byte-fallback BPE (supported: none, or Metaspace(\"\u2581\", "
             "split false))",
             origin.c_str(), brief(*pre).c_str());
    const json* scheme = member(m, "prepend_scheme");
    if (scheme && scheme->is_string()) {
        const std::string s = scheme->get<std::string>();
        LB_CHECK(s == "first" || s == "always" || s == "never", "%s: pre_tokenizer.prepend_scheme '%s' is not known",
                 origin.c_str(), s.c_str());
        return s != "never";
    }
    return flag(m, "add_prefix_space", true);
}

// the merges as (left, right) pairs
std::vector<std::pair<std::string, std::string>> read_merges(const json& model, const std::string& origin) {
    std::vector<std::pair<std::string, std::string>> out;
    const json* merges = member(model, "merges");
    if (!merges || merges->is_null()) return out;
    LB_CHECK(merges->is_array(), "%s: model.merges: expected a list, found %s", origin.c_str(), merges->type_name());
    out.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); i++) {
        const json& m = (*merges)[i];
        if (m.is_string()) {  // "left right"
            const std::string& s = m.get_ref<const std::string&>();
            const size_t sp = s.find(' ');
            LB_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos,
                     "%s: model.merges[%zu]: '%s' is not 'left right'", origin.c_str(), i, s.c_str());
            out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        } else {  // ["left", "right"] (tokenizers >= 0.20)
            LB_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string() &&
                         !m[0].get_ref<const std::string&>().empty() && !m[1].get_ref<const std::string&>().empty(),
                     "%s: model.merges[%zu]: %s is neither 'left right' nor [\"left\", \"right\"]", origin.c_str(), i,
                     brief(m).c_str());
            out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        }
    }
    return out;
}

// the special token a TemplateProcessing post_processor puts first in "single", or ""
std::string leading_special(const json& post) {
    for (const json& p : flatten(post, "processors")) {
        if (type_of(p) != "TemplateProcessing") continue;
        const json* single = member(p, "single");
        if (!single || !single->is_array() || single->empty()) continue;
        const json* st = member((*single)[0], "SpecialToken");
        const json* id = st ? member(*st, "id") : nullptr;
        if (id && id->is_string()) return id->get<std::string>();
    }
    return "";
}

bool is_byte_piece(const std::string& s) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
    return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' && hex(s[3]) && hex(s[4]);
}

}  // namespace

TokenizerData hf_tokenizer_json_data(const std::string& text, const std::string& origin) {
    const json root = hf::parse_json(text, origin);
    LB_CHECK(root.is_object(), "%s: expected a JSON object, found %s", origin.c_str(), root.type_name());
    const json* model = member(root, "model");
    LB_CHECK(model && model->is_object(), "%s: key 'model' is missing or not an object", origin.c_str());
    const std::string mtype = hf::str_or_empty(*model, "type", origin, "model.");
    LB_CHECK(!mtype.empty(), "%s: key 'model.type' is missing", origin.c_str());
    LB_CHECK(mtype == "BPE", "%s: model.type '%s' is not supported (supported: BPE)", origin.c_str(), mtype.c_str());
    const json* dropout = member(*model, "dropout");
    LB_CHECK(!dropout || dropout->is_null() || (dropout->is_number() && dropout->get<double>() == 0.0),
             "%s: model.dropout %s is not supported (BPE dropout changes the result)", origin.c_str(),
             dropout ? brief(*dropout).c_str() : "");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
        LB_CHECK(hf::str_or_empty(*model, k, origin, "model.").empty(), "%s: model.%s is not supported", origin.c_str(),
                 k);
    const json* bf = member(*model, "byte_fallback");
    LB_CHECK(!bf || bf->is_null() || bf->is_boolean(), "%s: key 'model.byte_fallback': expected true or false",
             origin.c_str());
    const bool byte_fallback = bf && bf->is_boolean() && bf->get<bool>();

    // ---- the vocabulary: model.vocab plus added_tokens, ids 0..n-1 exactly once
    const json* vocab = member(*model, "vocab");
    LB_CHECK(vocab, "%s: key 'model.vocab' is missing", origin.c_str());
    LB_CHECK(vocab->is_object(), "%s: key 'model.vocab': expected an object {token: id}, found %s", origin.c_str(),
             vocab->type_name());
    // ids are 0..n-1 with n at most the number of entries (vocab + added_tokens, which may repeat
    // vocab entries): a larger id is an error before anything is allocated for it
    const json* added = member(root, "added_tokens");
    const int64_t kMaxId =
        std::min<int64_t>(int64_t(1) << 24, int64_t(vocab->size() + (added && added->is_array() ? added->size() : 0)));
    std::vector<std::string> tokens;
    std::vector<char> have;
    std::vector<int32_t> types;
    auto put = [&](int64_t id, const std::string& tok, int32_t type, const char* where) {
        LB_CHECK(id >= 0 && id < kMaxId, "%s: %s: token '%s' has id %lld, expected 0..%lld", origin.c_str(), where,
                 tok.c_str(), (long long)id, (long long)kMaxId - 1);
        if (size_t(id) >= tokens.size()) {
            tokens.resize(size_t(id) + 1);
            have.resize(size_t(id) + 1, 0);
            types.resize(size_t(id) + 1, int32_t(TokenType::normal));
        }
        if (have[size_t(id)]) {
            LB_CHECK(tokens[size_t(id)] == tok, "%s: %s: id %lld is both '%s' and '%s'", origin.c_str(), where,
                     (long long)id, tokens[size_t(id)].c_str(), tok.c_str());
        }
        tokens[size_t(id)] = tok;
        have[size_t(id)] = 1;
        if (type != int32_t(TokenType::normal)) types[size_t(id)] = type;
    };
    for (auto it = vocab->begin(); it != vocab->end(); ++it) {
        LB_CHECK(it.value().is_number_integer(), "%s: model.vocab: token '%s': expected an integer id, found %s",
                 origin.c_str(), it.key().c_str(), it.value().type_name());
        put(it.value().get<int64_t>(), it.key(), int32_t(TokenType::normal), "model.vocab");
    }
    if (added && !added->is_null()) {
        LB_CHECK(added->is_array(), "%s: key 'added_tokens': expected a list, found %s", origin.c_str(),
                 added->type_name());
        for (size_t i = 0; i < added->size(); i++) {
            const json& a = (*added)[i];
            const json* id = member(a, "id");
            const json* content = member(a, "content");
            LB_CHECK(id && id->is_number_integer() && content && content->is_string() &&
                         !content->get_ref<const std::string&>().empty(),
                     "%s: added_tokens[%zu]: expected {\"id\": integer, \"content\": non-empty string, ...}",
                     origin.c_str(), i);
            const bool special = flag(a, "special", false);
            put(id->get<int64_t>(), content->get<std::string>(),
                int32_t(special ? TokenType::control : TokenType::user_defined), "added_tokens");
        }
    }
    LB_CHECK(!tokens.empty(), "%s: model.vocab is empty", origin.c_str());
    for (size_t i = 0; i < tokens.size(); i++)
        LB_CHECK(have[i], "%s: no token has id %zu (model.vocab and added_tokens must cover 0..%zu)", origin.c_str(), i,
                 tokens.size() - 1);

    std::unordered_map<std::string_view, int32_t> id_of;
    id_of.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); i++) id_of.emplace(tokens[i], int32_t(i));
    auto lookup = [&](const std::string& s) {
        auto it = id_of.find(s);
        return it == id_of.end() ? -1 : it->second;
    };

    // ---- merges, checked against the vocabulary
    const std::vector<std::pair<std::string, std::string>> merges = read_merges(*model, origin);
    std::vector<int32_t> merged(merges.size());
    for (size_t i = 0; i < merges.size(); i++) {
        const auto& [l, r] = merges[i];
        merged[i] = lookup(l + r);
        LB_CHECK(lookup(l) >= 0 && lookup(r) >= 0 && merged[i] >= 0,
                 "%s: model.merges[%zu]: '%s %s' names a token not in the vocabulary ('%s')", origin.c_str(), i,
                 l.c_str(), r.c_str(),
                 lookup(l) < 0   ? l.c_str()
                 : lookup(r) < 0 ? r.c_str()
                                 : (l + r).c_str());
    }

    TokenizerData d;
    d.tokens = std::move(tokens);
    d.types = std::move(types);
    const std::string unk = hf::str_or_empty(*model, "unk_token", origin, "model.");
    if (!unk.empty()) {
        d.unk = lookup(unk);
        LB_CHECK(d.unk >= 0, "%s: model.unk_token '%s' is not in the vocabulary", origin.c_str(), unk.c_str());
        d.types[size_t(d.unk)] = int32_t(TokenType::unknown);
    }
    const json* post = member(root, "post_processor");
    if (post && !post->is_null()) {
        const std::string lead = leading_special(*post);
        if (!lead.empty()) {
            d.bos = lookup(lead);
            LB_CHECK(d.bos >= 0, "%s: post_processor: special token '%s' is not in the vocabulary", origin.c_str(),
                     lead.c_str());
            d.add_bos = true;
        }
    }

    // byte-level: no byte fallback, or a ByteLevel pre-tokenizer, whose alphabet covers every byte
    // so that byte fallback never applies (transformers writes byte_fallback true with ByteLevel when
    // it builds a tokenizer.json from a GGUF vocabulary)
    const json* pre_tok = member(root, "pre_tokenizer");
    bool byte_level_pre = false;
    if (pre_tok && pre_tok->is_object()) {
        const json* ty = member(*pre_tok, "type");
        const json* list = member(*pre_tok, "pretokenizers");
        byte_level_pre = ty && ty->is_string() && ty->get<std::string>() == "ByteLevel";
        if (list && list->is_array())
            for (const json& e : *list) {
                const json* t = e.is_object() ? member(e, "type") : nullptr;
                byte_level_pre = byte_level_pre || (t && t->is_string() && t->get<std::string>() == "ByteLevel");
            }
    }
    if (!byte_fallback || byte_level_pre) {
        d.kind = "bpe";
        const json* norm = member(root, "normalizer");
        const json* norms = norm && norm->is_object() ? member(*norm, "normalizers") : nullptr;
        const bool empty_seq = norms && norms->is_array() && norms->empty();  // Sequence([]) = none
        LB_CHECK(!norm || norm->is_null() || empty_seq,
                 "%s: normalizer %s is not supported for byte-level BPE (supported: null)", origin.c_str(),
                 norm ? brief(*norm).c_str() : "");
        const json* pre = pre_tok;
        LB_CHECK(pre && !pre->is_null(),
                 "%s: model.type BPE without byte_fallback and without a pre_tokenizer is not supported (supported: "
                 "byte-level BPE, or byte-fallback BPE with \u2581 for spaces)",
                 origin.c_str());
        d.pretokenizer = byte_level_kind(*pre, origin);
        const bool ignore_merges = flag(*model, "ignore_merges", false);
        if (ignore_merges) {
            // Llama 3: a word that is a token is taken whole. lowbit does that in its rank-by-id mode,
            // which is the same merge order as the list only if the list is in the order of the ids
            for (size_t i = 1; i < merged.size(); i++)
                LB_CHECK(merged[i] >= merged[i - 1],
                         "%s: model.ignore_merges with merges not in the order of their results' ids (merges[%zu] "
                         "gives id %d after id %d) is not supported",
                         origin.c_str(), i, merged[i], merged[i - 1]);
        } else {
            d.merges.reserve(merges.size());
            for (const auto& [l, r] : merges) d.merges.push_back(l + " " + r);
        }
        // a vocabulary without merges would be merged by id: that only makes sense for tiktoken-style
        // vocabularies, which say so with ignore_merges
        LB_CHECK(ignore_merges || !merges.empty(), "%s: key 'model.merges' is missing or empty", origin.c_str());
    } else {
        d.kind = "spm";
        d.add_dummy_prefix = spm_dummy_prefix(root, origin);
        d.remove_extra_whitespaces = false;
        const size_t n = d.tokens.size();
        d.scores.assign(n, 0.0f);
        std::vector<char> scored(n, 0);
        for (size_t r = 0; r < merged.size(); r++) {
            const size_t t = size_t(merged[r]);
            if (scored[t]) continue;
            scored[t] = 1;
            d.scores[t] = -float(r);
        }
        for (size_t i = 0; i < n; i++) {
            if (!scored[i]) d.scores[i] = -float(merged.size() + i);
            if (d.types[i] == int32_t(TokenType::normal) && is_byte_piece(d.tokens[i]))
                d.types[i] = int32_t(TokenType::byte);
        }
    }
    try {
        Tokenizer::from_data(d);
    } catch (const Error& e) {
        throw Error(origin + ": " + e.what());
    }
    return d;
}

}  // namespace lb
