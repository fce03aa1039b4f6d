#!/bin/sh
# check_exports.sh LIB.so: every dynamic symbol the library defines is part of the C API (lb_*),
# apart from the version node; prints what else leaked and fails if anything did.
set -eu
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '{print $3}')
bad=$(printf '%s\n' "$syms" | grep -v -e '^lb_' -e '^LOWBIT_' || true)
n=$(printf '%s\n' "$syms" | grep -c '^lb_' || true)
echo "$lib: $n lb_* symbols exported"
if [ -n "$bad" ]; then
  echo "symbols other than lb_* are exported:"
  printf '%s\n' "$bad"
  exit 1
fi
