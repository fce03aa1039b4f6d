// hf_config.cpp: config.json -> LlamaHParams and the directory-level tokenizer discovery of
// formats/hf_config.h (special ids, add_bos, chat template, added tokens). The tokenizer.json
// reader itself is in hf_tokenizer_json.cpp.
#include "formats/hf_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "formats/hf_json.h"
#include "formats/mapped_file.h"

namespace lb {

using nlohmann::json;

namespace hf {

bool is_file(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

json parse_json(const std::string& text, const std::string& origin) {
    // nlohmann-json parses iteratively but dumps and destroys recursively: bound the nesting
    // (real config / tokenizer files nest about 6 deep) so that hostile input cannot overflow the stack
    constexpr int kMaxDepth = 64;
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); i++) {
        const char ch = text[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '[' || ch == '{') {
            LB_CHECK(++depth <= kMaxDepth, "%s: not valid JSON: nested deeper than %d levels at byte %zu",
                     origin.c_str(), kMaxDepth, i);
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error(origin + ": not valid JSON: " + e.what());
    }
}

const json* member(const json& obj, const char* key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

std::string str_or_empty(const json& obj, const char* key, const std::string& origin, const std::string& where) {
    const json* v = member(obj, key);
    if (!v || v->is_null()) return "";
    LB_CHECK(v->is_string(), "%s: %s%s: expected a string, found %s", origin.c_str(), where.c_str(), key,
             v->type_name());
    return v->get<std::string>();
}

}  // namespace hf

namespace {

using hf::member;

// an integer key in [lo, hi]; `fallback` (if given) when absent
int64_t get_int(const json& cfg, const char* key, const std::string& origin, int64_t lo, int64_t hi,
                std::optional<int64_t> fallback = std::nullopt) {
    const json* v = member(cfg, key);
    if (!v || (v->is_null() && fallback)) {
        LB_CHECK(fallback.has_value(), "%s: key '%s' is missing", origin.c_str(), key);
        return *fallback;
    }
    // an integral float (1024.0) is what some writers emit; anything else is mistyped
    int64_t x = 0;
    if (v->is_number_unsigned()) {
        const uint64_t u = v->get<uint64_t>();
        LB_CHECK(u <= uint64_t(hi), "%s: key '%s' = %llu, expected %lld..%lld", origin.c_str(), key,
                 (unsigned long long)u, (long long)lo, (long long)hi);
        x = int64_t(u);
    } else if (v->is_number_integer()) {
        x = v->get<int64_t>();
    } else if (v->is_number_float() && std::isfinite(v->get<double>()) && std::fabs(v->get<double>()) < 1e15 &&
               std::floor(v->get<double>()) == v->get<double>()) {
        x = int64_t(v->get<double>());
    } else {
        throw Error(strfmt("%s: key '%s': expected an integer, found %s %s", origin.c_str(), key, v->type_name(),
                           v->dump().substr(0, 40).c_str()));
    }
    LB_CHECK(x >= lo && x <= hi, "%s: key '%s' = %lld, expected %lld..%lld", origin.c_str(), key, (long long)x,
             (long long)lo, (long long)hi);
    return x;
}

// a positive finite number below `hi`; `fallback` when absent or null
double get_pos(const json& obj, const char* key, const std::string& origin, const std::string& where, double hi,
               double fallback) {
    const json* v = member(obj, key);
    if (!v || v->is_null()) return fallback;
    LB_CHECK(v->is_number(), "%s: key '%s%s': expected a number, found %s", origin.c_str(), where.c_str(), key,
             v->type_name());
    const double x = v->get<double>();
    LB_CHECK(std::isfinite(x) && x > 0 && x < hi, "%s: key '%s%s' = %g, expected a number in (0, %g)", origin.c_str(),
             where.c_str(), key, x, hi);
    return x;
}

bool get_bool(const json& obj, const char* key, const std::string& origin, bool fallback) {
    const json* v = member(obj, key);
    if (!v || v->is_null()) return fallback;
    LB_CHECK(v->is_boolean(), "%s: key '%s': expected true or false, found %s", origin.c_str(), key, v->type_name());
    return v->get<bool>();
}

// rope_scaling / rope_parameters: "linear" -> 1/factor; "default" or null -> 1; others unsupported
float rope_freq_scale(const json& cfg, const char* key, const std::string& origin) {
    const json* rs = member(cfg, key);
    if (!rs || rs->is_null()) return 1.0f;
    LB_CHECK(rs->is_object(), "%s: key '%s': expected an object or null, found %s", origin.c_str(), key,
             rs->type_name());
    const std::string where = std::string(key) + ".";
    std::string type = hf::str_or_empty(*rs, "rope_type", origin, where);
    if (type.empty()) type = hf::str_or_empty(*rs, "type", origin, where);
    if (type.empty() || type == "default") return 1.0f;
    LB_CHECK(type == "linear", "%s: key '%s': rope scaling type '%s' is not supported (supported: linear, default)",
             origin.c_str(), key, type.c_str());
    LB_CHECK(member(*rs, "factor"), "%s: key '%s.factor' is missing (linear rope scaling)", origin.c_str(), key);
    return float(1.0 / get_pos(*rs, "factor", origin, where, 1e6, 1.0));
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const std::string& origin) {
    HfConfig c;
    c.origin = origin;
    c.raw = hf::parse_json(text, origin);
    const json& cfg = c.raw;
    LB_CHECK(cfg.is_object(), "%s: expected a JSON object, found %s", origin.c_str(), cfg.type_name());

    c.model_type = hf::str_or_empty(cfg, "model_type", origin, "");
    if (c.model_type.empty()) {
        // LLaMA-1 era configs: only "architectures": ["LLaMAForCausalLM"] (or LlamaForCausalLM)
        const json* a = member(cfg, "architectures");
        std::string arch;
        if (a && a->is_array() && !a->empty() && (*a)[0].is_string()) arch = (*a)[0].get<std::string>();
        std::string low;
        for (char ch : arch) low += char(std::tolower(uint8_t(ch)));
        LB_CHECK(low.rfind("llama", 0) == 0, "%s: key 'model_type' is missing and architectures[0] '%s' is no LLaMA",
                 origin.c_str(), arch.c_str());
        c.model_type = "llama";
    }
    LB_CHECK(c.model_type == "llama" || c.model_type == "bitllama",
             "%s: key 'model_type': '%s' is not supported (supported: llama, bitllama)", origin.c_str(),
             c.model_type.c_str());
    c.torch_dtype = hf::str_or_empty(cfg, "torch_dtype", origin, "");
    if (c.torch_dtype.empty()) c.torch_dtype = hf::str_or_empty(cfg, "dtype", origin, "");

    const std::string act = hf::str_or_empty(cfg, "hidden_act", origin, "");
    LB_CHECK(act.empty() || act == "silu", "%s: key 'hidden_act': '%s' is not supported (supported: silu)",
             origin.c_str(), act.c_str());
    LB_CHECK(!get_bool(cfg, "attention_bias", origin, false),
             "%s: key 'attention_bias' is true: attention biases are not supported", origin.c_str());
    LB_CHECK(!get_bool(cfg, "mlp_bias", origin, false), "%s: key 'mlp_bias' is true: MLP biases are not supported",
             origin.c_str());

    LlamaHParams& hp = c.hp;
    constexpr int64_t kMaxDim = int64_t(1) << 20, kMaxVocab = int64_t(1) << 24;
    hp.n_embd = get_int(cfg, "hidden_size", origin, 1, kMaxDim);
    hp.n_ff = get_int(cfg, "intermediate_size", origin, 1, kMaxDim);
    hp.n_layer = get_int(cfg, "num_hidden_layers", origin, 1, 10000);
    hp.n_head = get_int(cfg, "num_attention_heads", origin, 1, 65536);
    hp.n_head_kv = get_int(cfg, "num_key_value_heads", origin, 1, 65536, hp.n_head);
    hp.n_vocab = get_int(cfg, "vocab_size", origin, 1, kMaxVocab);
    if (member(cfg, "max_position_embeddings"))
        hp.n_ctx_train = get_int(cfg, "max_position_embeddings", origin, 1, int64_t(1) << 30);
    else
        hp.n_ctx_train = get_int(cfg, "max_sequence_length", origin, 1, int64_t(1) << 30, 2048);
    LB_CHECK(hp.n_embd % hp.n_head == 0, "%s: key 'hidden_size' = %lld is not a multiple of num_attention_heads = %lld",
             origin.c_str(), (long long)hp.n_embd, (long long)hp.n_head);
    LB_CHECK(hp.n_head % hp.n_head_kv == 0,
             "%s: key 'num_key_value_heads' = %lld does not divide num_attention_heads = %lld", origin.c_str(),
             (long long)hp.n_head_kv, (long long)hp.n_head);
    if (member(cfg, "head_dim") && !(*member(cfg, "head_dim")).is_null()) {
        const int64_t hd = get_int(cfg, "head_dim", origin, 1, kMaxDim);
        LB_CHECK(hd == hp.n_embd / hp.n_head,
                 "%s: key 'head_dim' = %lld, but hidden_size / num_attention_heads = %lld (lowbit needs them equal)",
                 origin.c_str(), (long long)hd, (long long)(hp.n_embd / hp.n_head));
    }
    hp.rms_eps = float(get_pos(cfg, "rms_norm_eps", origin, "", 1.0, 1e-6));
    hp.rope_theta = float(get_pos(cfg, "rope_theta", origin, "", 1e12, 10000.0));
    hp.rope_freq_scale = rope_freq_scale(cfg, "rope_scaling", origin);
    if (const json* rp = member(cfg, "rope_parameters"); rp && !rp->is_null()) {  // transformers >= 5
        LB_CHECK(rp->is_object(), "%s: key 'rope_parameters': expected an object, found %s", origin.c_str(),
                 rp->type_name());
        hp.rope_theta = float(get_pos(*rp, "rope_theta", origin, "rope_parameters.", 1e12, double(hp.rope_theta)));
        if (hp.rope_freq_scale == 1.0f) hp.rope_freq_scale = rope_freq_scale(cfg, "rope_parameters", origin);
    }
    hp.rope_mode = rope_neox;
    hp.tied_output = get_bool(cfg, "tie_word_embeddings", origin, false);
    try {
        hp.validate();
    } catch (const Error& e) {
        throw Error(origin + ": " + e.what());
    }
    return c;
}

HfConfig read_hf_config(const std::string& path) {
    struct stat st;
    std::string file = path;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) file = path + "/config.json";
    return parse_hf_config(read_text_file(file), file);
}

LlamaHParams hf_llama_hparams(const std::string& text, const std::string& origin) {
    return parse_hf_config(text, origin).hp;
}

// ---------------------------------------------------------------------------------------------------
// load_hf_tokenizer

namespace {

// "<s>" or {"content": "<s>", ...} (AddedToken, also with "__type"); nullopt for null / absent /
std::optional<std::string> token_name(const json& obj, const char* key, const std::string& origin) {
    const json* v = member(obj, key);
    if (!v || v->is_null()) return std::nullopt;
    if (v->is_string()) {  // "" (LLaMA-1 era tokenizer_config.json files say bos_token "") = not given
        if (v->get_ref<const std::string&>().empty()) return std::nullopt;
        return v->get<std::string>();
    }
    LB_CHECK(v->is_object() && member(*v, "content") && (*member(*v, "content")).is_string(),
             "%s: key '%s': expected a token string or an object with a string 'content', found %s", origin.c_str(),
             key, v->dump().substr(0, 60).c_str());
    return (*member(*v, "content")).get<std::string>();
}

int32_t find_token(const TokenizerData& d, const std::string& name, const std::string& origin, const char* key) {
    for (size_t i = 0; i < d.tokens.size(); i++)
        if (d.tokens[i] == name) return int32_t(i);
    throw Error(origin + ": key '" + key + "': token '" + name + "' is not in the vocabulary");
}

// Adds / checks the tokens of added_tokens_decoder (tokenizer_config.json) or added_tokens.json.
void apply_added(TokenizerData& d, std::vector<std::pair<int64_t, std::pair<std::string, bool>>> added,
                 const std::string& origin) {
    std::sort(added.begin(), added.end());
    for (const auto& [id, tok] : added) {
        const auto& [content, special] = tok;
        const size_t n = d.tokens.size();
        LB_CHECK(id >= 0 && uint64_t(id) <= n,
                 "%s: added token '%s' has id %lld, but the vocabulary has %zu tokens (ids must follow without gaps)",
                 origin.c_str(), content.c_str(), (long long)id, n);
        const int32_t ty = int32_t(special ? TokenType::control : TokenType::user_defined);
        if (size_t(id) < n) {
            LB_CHECK(d.tokens[size_t(id)] == content,
                     "%s: added token '%s' has id %lld, which is '%s' in the vocabulary", origin.c_str(),
                     content.c_str(), (long long)id, d.tokens[size_t(id)].c_str());
            if (!d.types.empty() && d.types[size_t(id)] == int32_t(TokenType::normal)) d.types[size_t(id)] = ty;
            continue;
        }
        if (d.types.empty()) d.types.assign(n, int32_t(TokenType::normal));
        d.tokens.push_back(content);
        d.types.push_back(ty);
        if (!d.scores.empty()) d.scores.push_back(0.0f);
    }
}

std::optional<int32_t> generation_id(const json& g, const char* key, const std::string& origin) {
    const json* v = member(g, key);
    if (!v || v->is_null()) return std::nullopt;
    if (v->is_array()) {  // e.g. Llama 3 Instruct: [128001, 128009]: the first is taken
        if (v->empty()) return std::nullopt;
        v = &(*v)[0];
    }
    LB_CHECK(v->is_number_integer() && v->get<int64_t>() >= 0 && v->get<int64_t>() < (int64_t(1) << 30),
             "%s: key '%s': expected a token id, found %s", origin.c_str(), key, v->dump().substr(0, 40).c_str());
    return int32_t(v->get<int64_t>());
}

bool looks_like_tiktoken(const std::string& bytes) {
    const size_t nl = bytes.find('\n');
    const std::string line = bytes.substr(0, nl == std::string::npos ? bytes.size() : nl);
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size()) return false;
    for (size_t i = 0; i < sp; i++)
        if (!std::isalnum(uint8_t(line[i])) && line[i] != '+' && line[i] != '/' && line[i] != '=') return false;
    for (size_t i = sp + 1; i < line.size(); i++)
        if (!std::isdigit(uint8_t(line[i]))) return false;
    return true;
}

}  // namespace

HfTokenizer load_hf_tokenizer(const std::string& dir) {
    struct stat st;
    LB_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "%s: not a directory", dir.c_str());
    HfTokenizer out;
    std::vector<std::string> used;
    auto path = [&](const char* name) { return dir + "/" + name; };
    std::optional<json> cfg, stm, gen;
    auto load = [&](const char* name, std::optional<json>& j) {
        if (!hf::is_file(path(name))) return;
        j = hf::parse_json(read_text_file(path(name)), path(name));
        LB_CHECK(j->is_object(), "%s: expected a JSON object, found %s", path(name).c_str(), j->type_name());
        used.push_back(path(name));
    };

