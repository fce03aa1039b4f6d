#!/usr/bin/env bash
# run_all.sh: the full test command: installs dependencies, builds, runs every test suite
# (ctest, the C API and install tests included), the C API tests under ASan + UBSan, the NEON
# kernels cross-built for aarch64 under qemu-user, and the .lbf and GGUF reader fuzzers for a short
# time. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh --test
jobs=$(nproc)

echo "== native build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== C API under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DLB_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs" --target test_capi lowbit
ctest --test-dir build-asan --output-on-failure -j"$jobs" -R capi

echo "== aarch64 (NEON) build, tests under qemu-user"
cmake -S . -B build-arm -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake >/dev/null
cmake --build build-arm -j"$jobs"
ctest --test-dir build-arm --output-on-failure -j"$jobs"

echo "== fuzz: .lbf reader, GGUF reader + tokenizer (libFuzzer, 20 s each)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DLB_FUZZ=ON -DLB_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_lbf fuzz_gguf
mkdir -p build-fuzz/corpus build-fuzz/corpus-gguf
./build-fuzz/tests/fuzz/fuzz_lbf -max_total_time=20 -print_final_stats=1 build-fuzz/corpus 2>&1 | tail -n 5
cp ../shared/data/llama.cpp-vocab/*.gguf build-fuzz/corpus-gguf/  # seeds: real vocabulary files
./build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=20 -rss_limit_mb=4096 -print_final_stats=1 build-fuzz/corpus-gguf 2>&1 | tail -n 5
echo "all test suites passed"
