// fuzz_hf_tokenizer.cpp: libFuzzer target for the Hugging Face file parsers of formats/hf_config.h.
// The same bytes go to the config.json parser, to the tokenizer.json reader (and, when that accepts
// them, into a Tokenizer that encodes and decodes a little text), and to load_hf_tokenizer as the
// tokenizer_config.json, special_tokens_map.json and generation_config.json of a directory whose
// tokenizer.json is a small valid one. Any input must either parse or throw lb::Error; anything
// else (a crash, a sanitizer report, another exception) is a bug. Seeds: the small fixtures of
// tests/fixtures/hf (copied into the corpus by the build).
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.h"
#include "formats/hf_config.h"
#include "models/tokenizer.h"

namespace {

const char kTinyTokenizerJson[] = R"({"added_tokens": [{"id": 3, "content": "<s>", "special": true}],
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]}})";

// a directory made once per process (the fuzzer runs in one process), removed at exit
struct ScratchDir {
    std::string path;
    ScratchDir() {
        char tmpl[] = "/tmp/fuzz_hf_XXXXXX";
        if (!mkdtemp(tmpl)) __builtin_trap();
        path = tmpl;
        std::ofstream(path + "/tokenizer.json") << kTinyTokenizerJson;
    }
    ~ScratchDir() {
        std::remove((path + "/tokenizer.json").c_str());
        rmdir(path.c_str());
    }
};
const std::string& scratch_dir() {
    static const ScratchDir dir;
    return dir.path;
}

void encode_some(const lb::TokenizerData& d) {
    const lb::Tokenizer tok = lb::Tokenizer::from_data(d);  // the readers promise this passes
    const auto ids = tok.encode("Hello world, \xc3\xa9t\xc3\xa9 42! <|im_end|>", false, true);
    (void)tok.decode(ids);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const lb::HfConfig c = lb::parse_hf_config(text, "fuzz/config.json");
        if (c.hp.n_embd <= 0 || c.hp.n_embd % c.hp.n_head != 0) __builtin_trap();  // validated
    } catch (const lb::Error&) {
    }
    try {
        encode_some(lb::hf_tokenizer_json_data(text, "fuzz/tokenizer.json"));
    } catch (const lb::Error&) {
    }
    const std::string& dir = scratch_dir();
    for (const char* name : {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
        { std::ofstream(dir + "/" + name, std::ios::binary) << text; }
        try {
            const lb::HfTokenizer h = lb::load_hf_tokenizer(dir);
            if (!h.data) __builtin_trap();
            encode_some(*h.data);
        } catch (const lb::Error&) {
        }
        std::remove((dir + "/" + name).c_str());
    }
    return 0;
}
