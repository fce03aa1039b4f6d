#!/bin/sh
# check_exports.sh LIB.so HEADER [NM]: the dynamic symbols the library defines are exactly the
# functions the header declares with LB_API (plus the version node LOWBIT_*): nothing of the C++
# engine leaks, and nothing declared is missing.
set -eu
lib=$1 header=$2
nm=${3:-nm}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$nm" -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep -v '^LOWBIT_' | sort > "$tmp/exported"
grep -o '^LB_API [^(]*(' "$header" | sed 's/.*[ *]//; s/($//' | sort > "$tmp/declared"
echo "$lib: $(wc -l < "$tmp/exported") symbols exported, $(wc -l < "$tmp/declared") functions declared"
if [ ! -s "$tmp/declared" ] || ! cmp -s "$tmp/exported" "$tmp/declared"; then
  echo "exported (<) and declared (>) differ:"
  diff "$tmp/exported" "$tmp/declared" || true
  exit 1
fi
