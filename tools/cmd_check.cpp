// cmd_check.cpp: `lowbit check FILE [--quiet]`: opens a .lbf file (which validates its whole
// structure and the index checksum), lists header, metadata and tensors, then verifies every
// tensor's data checksum. Exit 0: good; 1: malformed or corrupted (message names what); 2: usage.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "core/types.h"
#include "formats/lbf.h"
#include "tools/commands.h"

namespace lb {
namespace {

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: lowbit check FILE [--quiet]\n"
                 "  verifies a .lbf file: header, metadata, tensor directory and every tensor checksum\n"
                 "  --quiet, -q   print nothing unless the file is bad\n");
}

std::string dims_string(const std::vector<uint64_t>& d) {
    std::string s;
    for (size_t i = 0; i < d.size(); i++) s += (i ? " x " : "") + std::to_string(d[i]);
    return s;
}

void list(const LbfFile& f) {
    uint64_t data_bytes = 0;
    for (const auto& t : f.tensors()) data_bytes += t.nbytes;
    std::printf("%s: .lbf version %u, %zu metadata keys, %zu tensors, %llu bytes (index %llu, tensor data %llu)\n",
                f.origin().c_str(), f.version(), f.metadata().size(), f.tensors().size(),
                (unsigned long long)f.file_size(), (unsigned long long)f.data_offset(), (unsigned long long)data_bytes);
    if (f.metadata().size()) std::printf("metadata:\n");
    for (const auto& [key, value] : f.metadata().entries())
        std::printf("  %-40s %-16s %s\n", key.c_str(), value.type_string().c_str(), meta_value_summary(value).c_str());
    if (f.tensors().size()) std::printf("tensors:\n  %-40s %-20s %7s  %s\n", "name", "dims (K first)", "bpw", "type");
    for (const auto& t : f.tensors())
        std::printf("  %-40s %-20s %7.3f  %s\n", t.name.c_str(), dims_string(t.dims).c_str(),
                    bits_per_weight(t.type, t.params, t.n(), t.k()), describe(t.type, t.params).c_str());
}

}  // namespace

int cmd_check(int argc, char** argv) {
    bool quiet = false, options_done = false;
    const char* path = nullptr;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!options_done && (!std::strcmp(a, "--help") || !std::strcmp(a, "-h"))) {
            usage(stdout);
            return 0;
        } else if (!options_done && (!std::strcmp(a, "--quiet") || !std::strcmp(a, "-q"))) {
            quiet = true;
        } else if (!options_done && !std::strcmp(a, "--")) {
            options_done = true;
        } else if (!options_done && a[0] == '-' && a[1] != '\0') {
            std::fprintf(stderr, "lowbit check: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (path) {
            std::fprintf(stderr, "lowbit check: one file at a time ('%s' and '%s' given)\n", path, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }

    try {
        const std::unique_ptr<LbfFile> f = LbfFile::open(path);
        if (!quiet) list(*f);
        const std::vector<std::string> bad = f->verify_checksums();
        if (!bad.empty()) {
            std::string names;
            for (size_t i = 0; i < bad.size() && i < 20; i++) names += (i ? ", '" : "'") + bad[i] + "'";
            if (bad.size() > 20) names += strfmt(" and %zu more", bad.size() - 20);
            std::fprintf(stderr, "lowbit check: %s: data checksum mismatch in %zu of %zu tensors: %s\n", path,
                         bad.size(), f->tensors().size(), names.c_str());
            return 1;
        }
        if (!quiet) std::printf("checksums: all %zu tensors ok\n", f->tensors().size());
        return 0;
    } catch (const std::exception& e) {  // lb::Error for bad files; bad_alloc and the like too
        std::fprintf(stderr, "lowbit check: %s\n", e.what());
        return 1;
    }
}

}  // namespace lb
