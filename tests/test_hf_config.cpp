// test_hf_config.cpp: the Hugging Face directory readers (formats/hf_config.h): config.json of the
// models the specs name (real publisher values) and every error path; tokenizer.json against ids
// produced by HF itself (fixtures/hf, written by fixtures/gen_hf_tokenizer.py): GPT-2 on llama.cpp's
// 46 conformance vectors, SmolLM2-135M-Instruct and LLaMA-2 (LlamaTokenizerFast's byte-fallback BPE
// form, also checked against lowbit's own SentencePiece reader of the original tokenizer.model);
// directory discovery and the precedence of the special-token files; malformed tokenizer.json.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/hf_config.h"
#include "models/chat.h"
#include "models/tokenizer.h"
#include "test_data.h"

using namespace lb;
using nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {

const std::string kShared = "../../shared/data/";
const std::string kFix = "fixtures/hf/";

using lb_test::read_all;

void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, path);
    f << text;
}

// a fresh empty directory, removed with its files at scope exit
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/lb_hf_XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        const std::string cmd = "rm -rf '" + path + "'";
        if (std::system(cmd.c_str()) != 0) MESSAGE("could not remove " << path);
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

// ---- config.json of real models (the publishers' files, trimmed of keys lowbit does not read) ----

// meta-llama/Llama-2-7b-hf
const char* kLlama2_7b = R"({"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
  "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": true,
  "vocab_size": 32000})";

// LLaMA-1 7B as first converted for transformers 4.27 (old keys: LLaMAForCausalLM, max_sequence_length; no
// num_key_value_heads, rope_theta, max_position_embeddings, tie_word_embeddings; the notorious bos 0 / eos 1)
const char* kLlama1_7b = R"({"architectures": ["LLaMAForCausalLM"], "bos_token_id": 0, "eos_token_id": 1,
  "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008, "initializer_range": 0.02,
  "max_sequence_length": 2048, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "pad_token_id": -1, "rms_norm_eps": 1e-06, "torch_dtype": "float16", "transformers_version": "4.27.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

// codellama/CodeLlama-34b-hf
const char* kCodeLlama34b = R"({"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 8192, "initializer_range": 0.02, "intermediate_size": 22016,
  "max_position_embeddings": 16384, "model_type": "llama", "num_attention_heads": 64, "num_hidden_layers": 48,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 1000000,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.32.0.dev0", "use_cache": true,
  "vocab_size": 32000})";

// openlm-research/open_llama_3b
const char* kOpenLlama3b = R"({"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 3200, "initializer_range": 0.02, "intermediate_size": 8640,
  "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 26,
  "pad_token_id": 0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false, "torch_dtype": "float16",
  "transformers_version": "4.28.0.dev0", "use_cache": true, "vocab_size": 32000})";

// TinyLlama/TinyLlama-1.1B-Chat-v1.0 (GQA 32 / 4)
const char* kTinyLlama = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
  "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 22,
  "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.35.0", "use_cache": true,
  "vocab_size": 32000})";

// meta-llama/Meta-Llama-3-8B
const char* kLlama3_8b = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 500000.0, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0", "use_cache": true, "vocab_size": 128256})";

// HuggingFaceTB/SmolLM2-135M-Instruct (tied embeddings, head_dim given)
const char* kSmolLM2 = R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "head_dim": 64, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
  "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 9,
  "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 49152})";

// OneBit packed checkpoint (shared/formats/onebit.md 4.2: model_type bitllama, float32, LLaMA-7B keys)
const char* kOneBit = R"({"architectures": ["BitLlamaForCausalLMInf"], "attention_bias": false, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
  "max_position_embeddings": 2048, "model_type": "bitllama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 32, "pad_token_id": 0, "pretraining_tp": 1, "rms_norm_eps": 1e-06, "rope_scaling": null,
  "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32", "transformers_version": "4.35.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

// A small config to mutate in the error tests
json small_config() {
    return json::parse(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 172,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
      "max_position_embeddings": 256, "rms_norm_eps": 1e-5})");
}

void check_config_error(const json& cfg, const std::string& needle) {
    CAPTURE(cfg.dump());
    try {
        hf_llama_hparams(cfg.dump(), "DIR/config.json");
        FAIL("no error; expected one containing: " << needle);
    } catch (const Error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find("DIR/config.json") != std::string::npos);
        CHECK(msg.find(needle) != std::string::npos);
    }
}

