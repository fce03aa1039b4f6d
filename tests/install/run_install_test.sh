#!/bin/sh
# run_install_test.sh CMAKE BUILD_DIR SOURCE_DIR MODEL.lbf CC: installs lowbit from BUILD_DIR into a
# temporary prefix, builds examples/chat.c against it with find_package (shared and static) and
# with pkg-config, and runs each on a one-line chat. Exit 77 (skipped) without pkg-config.
set -eu
cmake=$1 build=$2 src=$3 model=$4 cc=$5
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

"$cmake" --install "$build" --prefix "$prefix" >/dev/null
echo "installed into $prefix:"
(cd "$prefix" && find . -type f -o -type l | sort)

# find_package
"$cmake" -S "$src/tests/install" -B "$tmp/cm" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DLOWBIT_EXAMPLE_SOURCE="$src/examples/chat.c" >/dev/null
"$cmake" --build "$tmp/cm" >/dev/null
for exe in chat chat_static; do
  out=$(echo "Hello there" | "$tmp/cm/$exe" "$model" chatml)
  echo "$exe (find_package): $out"
  [ -n "$out" ]
done
# the static example does not need the shared library
if ldd "$tmp/cm/chat_static" | grep -q liblowbit; then
  echo "chat_static is linked against liblowbit.so"
  exit 1
fi

# pkg-config
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "pkg-config not installed: that half of the test is skipped"
  exit 77
fi
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$(dirname "$(find "$prefix" -name lowbit.pc | head -n 1)")"
echo "pkg-config: $(pkg-config --modversion lowbit): $(pkg-config --cflags --libs lowbit)"
# shellcheck disable=SC2046
"$cc" -std=c99 -Wall -Wextra -Werror -pedantic "$src/examples/chat.c" -o "$tmp/chat_pc" $(pkg-config --cflags --libs lowbit)
out=$(echo "Hello there" | LD_LIBRARY_PATH="$(pkg-config --variable=libdir lowbit)" "$tmp/chat_pc" "$model" chatml)
echo "chat (pkg-config): $out"
[ -n "$out" ]
echo "install test passed"