    // the vocabulary
    TokenizerData d;
    bool have = false;
    if (hf::is_file(path("tokenizer.model"))) {
        const std::string bytes = read_text_file(path("tokenizer.model"));
        if (!bytes.empty() && bytes[0] != '\x0a' && looks_like_tiktoken(bytes))
            d = Tokenizer::load_llama3(path("tokenizer.model")).data();
        else
            d = Tokenizer::from_sentencepiece(bytes, path("tokenizer.model")).data();
        have = true;
        used.push_back(path("tokenizer.model"));
    } else if (hf::is_file(path("tokenizer.json"))) {
        d = hf_tokenizer_json_data(read_text_file(path("tokenizer.json")), path("tokenizer.json"));
        have = true;
        used.push_back(path("tokenizer.json"));
    }
    load("tokenizer_config.json", cfg);
    load("special_tokens_map.json", stm);
    load("generation_config.json", gen);

    if (have) {
        // added tokens
        if (cfg) {
            if (const json* atd = member(*cfg, "added_tokens_decoder"); atd && !atd->is_null()) {
                const std::string o = path("tokenizer_config.json");
                LB_CHECK(atd->is_object(), "%s: key 'added_tokens_decoder': expected an object, found %s", o.c_str(),
                         atd->type_name());
                std::vector<std::pair<int64_t, std::pair<std::string, bool>>> added;
                for (auto it = atd->begin(); it != atd->end(); ++it) {
                    const std::string& k = it.key();
                    char* end = nullptr;
                    errno = 0;
                    const long long id = std::strtoll(k.c_str(), &end, 10);
                    LB_CHECK(!k.empty() && *end == 0 && errno == 0 && id >= 0 && id < (1 << 30),
                             "%s: key 'added_tokens_decoder': '%s' is not a token id", o.c_str(), k.c_str());
                    const json& v = it.value();
                    const json* c = member(v, "content");
                    LB_CHECK(c && c->is_string(), "%s: key 'added_tokens_decoder.%s.content': expected a string",
                             o.c_str(), k.c_str());
                    added.push_back({id, {c->get<std::string>(), get_bool(v, "special", o, false)}});
                }
                apply_added(d, std::move(added), o);
            }
        }
        if (hf::is_file(path("added_tokens.json"))) {
            const std::string o = path("added_tokens.json");
            const json a = hf::parse_json(read_text_file(o), o);
            LB_CHECK(a.is_object(), "%s: expected an object {token: id}, found %s", o.c_str(), a.type_name());
            std::vector<std::pair<int64_t, std::pair<std::string, bool>>> added;
            for (auto it = a.begin(); it != a.end(); ++it) {
                LB_CHECK(it.value().is_number_integer(), "%s: key '%s': expected a token id, found %s", o.c_str(),
                         it.key().c_str(), it.value().type_name());
                // added_tokens.json does not say which are special: keep a token the decoder map
                // already typed, else user-defined
                added.push_back({it.value().get<int64_t>(), {it.key(), false}});
            }
            apply_added(d, std::move(added), o);
            used.push_back(o);
        }

        // special ids: the first source that names one wins (see the header)
        struct Slot {
            const char* key;
            int32_t* id;
            bool set = false;
        };
        Slot slots[3] = {{"bos_token", &d.bos}, {"eos_token", &d.eos}, {"unk_token", &d.unk}};
        for (const auto& [j, name] : {std::pair<std::optional<json>*, const char*>{&stm, "special_tokens_map.json"},
                                      {&cfg, "tokenizer_config.json"}}) {
            if (!*j) continue;
            for (Slot& s : slots) {
                if (s.set) continue;
                if (auto tok = token_name(**j, s.key, path(name))) {
                    *s.id = find_token(d, *tok, path(name), s.key);
                    s.set = true;
                }
            }
        }
        if (gen) {
            const std::string o = path("generation_config.json");
            if (!slots[0].set && d.bos < 0)
                if (auto id = generation_id(*gen, "bos_token_id", o)) d.bos = *id;
            if (!slots[1].set && d.eos < 0)
                if (auto id = generation_id(*gen, "eos_token_id", o)) d.eos = *id;
        }
        if (cfg && member(*cfg, "add_bos_token") && !(*member(*cfg, "add_bos_token")).is_null())
            d.add_bos = get_bool(*cfg, "add_bos_token", path("tokenizer_config.json"), d.add_bos);
    }