template <class F>
void check_throws(F f, const std::string& needle) {
    try {
        f();
        FAIL("no error; expected one containing: " << needle);
    } catch (const Error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find(needle) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("config.json of real LLaMA-family models") {
    const LlamaHParams l2 = hf_llama_hparams(kLlama2_7b, "llama2/config.json");
    CHECK(l2.n_vocab == 32000);
    CHECK(l2.n_embd == 4096);
    CHECK(l2.n_ff == 11008);
    CHECK(l2.n_layer == 32);
    CHECK(l2.n_head == 32);
    CHECK(l2.n_head_kv == 32);
    CHECK(l2.n_ctx_train == 4096);
    CHECK(l2.rms_eps == 1e-5f);
    CHECK(l2.rope_theta == 10000.0f);
    CHECK(l2.rope_freq_scale == 1.0f);
    CHECK(l2.rope_mode == rope_neox);
    CHECK(!l2.tied_output);

    // LLaMA-1: the old keys and HF's defaults for the missing ones
    const HfConfig l1 = parse_hf_config(kLlama1_7b, "llama1/config.json");
    CHECK(l1.model_type == "llama");
    CHECK(l1.torch_dtype == "float16");
    CHECK(l1.hp.n_ctx_train == 2048);  // max_sequence_length
    CHECK(l1.hp.n_head_kv == 32);
    CHECK(l1.hp.rms_eps == 1e-6f);
    CHECK(l1.hp.rope_theta == 10000.0f);
    CHECK(!l1.hp.tied_output);
    CHECK(l1.raw["pad_token_id"] == -1);  // the raw json is kept for importers

    const LlamaHParams cl = hf_llama_hparams(kCodeLlama34b, "codellama/config.json");
    CHECK(cl.rope_theta == 1e6f);
    CHECK(cl.n_head == 64);
    CHECK(cl.n_head_kv == 8);
    CHECK(cl.n_ff == 22016);
    CHECK(cl.n_ctx_train == 16384);

    const LlamaHParams ol = hf_llama_hparams(kOpenLlama3b, "open_llama/config.json");
    CHECK(ol.n_embd == 3200);
    CHECK(ol.head_dim() == 100);
    CHECK(ol.n_layer == 26);
    CHECK(ol.rms_eps == 1e-6f);

    const LlamaHParams tl = hf_llama_hparams(kTinyLlama, "tinyllama/config.json");
    CHECK(tl.n_head_kv == 4);
    CHECK(tl.kv_dim() == 256);
    CHECK(tl.n_layer == 22);

    const LlamaHParams l3 = hf_llama_hparams(kLlama3_8b, "llama3/config.json");
    CHECK(l3.n_vocab == 128256);
    CHECK(l3.rope_theta == 500000.0f);
    CHECK(l3.n_head_kv == 8);
    CHECK(l3.n_ff == 14336);

    const LlamaHParams sm = hf_llama_hparams(kSmolLM2, "smollm2/config.json");
    CHECK(sm.tied_output);
    CHECK(sm.n_head == 9);
    CHECK(sm.n_head_kv == 3);
    CHECK(sm.head_dim() == 64);
    CHECK(sm.rope_theta == 100000.0f);
    CHECK(sm.n_layer == 30);

    const HfConfig ob = parse_hf_config(kOneBit, "onebit/config.json");
    CHECK(ob.model_type == "bitllama");
    CHECK(ob.torch_dtype == "float32");
    CHECK(ob.hp.n_embd == 4096);
    CHECK(ob.raw["architectures"][0] == "BitLlamaForCausalLMInf");
}

TEST_CASE("config.json: rope scaling, transformers 5 keys, no model_type, read from a directory") {
    json c = small_config();
    c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    CHECK(hf_llama_hparams(c.dump(), "c").rope_freq_scale == 0.25f);
    c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2}};
    CHECK(hf_llama_hparams(c.dump(), "c").rope_freq_scale == 0.5f);
    c["rope_scaling"] = {{"rope_type", "default"}};
    CHECK(hf_llama_hparams(c.dump(), "c").rope_freq_scale == 1.0f);

    json v5 = small_config();  // transformers >= 5: rope_parameters, dtype
    v5["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
    v5["dtype"] = "bfloat16";
    const HfConfig h5 = parse_hf_config(v5.dump(), "c");
    CHECK(h5.hp.rope_theta == 500000.0f);
    CHECK(h5.torch_dtype == "bfloat16");
    v5["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "linear"}, {"factor", 8.0}};
    CHECK(hf_llama_hparams(v5.dump(), "c").rope_freq_scale == 0.125f);

    json old = small_config();  // architectures only
    old.erase("model_type");
    old["architectures"] = {"LLaMAForCausalLM"};
    CHECK(parse_hf_config(old.dump(), "c").model_type == "llama");
    old["hidden_size"] = 64.0;  // an integral float is an integer
    CHECK(hf_llama_hparams(old.dump(), "c").n_embd == 64);

    const HfConfig sm = read_hf_config(kFix + "smollm2");  // the committed copy of SmolLM2's config.json
    CHECK(sm.hp.tied_output);
    CHECK(sm.hp.n_vocab == 49152);
    CHECK(sm.torch_dtype == "bfloat16");

    TempDir d;
    write_file(d.file("config.json"), kTinyLlama);
    CHECK(read_hf_config(d.path).hp.n_head_kv == 4);
    CHECK(read_hf_config(d.file("config.json")).origin == d.file("config.json"));
    check_throws([&] { read_hf_config(d.file("nope.json")); }, "nope.json: cannot open");
}

TEST_CASE("config.json: every missing, mistyped or absurd field is an error naming file and key") {
    for (const char* key :
         {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
        json c = small_config();
        c.erase(key);
        check_config_error(c, std::string("key '") + key + "' is missing");
        c[key] = "64";
        check_config_error(c, std::string("key '") + key + "': expected an integer, found string");
        c[key] = -1;
        check_config_error(c, std::string("key '") + key + "' = -1");
        c[key] = 0;
        check_config_error(c, std::string("key '") + key + "' = 0");
        c[key] = 1.5;
        check_config_error(c, std::string("key '") + key + "': expected an integer");
        c[key] = 1e300;
        check_config_error(c, std::string("key '") + key + "': expected an integer");
        c[key] = 18446744073709551615ull;
        check_config_error(c, std::string("key '") + key + "' = 18446744073709551615");
    }
    auto with = [](const char* key, const json& v) {
        json c = small_config();
        c[key] = v;
        return c;
    };
    check_config_error(with("num_key_value_heads", 3), "key 'num_key_value_heads' = 3 does not divide");
    check_config_error(with("num_key_value_heads", "2"), "key 'num_key_value_heads': expected an integer");
    check_config_error(with("num_attention_heads", 5), "key 'hidden_size' = 64 is not a multiple");
    check_config_error(with("head_dim", 32), "key 'head_dim' = 32, but hidden_size / num_attention_heads = 16");
    check_config_error(with("rms_norm_eps", -1e-5), "key 'rms_norm_eps' = -1e-05");
    check_config_error(with("rms_norm_eps", "1e-5"), "key 'rms_norm_eps': expected a number, found string");
    check_config_error(with("rms_norm_eps", 2.0), "key 'rms_norm_eps' = 2");
    check_config_error(with("rope_theta", 0), "key 'rope_theta' = 0");
    check_config_error(with("rope_theta", true), "key 'rope_theta': expected a number, found boolean");
    check_config_error(with("max_position_embeddings", 0), "key 'max_position_embeddings' = 0");
    check_config_error(with("tie_word_embeddings", "yes"), "key 'tie_word_embeddings': expected true or false");
    check_config_error(with("model_type", "mistral"), "key 'model_type': 'mistral' is not supported");
    check_config_error(with("model_type", 7), "model_type: expected a string, found number");
    check_config_error(with("hidden_act", "gelu"), "key 'hidden_act': 'gelu' is not supported");
    check_config_error(with("attention_bias", true), "key 'attention_bias' is true");
    check_config_error(with("mlp_bias", true), "key 'mlp_bias' is true");
    check_config_error(with("rope_scaling", "linear"), "key 'rope_scaling': expected an object or null");
    check_config_error(with("rope_scaling", json{{"type", "linear"}}), "key 'rope_scaling.factor' is missing");
    check_config_error(with("rope_scaling", json{{"type", "linear"}, {"factor", 0}}), "key 'rope_scaling.factor' = 0");
    // Llama 3.1's scaling, and the other non-linear kinds: named as unsupported
    for (const char* t : {"llama3", "dynamic", "yarn", "longrope"})
        check_config_error(with("rope_scaling", json{{"rope_type", t}, {"factor", 8.0}}),
                           std::string("rope scaling type '") + t + "' is not supported");
    check_config_error(with("rope_parameters", json{{"rope_type", "yarn"}, {"factor", 4.0}}),
                       "key 'rope_parameters': rope scaling type 'yarn' is not supported");
    json no_arch = small_config();
    no_arch.erase("model_type");
    check_config_error(no_arch, "key 'model_type' is missing");
    no_arch["architectures"] = {"MistralForCausalLM"};
    check_config_error(no_arch, "architectures[0] 'MistralForCausalLM' is no LLaMA");
    check_throws([] { hf_llama_hparams("{\"hidden_size\": 64,", "DIR/config.json"); },
                 "DIR/config.json: not valid JSON");
    check_throws([] { hf_llama_hparams("[1, 2]", "DIR/config.json"); },
                 "DIR/config.json: expected a JSON object, found array");
    check_throws([] { hf_llama_hparams("", "DIR/config.json"); }, "DIR/config.json: not valid JSON");
}

// ---- tokenizers ---------------------------------------------------------------------------------

namespace {

using Case = lb_test::VocabVector;

// every string of an expected-results file through t: its ids, and the same mapped to the full
// vocabulary (id_map); more(i, string, ids, full ids) adds a test's own checks
template <class F>
void check_expected(const Tokenizer& t, const json& e, F&& more) {
    const Ids id_map = e["id_map"].get<Ids>();
    for (size_t i = 0; i < e["strings"].size(); i++) {
        const std::string s = e["strings"][i].get<std::string>();
        CAPTURE(s);
        const Ids got = t.encode(s, false, true);
        CHECK(got == e["ids"][i].get<Ids>());
        Ids full;
        for (int32_t id : got) full.push_back(id_map[size_t(id)]);
        CHECK(full == e["full_ids"][i].get<Ids>());
        more(i, s, got, full);
    }
}

std::vector<Case> gpt2_vectors() {
    return lb_test::load_vocab_vectors(kShared + "llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
}

json expected(const std::string& name) { return json::parse(read_all(kFix + name + "_expected.json")); }

// GPT-2's tokenizer.json as HF tokenizers wrote it (tests/fixtures/gen_hf_tokenizer.py) for the
// vocabulary and merges of llama.cpp's GPT-2 GGUF: committed without those two (1.5 MB), which
// are put back here from the same GGUF (vocab {token: id}, merges ["left", "right"] pairs)
const std::string& gpt2_tokenizer_json() {
    static const std::string text = [] {
        json j = json::parse(read_all(kFix + "gpt2/tokenizer.skeleton.json"));
        const TokenizerData g = Tokenizer::load_gguf(kShared + "llama.cpp-vocab/ggml-vocab-gpt-2.gguf").data();
        json vocab = json::object(), merges = json::array();
        for (size_t i = 0; i < g.tokens.size(); ++i) vocab[g.tokens[i]] = i;
        for (const std::string& m : g.merges) {
            const size_t sp = m.find(' ');
            merges.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
        }
        j["model"]["vocab"] = vocab;
        j["model"]["merges"] = merges;
        return j.dump();
    }();
    return text;
}

}  // namespace

TEST_CASE("tokenizer.json: GPT-2 (written by HF tokenizers for GPT-2's vocab and merges) on llama.cpp's vectors") {
    const TokenizerData d = hf_tokenizer_json_data(gpt2_tokenizer_json(), "gpt2/tokenizer.json");
    CHECK(d.kind == "bpe");
    CHECK(d.pretokenizer == "gpt2");
    CHECK(d.tokens.size() == 50257);
    CHECK(d.merges.size() == 50000);
    CHECK(d.types[50256] == int32_t(TokenType::control));  // <|endoftext|>
    const Tokenizer t = Tokenizer::from_data(d);
    for (const Case& c : gpt2_vectors()) {
        CAPTURE(c.text);
        CHECK(t.encode(c.text, false, true) == c.ids);
        CHECK(t.decode(c.ids) == c.text);
    }

    // a directory with only tokenizer.json: no bos/eos (GPT-2's tokenizer.json names none)
    TempDir dir;
    write_file(dir.file("tokenizer.json"), gpt2_tokenizer_json());
    const HfTokenizer h = load_hf_tokenizer(dir.path);
    REQUIRE(h.data);
    CHECK(h.data->bos == -1);
    CHECK(!h.data->add_bos);
    CHECK(h.chat_template.empty());
    CHECK(h.origin == dir.file("tokenizer.json"));
}

TEST_CASE("tokenizer.json: SmolLM2-135M-Instruct (reduced, ids from HF tokenizers) with its tokenizer_config") {
    const HfTokenizer h = load_hf_tokenizer(kFix + "smollm2");
    REQUIRE(h.data);
    const TokenizerData& d = *h.data;
    CHECK(d.kind == "bpe");
    CHECK(d.pretokenizer == "smollm");
    CHECK(d.bos == 1);  // <|im_start|>, tokenizer_config.json
    CHECK(d.eos == 2);  // <|im_end|>
    CHECK(d.unk == 0);  // <|endoftext|>
    CHECK(!d.add_bos);
    CHECK(d.types[0] == int32_t(TokenType::control));
    CHECK(chat_template_detect(h.chat_template) == ChatTemplate::chatml);
    CHECK(h.origin.find("tokenizer_config.json") != std::string::npos);
    const Tokenizer t = Tokenizer::from_data(d);
    const json e = expected("smollm2");
    REQUIRE(e["strings"].size() == e["ids"].size());
    for (size_t i = 0; i < e["strings"].size(); i++) {
        const std::string s = e["strings"][i].get<std::string>();
        CAPTURE(s);
        CHECK(t.encode(s, false, true) == e["ids"][i].get<Ids>());
        if (s.find("<|") == std::string::npos) CHECK(t.decode(e["ids"][i].get<Ids>()) == s);
    }
}

TEST_CASE("tokenizer.json: LLaMA-2 as LlamaTokenizerFast writes it (byte-fallback BPE -> spm)") {
    const std::string text = read_all(kFix + "llama2/tokenizer.json");
    const TokenizerData d = hf_tokenizer_json_data(text, "llama2/tokenizer.json");
    CHECK(d.kind == "spm");
    CHECK(d.add_dummy_prefix);
    CHECK(!d.remove_extra_whitespaces);
    CHECK(d.unk == 0);
    CHECK(d.bos == 1);  // the post_processor's <s> $A
    CHECK(d.add_bos);
    CHECK(d.types[0] == int32_t(TokenType::unknown));
    CHECK(d.types[1] == int32_t(TokenType::control));
    CHECK(d.types[3] == int32_t(TokenType::byte));  // <0x00>
    const Tokenizer t = Tokenizer::from_data(d);
    // the original tokenizer.model through lowbit's SentencePiece reader (checked against
    // libsentencepiece in test_spm_oracle) gives the same tokens
    const Tokenizer sp = Tokenizer::load_sentencepiece(kShared + "llama2-tokenizer/tokenizer.model");
    check_expected(t, expected("llama2"), [&](size_t, const std::string& s, const Ids& got, const Ids& full) {
        if (s.find("  ") == std::string::npos) CHECK(sp.encode(s, false, true) == full);  // .model collapses spaces
        CHECK(t.decode(got) == s);
    });
}

TEST_CASE("tokenizer.json: Llama 3 as transformers converts it (Split regex, ignore_merges; reduced)") {
    const TokenizerData d = hf_tokenizer_json_data(read_all(kFix + "llama3/tokenizer.json"), "llama3/tokenizer.json");
    CHECK(d.kind == "bpe");
    CHECK(d.pretokenizer == "llama3");
    CHECK(d.merges.empty());  // ignore_merges: rank by id, whole words first
    REQUIRE(d.bos >= 0);
    CHECK(d.tokens[size_t(d.bos)] == "<|begin_of_text|>");  // the post_processor's template
    CHECK(d.add_bos);
    const Tokenizer t = Tokenizer::from_data(d);
    const json e = expected("llama3");
    // llama.cpp's llama-bpe vectors: the first 46 strings
    const std::vector<Case> cpp = lb_test::load_vocab_vectors(kShared + "llama.cpp-vocab/ggml-vocab-llama-bpe.gguf");
    REQUIRE(e["strings"].size() == 46 + 15);
    check_expected(t, e, [&](size_t i, const std::string& s, const Ids&, const Ids& full) {
        if (i >= 46) return;
        CHECK(s == cpp[i].text);
        CHECK(full == cpp[i].ids);
    });
}

TEST_CASE("tokenizer.json: merges as strings and as pairs; Metaspace form; ignore_merges") {
    // a toy byte-level BPE: a b c, merges "a b" then "ab c"
    auto toy = [](const json& merges) {
        json j;
        j["model"] = {{"type", "BPE"},
                      {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"abc", 4}, {"Ġ", 5}}},
                      {"merges", merges}};
        j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
        return j;
    };
    const TokenizerData s = hf_tokenizer_json_data(toy(json::array({"a b", "ab c"})).dump(), "t");
    const TokenizerData p =
        hf_tokenizer_json_data(toy(json::array({json::array({"a", "b"}), json::array({"ab", "c"})})).dump(), "t");
    CHECK(s.merges == std::vector<std::string>{"a b", "ab c"});
    CHECK(p.merges == s.merges);
    CHECK(Tokenizer::from_data(p).encode("abc ab", false) == Ids{4, 5, 3});

    // what transformers writes when it builds a tokenizer.json from a GGUF vocabulary:
    // byte_fallback true next to a ByteLevel pre-tokenizer, and an empty normalizer Sequence. The
    // byte-level alphabet covers every byte, so byte fallback never applies: the same byte-level BPE.
    json gg = toy(json::array({"a b", "ab c"}));
    gg["model"]["byte_fallback"] = true;
    gg["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array()}};
    const TokenizerData g = hf_tokenizer_json_data(gg.dump(), "t");
    CHECK(g.kind == "bpe");
    CHECK(g.pretokenizer == "gpt2");
    CHECK(Tokenizer::from_data(g).encode("abc ab", false) == Ids{4, 5, 3});
    gg["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}};
    CHECK_THROWS_WITH_AS(hf_tokenizer_json_data(gg.dump(), "t"), doctest::Contains("normalizer"), Error);

    // ignore_merges with merges in id order: rank-by-id (tiktoken's rule)
    json im = toy(json::array({"a b", "ab c"}));
    im["model"]["ignore_merges"] = true;
    const TokenizerData r = hf_tokenizer_json_data(im.dump(), "t");
    CHECK(r.merges.empty());
    CHECK(Tokenizer::from_data(r).encode("abc", false) == Ids{4});

    // the non-legacy LlamaTokenizerFast form: no normalizer, Metaspace pre-tokenizer
    json sp = json::parse(read_all(kFix + "llama2/tokenizer.json"));
    const Ids want = Tokenizer::from_data(hf_tokenizer_json_data(sp.dump(), "t")).encode("Hello world", false);
    sp["normalizer"] = nullptr;
    sp["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
    const TokenizerData m = hf_tokenizer_json_data(sp.dump(), "t");
    CHECK(m.add_dummy_prefix);
    CHECK(Tokenizer::from_data(m).encode("Hello world", false) == want);
    sp["pre_tokenizer"]["prepend_scheme"] = "never";
    CHECK(!hf_tokenizer_json_data(sp.dump(), "t").add_dummy_prefix);
}

TEST_CASE("tokenizer.json: malformed or unsupported input is an error naming file and key") {
    const json good = json::parse(read_all(kFix + "smollm2/tokenizer.json"));
    auto err = [](const json& j, const std::string& needle) {
        check_throws([&] { hf_tokenizer_json_data(j.dump(), "X/tokenizer.json"); }, needle);
        check_throws([&] { hf_tokenizer_json_data(j.dump(), "X/tokenizer.json"); }, "X/tokenizer.json");
    };
    check_throws([] { hf_tokenizer_json_data("{\"model\": ", "X/tokenizer.json"); },
                 "X/tokenizer.json: not valid JSON");
    check_throws([] { hf_tokenizer_json_data("42", "X/tokenizer.json"); }, "expected a JSON object, found number");
    // deep nesting is refused before nlohmann's recursive dump / destructor could overflow the stack
    check_throws([] { hf_tokenizer_json_data(std::string(100000, '[') + std::string(100000, ']'), "X/t.json"); },
                 "X/t.json: not valid JSON: nested deeper than 64 levels");
    check_throws([] { hf_llama_hparams("{\"a\": \"[[[[\\\"\", \"b\": " + std::string(65, '[') + "}", "c.json"); },
                 "c.json: not valid JSON: nested deeper than 64 levels at byte 84");
    json j = good;
    j["model"]["type"] = "WordPiece";
    err(j, "model.type 'WordPiece' is not supported (supported: BPE)");
    j["model"]["type"] = "Unigram";
    err(j, "model.type 'Unigram' is not supported");
    j = good;
    j["model"].erase("type");
    err(j, "key 'model.type' is missing");
    j = good;
    j.erase("model");
    err(j, "key 'model' is missing");
    j = good;
    j["model"].erase("vocab");
    err(j, "key 'model.vocab' is missing");
    j["model"]["vocab"] = json::array();
    err(j, "key 'model.vocab': expected an object");
    j = good;
    j["model"]["vocab"]["Ġthe"] = "x";
    err(j, "model.vocab: token 'Ġthe': expected an integer id, found string");
    j = good;
    j["model"]["merges"].push_back(json::array({"Ġzz", "q"}));
    err(j, "names a token not in the vocabulary ('Ġzz')");
    j = good;
    j["model"]["merges"].push_back("a b c");
    err(j, "is not 'left right'");
    j["model"]["merges"] = json::array({json::array({"a"})});
    err(j, "is neither 'left right' nor");
    j = good;
    j["model"]["vocab"]["Ġnew"] = 100000;  // a gap, beyond the number of entries
    err(j, "token 'Ġnew' has id 100000, expected 0..");
    j = good;
    j["model"]["vocab"].erase("Ġthe");  // a gap inside
    j["model"]["vocab"]["Ġnew"] = good["model"]["vocab"].size();
    err(j, "no token has id");
    j = good;
    j["model"]["vocab"]["Ġdup"] = 20;  // id 20 twice
    err(j, "id 20 is both");
    j = good;
    j["model"]["vocab"]["Ġneg"] = -3;
    err(j, "has id -3");
    j = good;
    j["added_tokens"][0]["content"] = 5;
    err(j, "added_tokens[0]: expected");
    j = good;
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    err(j, "pre_tokenizer {\"type\":\"Whitespace\"} is not supported");
    j["pre_tokenizer"] = nullptr;
    err(j, "without a pre_tokenizer is not supported");
    j = good;
    j["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = false;
    err(j, "is not supported for byte-level BPE");
    j = good;
    j["normalizer"] = {{"type", "NFC"}};
    err(j, "normalizer {\"type\":\"NFC\"} is not supported");
    j = good;
    j["model"]["dropout"] = 0.1;
    err(j, "model.dropout 0.1 is not supported");
    j = good;
    j["model"]["continuing_subword_prefix"] = "##";
    err(j, "model.continuing_subword_prefix is not supported");
    j = good;
    j["model"]["merges"] = json::array();
    err(j, "key 'model.merges' is missing or empty");
    j = good;
    j["model"]["ignore_merges"] = true;
    std::swap(j["model"]["merges"][0], j["model"]["merges"][5]);
    err(j, "model.ignore_merges with merges not in the order");
    j = good;
    j["model"]["unk_token"] = "<nope>";
    err(j, "model.unk_token '<nope>' is not in the vocabulary");
    j = good;  // a vocabulary token outside the byte-to-unicode alphabet (from_data's check)
    j["model"]["vocab"]["a\u2581"] = j["model"]["vocab"].size();
    err(j, "outside the byte-to-unicode alphabet");
    json l = json::parse(read_all(kFix + "llama2/tokenizer.json"));
    l["normalizer"] = {{"type", "Lowercase"}};
    err(l, "is not supported for a byte-fallback BPE");
    l["normalizer"] = nullptr;
    l["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
    err(l, "pre_tokenizer {\"replacement\":\"_\",\"type\":\"Metaspace\"} is not supported");
}

TEST_CASE("load_hf_tokenizer: tokenizer.model, added tokens, precedence of the special-token files") {
    TempDir d;
    // no tokenizer files: no data, not an error; no directory: an error
    CHECK(!load_hf_tokenizer(d.path).data);
    check_throws([&] { load_hf_tokenizer(d.file("missing")); }, "missing: not a directory");
    write_file(d.file("tokenizer.model"), read_all(kShared + "llama2-tokenizer/tokenizer.model"));
    {
        const HfTokenizer h = load_hf_tokenizer(d.path);
        REQUIRE(h.data);
        CHECK(h.data->kind == "spm");
        CHECK(h.data->bos == 1);  // the SentencePiece model's own <s> / </s>
        CHECK(h.data->eos == 2);
        CHECK(h.data->add_bos);
    }
    // LLaMA-1 era files (the first transformers conversion, reused by GreenBit's LLaMA-1 repos):
    // empty token names and an empty special_tokens_map.json
    write_file(d.file("tokenizer_config.json"),
               R"({"bos_token": "", "eos_token": "", "model_max_length": 1000000000000000019884624838656,
                   "tokenizer_class": "LLaMATokenizer", "unk_token": ""})");
    write_file(d.file("special_tokens_map.json"), "{}");
    {
        const HfTokenizer h = load_hf_tokenizer(d.path);
        REQUIRE(h.data);
        CHECK(h.data->bos == 1);
        CHECK(h.data->eos == 2);
        CHECK(h.data->unk == 0);
    }
    std::remove(d.file("special_tokens_map.json").c_str());
    // generation_config.json only fills what the vocabulary leaves open; tokenizer_config.json
    // names tokens (AddedToken objects too), adds chat tokens and sets add_bos;
    // special_tokens_map.json wins over it
    write_file(d.file("generation_config.json"), R"({"bos_token_id": 0, "eos_token_id": [5, 2]})");
    CHECK(load_hf_tokenizer(d.path).data->eos == 2);
    write_file(d.file("tokenizer_config.json"), R"({
      "add_bos_token": false,
      "added_tokens_decoder": {
        "0": {"content": "<unk>", "special": true},
        "32001": {"content": "<|im_end|>", "special": true},
        "32000": {"content": "<|im_start|>", "special": true}},
      "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
      "eos_token": "<|im_end|>", "unk_token": null, "pad_token": null,
      "chat_template": [{"name": "tool_use", "template": "x"},
                        {"name": "default", "template": "{{ '<|im_start|>' }}"}]})");
    {
        const HfTokenizer h = load_hf_tokenizer(d.path);
        REQUIRE(h.data);
        CHECK(h.data->tokens.size() == 32002);
        CHECK(h.data->tokens[32001] == "<|im_end|>");
        CHECK(h.data->types[32000] == int32_t(TokenType::control));
        CHECK(h.data->eos == 32001);
        CHECK(h.data->bos == 1);
        CHECK(h.data->unk == 0);
        CHECK(!h.data->add_bos);
        CHECK(h.chat_template == "{{ '<|im_start|>' }}");
        const Tokenizer t = Tokenizer::from_data(*h.data);
        CHECK(t.encode("<|im_start|>hi<|im_end|>", false, true).front() == 32000);
        CHECK(t.encode("<|im_start|>hi<|im_end|>", false, true).back() == 32001);
    }
    write_file(d.file("special_tokens_map.json"), R"({"eos_token": {"content": "</s>"}, "bos_token": "<s>"})");
    CHECK(load_hf_tokenizer(d.path).data->eos == 2);
    write_file(d.file("chat_template.jinja"), "{% for m in messages %}[INST]{% endfor %}");
    CHECK(chat_template_detect(load_hf_tokenizer(d.path).chat_template) == ChatTemplate::llama2);

    // errors name the file and key
    write_file(d.file("special_tokens_map.json"), R"({"eos_token": "<|nope|>"})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "special_tokens_map.json: key 'eos_token': token '<|nope|>'");
    write_file(d.file("special_tokens_map.json"), R"({"eos_token": 7})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "special_tokens_map.json: key 'eos_token': expected a token");
    write_file(d.file("special_tokens_map.json"), "{}");
    write_file(d.file("tokenizer_config.json"), R"({"added_tokens_decoder": {"32005": {"content": "<x>"}}})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "tokenizer_config.json: added token '<x>' has id 32005");
    write_file(d.file("tokenizer_config.json"), R"({"added_tokens_decoder": {"5": {"content": "<x>"}}})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "added token '<x>' has id 5, which is '<0x02>'");
    write_file(d.file("tokenizer_config.json"), R"({"added_tokens_decoder": {"abc": {"content": "<x>"}}})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "'abc' is not a token id");
    std::remove(d.file("chat_template.jinja").c_str());
    write_file(d.file("tokenizer_config.json"), R"({"chat_template": [{"name": "rag", "template": "x"}]})");
    check_throws([&] { load_hf_tokenizer(d.path); },
                 "key 'chat_template': the list of named templates has no 'default'");
    write_file(d.file("tokenizer_config.json"), R"({"chat_template": 3})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "key 'chat_template': expected a string or a list");
    write_file(d.file("tokenizer_config.json"), R"({"add_bos_token": "yes"})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "key 'add_bos_token': expected true or false");
    write_file(d.file("tokenizer_config.json"), "{");
    check_throws([&] { load_hf_tokenizer(d.path); }, "tokenizer_config.json: not valid JSON");
    write_file(d.file("tokenizer_config.json"), "{}");
    write_file(d.file("generation_config.json"), R"({"eos_token_id": "2"})");
    std::remove(d.file("special_tokens_map.json").c_str());
    std::remove(d.file("tokenizer.model").c_str());
    write_file(d.file("tokenizer.json"), gpt2_tokenizer_json());
    check_throws([&] { load_hf_tokenizer(d.path); }, "generation_config.json: key 'eos_token_id': expected a token id");
    write_file(d.file("generation_config.json"), R"({"eos_token_id": 50256})");
    CHECK(load_hf_tokenizer(d.path).data->eos == 50256);  // GPT-2: only generation_config names it
    write_file(d.file("generation_config.json"), R"({"eos_token_id": 99999})");
    check_throws([&] { load_hf_tokenizer(d.path); }, "tokenizer eos id: 99999");
    write_file(d.file("tokenizer.model"), "garbage that is neither protobuf nor tiktoken");
    check_throws([&] { load_hf_tokenizer(d.path); }, "tokenizer.model");
}

TEST_CASE("load_hf_tokenizer: a tiktoken tokenizer.model is Meta's Llama 3 tokenizer") {
    TempDir d;
    write_file(d.file("tokenizer.model"), read_all(kShared + "llama3-tokenizer/tokenizer.model"));
    write_file(d.file("tokenizer_config.json"), R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})");
    const HfTokenizer h = load_hf_tokenizer(d.path);
    REQUIRE(h.data);
    CHECK(h.data->kind == "bpe");
    CHECK(h.data->pretokenizer == "llama3");
    CHECK(h.data->tokens.size() == 128256);
    CHECK(h.data->bos == 128000);
    CHECK(h.data->eos == 128009);
}
