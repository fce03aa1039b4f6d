// fuzz_gguf.cpp: libFuzzer target for the GGUF reader and the tokenizer built from a GGUF
// vocabulary. Any input must either parse or throw lb::Error; anything else (a crash, a sanitizer
// report, another exception) is a bug. Seeds: the vocabulary GGUFs of ../shared/data
// (tests/run_all.sh copies them into the corpus directory).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "formats/gguf.h"
#include "models/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = lb::GgufFile::from_memory(data, size, "fuzz");
        for (const auto& [key, value] : f->metadata().entries()) (void)lb::meta_value_summary(value);
        for (const auto& t : f->tensors()) {
            if (f->find_tensor(t.name) != &t) __builtin_trap();
            // every byte the reader hands out must be inside the input
            if (t.data && (t.data < data || t.data + t.nbytes > data + size)) __builtin_trap();
        }
        // the tokenizer validates what the vocabulary keys hold; encode a little text with it
        const lb::Tokenizer tok = lb::Tokenizer::from_gguf(*f);
        const auto ids = tok.encode("Hello world, \xc3\xa9t\xc3\xa9 42!", true);
        (void)tok.decode(ids);
    } catch (const lb::Error&) {
    }
    return 0;
}
