// fuzz_hf_tokenizer.cpp: libFuzzer target for the Hugging Face file parsers of formats/hf_config.h:
// the same bytes go to the config.json parser and to the tokenizer.json reader (and, when that
// accepts them, into a Tokenizer that encodes and decodes a little text). Any input must either
// parse or throw lb::Error; anything else (a crash, a sanitizer report, another exception) is a
// bug. Seeds: the small fixtures of tests/fixtures/hf (copied into the corpus by the build).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "formats/hf_config.h"
#include "models/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const lb::HfConfig c = lb::parse_hf_config(text, "fuzz/config.json");
        if (c.hp.n_embd <= 0 || c.hp.n_embd % c.hp.n_head != 0) __builtin_trap();  // validated
    } catch (const lb::Error&) {
    }
    try {
        const lb::TokenizerData d = lb::hf_tokenizer_json_data(text, "fuzz/tokenizer.json");
        const lb::Tokenizer tok = lb::Tokenizer::from_data(d);  // the reader promises this passes
        const auto ids = tok.encode("Hello world, \xc3\xa9t\xc3\xa9 42! <|im_end|>", false, true);
        (void)tok.decode(ids);
    } catch (const lb::Error&) {
    }
    return 0;
}
