#!/usr/bin/env bash
# run_all.sh: the full test command: installs dependencies, builds, runs every test suite
# (ctest), the NEON kernels cross-built for aarch64 under qemu-user, and the .lbf reader fuzzer
# for a short time. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh --test
jobs=$(nproc)

echo "== native build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== aarch64 (NEON) build, tests under qemu-user"
cmake -S . -B build-arm -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake >/dev/null
cmake --build build-arm -j"$jobs"
ctest --test-dir build-arm --output-on-failure -j"$jobs"

echo "== fuzz: .lbf reader (libFuzzer, 20 s)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DLB_FUZZ=ON -DLB_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_lbf
mkdir -p build-fuzz/corpus
./build-fuzz/tests/fuzz/fuzz_lbf -max_total_time=20 -print_final_stats=1 build-fuzz/corpus 2>&1 | tail -n 5
echo "all test suites passed"
