#!/usr/bin/env bash
# install_deps.sh: installs what building and testing lowbit needs on Debian 12, idempotently
# (packages already present are not touched; apt-get update runs only when something is missing).
set -euo pipefail
pkgs=(build-essential cmake pkg-config doctest-dev nlohmann-json3-dev python3 python3-pip)
if [ "${1:-}" = "--test" ]; then
  # tests: NEON kernels cross-built and run under qemu-user; libFuzzer from clang; libsentencepiece
  # (the tokenizer test oracle)
  pkgs+=(g++-aarch64-linux-gnu qemu-user clang libclang-rt-14-dev libsentencepiece-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
