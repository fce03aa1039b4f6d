// commands.h: the subcommands of the `lowbit` CLI. Each returns the process exit code and
// reports its own errors; main.cpp only dispatches.
#pragma once

namespace lb {
int cmd_check(int argc, char** argv);  // formats/lbf.h documents it; implemented in tools/cmd_check.cpp
int cmd_bench(int argc, char** argv);  // tools/cmd_bench.cpp
}  // namespace lb
