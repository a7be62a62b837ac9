#!/usr/bin/env bash
# Remakes the YaRN golden file (tests/yarn_golden_test.cpp): a tiny synthetic qwen2 model with YaRN
# metadata (factor 4, original context 128), llama.cpp's logits for a prompt of 307 tokens (positions
# up to 2.4x the original context), every 16th position and the last one kept.
#   bash tests/data/yarn/make_golden.sh BUILD_DIR     (needs peer.sh's llama.cpp tools)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
straw="${1:?usage: make_golden.sh BUILD_DIR}/bin/straw"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Keep these flags in step with kYarnShape in tests/yarn_golden_test.cpp.
"$straw" synth --arch qwen2 --layers 2 --embd 128 --ff 256 --heads 4 --kv-heads 2 --vocab 512 \
  --type F16 --seed 7 --ctx-train 128 --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 128 \
  -o "$tmp/qwen2-yarn.gguf"
bash /work/shared/tools/peer/peer.sh oracle "$tmp/qwen2-yarn.gguf" "$(cat "$here/prompt.txt")" \
  "$tmp/oracle" 0
python3 "$here/select_rows.py" "$tmp/oracle.json" "$tmp/oracle.logits.f32" "$here/qwen2-yarn"
