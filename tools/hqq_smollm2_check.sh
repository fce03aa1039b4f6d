#!/usr/bin/env bash
# hqq_smollm2_check.sh: the real-model check of `lowbit convert` on HQQ checkpoints (not run in CI:
# the reference needs torch + hqq and minutes of CPU). tools/hqq_smollm2_reference.py quantizes
# SmolLM2-135M-Instruct with the real hqq 0.1.8 (1-bit g8 axis 0, 2-bit g16 axis 1, 4-bit g64
# axis 1), saves each as hqq does, and computes its PyTorch perplexity on WikiText-2 (20 chunks of
# 512); this script converts the same directories with lowbit and compares `lowbit perplexity`.
# Usage: bash tools/hqq_smollm2_check.sh [DIR]   (DIR: the reference tool's --out, default build/hqq-smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/hqq-smollm2}
text=../shared/data/text/wikitext-2-raw-v1-test.rows-crlf.txt
ref=tools/hqq_smollm2_reference.result.json
[ -f "$dir/perplexity.json" ] && ref="$dir/perplexity.json"
for m in hqq-1bit-g8-a0 hqq-2bit-g16-a1 hqq-4bit-g64-a1; do
  ./build/lowbit convert "$dir/$m" -o "$dir/$m.lbf" | grep -E "^kind|^quantized weights"
  want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['models'][sys.argv[2]]['ppl'])" "$ref" "$m")
  for ct in f32 f16; do
    got=$(./build/lowbit perplexity -m "$dir/$m.lbf" -f "$text" -c 512 --chunks 20 --no-bos --cache-type $ct 2>&1 |
      sed -n 's/^ppl = \([0-9.e+]*\).*/\1/p')
    python3 -c "import sys; g, w = float(sys.argv[1]), float(sys.argv[2]); print(f'$m (KV cache $ct): lowbit {g:.6g}, PyTorch+hqq {w:.6g}, {100 * (g / w - 1):+.3f}%')" "$got" "$want"
  done
done
