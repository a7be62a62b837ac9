#!/usr/bin/env bash
# The main job: build straw and generate text. Default: the bundled TinyStories model.
#   scripts/demo.sh [MODEL.gguf] [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRAW_TESTS=OFF -DSTRAW_BENCH=OFF >/dev/null
cmake --build build --target straw_cli >/dev/null
model="${1:-models/stories260K.gguf}"
prompt="${2:-Once upon a time}"
echo "demo: generating with $model" >&2
build/bin/straw run -m "$model" -p "$prompt" -n 96 --temp 0.8 --seed 42
