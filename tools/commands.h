// commands.h: the subcommands of the `lowbit` CLI. Each returns the process exit code and
// reports its own errors; main.cpp only dispatches.
#pragma once

namespace lb {
// `lowbit check FILE [--quiet]`: validates the file, lists it, verifies every checksum.
// Returns 0 if the file is good, 1 if it is malformed or a checksum fails, 2 on a usage error.
int cmd_check(int argc, char** argv);
int cmd_bench(int argc, char** argv);    // tools/cmd_bench.cpp
int cmd_run(int argc, char** argv);      // tools/cmd_run.cpp: `lowbit run`, exit 0 ok, 1 on any error
int cmd_convert(int argc, char** argv);  // tools/cmd_convert.cpp: GGUF / llama2.c -> .lbf
int cmd_perplexity(int argc, char** argv);  // tools/cmd_perplexity.cpp: `lowbit perplexity`, 0 ok, 1 on any error
}  // namespace lb
