// main.cpp: the `lowbit` command line: dispatches to one subcommand per job.
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "tools/commands.h"

namespace {

struct Command {
    const char* name;
    int (*fn)(int, char**);
    const char* help;
};

const Command kCommands[] = {
    {"check", lb::cmd_check, "verify a .lbf file: structure and per-tensor checksums"},
    {"convert", lb::cmd_convert, "GGUF or llama2.c model -> .lbf (weights, config, tokenizer)"},
    {"bench", lb::cmd_bench, "benchmarks: `bench kernels` (per block type GEMV/GEMM), `bench model` (pp/tg tokens/s)"},
    {"run", lb::cmd_run, "generate text from a .lbf model: -p PROMPT, or --chat"},
    {"perplexity", lb::cmd_perplexity, "perplexity of a .lbf model on a text; KL divergence against saved logits"},
};

void usage(FILE* f) {
    std::fprintf(f, "usage: lowbit <command> [options]\n\ncommands:\n");
    for (const auto& c : kCommands) std::fprintf(f, "  %-10s %s\n", c.name, c.help);
    std::fprintf(f, "\n`lowbit <command> --help` shows the options of a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!std::strcmp(argv[1], "--version")) {
        std::printf("lowbit 0.1.0\n");
        return 0;
    }
    for (const auto& c : kCommands) {
        if (std::strcmp(argv[1], c.name) != 0) continue;
        return lb::report_errors(c.name, c.fn, argc - 1, argv + 1);
    }
    std::fprintf(stderr, "lowbit: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