    // chat template
    if (hf::is_file(path("chat_template.jinja"))) {
        out.chat_template = read_text_file(path("chat_template.jinja"));
        used.push_back(path("chat_template.jinja"));
    } else if (cfg && member(*cfg, "chat_template") && !(*member(*cfg, "chat_template")).is_null()) {
        const std::string o = path("tokenizer_config.json");
        const json& ct = *member(*cfg, "chat_template");
        if (ct.is_string()) {
            out.chat_template = ct.get<std::string>();
        } else {
            LB_CHECK(ct.is_array(),
                     "%s: key 'chat_template': expected a string or a list of {name, template}, found %s", o.c_str(),
                     ct.type_name());
            bool found = false;
            for (const json& e : ct) {
                LB_CHECK(e.is_object() && member(e, "name") && (*member(e, "name")).is_string() &&
                             member(e, "template") && (*member(e, "template")).is_string(),
                         "%s: key 'chat_template': an entry is not {\"name\": string, \"template\": string}",
                         o.c_str());
                if ((*member(e, "name")).get<std::string>() == "default") {
                    out.chat_template = (*member(e, "template")).get<std::string>();
                    found = true;
                }
            }
            LB_CHECK(found, "%s: key 'chat_template': the list of named templates has no 'default'", o.c_str());
        }
    } else if (hf::is_file(path("chat_template.json"))) {
        const std::string o = path("chat_template.json");
        const json j = hf::parse_json(read_text_file(o), o);
        out.chat_template = hf::str_or_empty(j, "chat_template", o, "");
        used.push_back(o);
    }

    for (size_t i = 0; i < used.size(); i++) out.origin += (i ? " + " : "") + used[i];
    if (out.origin.empty()) out.origin = dir + ": no tokenizer files";
    if (have) {
        try {
            Tokenizer::from_data(d);  // validates everything (ids in range, merges, ...)
        } catch (const Error& e) {
            throw Error(out.origin + ": " + e.what());
        }
        out.data = std::move(d);
    }
    return out;
}

}  // namespace lb
