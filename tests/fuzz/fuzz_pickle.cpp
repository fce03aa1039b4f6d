// fuzz_pickle.cpp: libFuzzer target for the torch.save reader: TorchFile::from_memory (zip layer +
// unpickler with storages resolved to zip entries) and the restricted unpickler alone on the raw
// bytes (with storages backed by a zero buffer, so that strided views get copied). Any input must
// either parse or throw lb::Error; anything else (a crash, a sanitizer report, another exception)
// is a bug. Seeds: the torch.save fixtures and raw data.pkl files of tests/fixtures/containers
// (tests/run_all.sh copies them into the corpus directory).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "formats/pickle.h"
#include "formats/torch_zip.h"

namespace {

// Every tensor's bytes lie inside the input or inside its own copy; every value can be printed.
void walk(const lb::PyObj& o, const uint8_t* lo, const uint8_t* hi, int depth) {
    if (depth > 200) __builtin_trap();  // the unpickler's nesting limit must hold
    switch (o.kind()) {
        case lb::PyKind::tuple:
        case lb::PyKind::list:
            for (const lb::PyRef& x : o.items()) walk(*x, lo, hi, depth + 1);
            break;
        case lb::PyKind::dict:
            for (const auto& [k, v] : o.as_dict().items()) {
                walk(*k, lo, hi, depth + 1);
                walk(*v, lo, hi, depth + 1);
            }
            break;
        case lb::PyKind::tensor: {
            const lb::PyTensor& t = o.as_tensor();
            const lb::SourceTensor& s = t.source;
            if (s.nbytes != s.numel() * lb::dtype_size(s.dtype)) __builtin_trap();
            if (s.data && s.nbytes) {
                const uint8_t* olo = t.owned.data();
                const uint8_t* ohi = olo + t.owned.size();
                const bool in_input = s.data >= lo && s.data + s.nbytes <= hi;
                const bool in_owned = s.data >= olo && s.data + s.nbytes <= ohi;
                if (!in_input && !in_owned) __builtin_trap();
                volatile uint8_t sink = s.data[0] ^ s.data[s.nbytes - 1];
                (void)sink;
            }
            break;
        }
        default:
            break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = lb::TorchFile::from_memory(data, size, "fuzz", /*check_crc=*/false);
        walk(f->root(), data, data + size, 0);
        (void)f->root().repr(500);
    } catch (const lb::Error&) {
    }
    static const uint8_t zeros[1 << 16] = {};
    const lb::StorageResolver resolve = [](const std::string& key, uint64_t nbytes) {
        if (nbytes > sizeof zeros) throw lb::Error("storage '" + key + "' too large for the fuzz buffer");
        return lb::StorageBytes{zeros, nullptr};
    };
    lb::UnpickleLimits lim;
    lim.max_materialized = 1 << 20;
    try {
        const lb::PyRef r = lb::unpickle(data, size, "fuzz.pkl", resolve, lim);
        walk(*r, zeros, zeros + sizeof zeros, 0);
        (void)r->repr(500);
    } catch (const lb::Error&) {
    }
    return 0;
}
