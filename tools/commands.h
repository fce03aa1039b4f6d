// commands.h: the subcommands of the `lowbit` CLI. Each returns the process exit code and
// reports its own errors; main.cpp only dispatches.
#pragma once
#include <cstdio>
#include <exception>

namespace lb {

// Runs a subcommand body and turns an escaping exception into the CLI's error report, in one
// place: "lowbit NAME: error: WHAT" on stderr, exit code 1.
inline int report_errors(const char* name, int (*body)(int, char**), int argc, char** argv) {
    try {
        return body(argc, argv);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "lowbit %s: error: %s\n", name, e.what());
        return 1;
    }
}

// `lowbit check FILE [--quiet]`: validates the file, lists it, verifies every checksum.
// Returns 0 if the file is good, 1 if it is malformed or a checksum fails, 2 on a usage error.
int cmd_check(int argc, char** argv);
int cmd_bench(int argc, char** argv);       // tools/cmd_bench.cpp
int cmd_run(int argc, char** argv);         // tools/cmd_run.cpp: `lowbit run`, exit 0 ok, 1 on any error
int cmd_convert(int argc, char** argv);     // tools/cmd_convert.cpp: GGUF / llama2.c -> .lbf
int cmd_perplexity(int argc, char** argv);  // tools/cmd_perplexity.cpp: `lowbit perplexity`, 0 ok, 1 on any error
}  // namespace lb
