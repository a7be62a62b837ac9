# Keeps every 16th position (15, 31, ...) and the last of llama.cpp's per-position logits:
# writes PREFIX.json (tokens, kept positions) and PREFIX.logits.f32 ([kept][n_vocab] float32).
import json
import sys

src_json, src_logits, prefix = sys.argv[1:4]
j = json.load(open(src_json))
n_vocab, tokens = j["n_vocab"], j["tokens"]
data = open(src_logits, "rb").read()
row = 4 * n_vocab
assert len(data) == row * len(tokens)
keep = [p for p in range(len(tokens)) if p % 16 == 15]
if keep[-1] != len(tokens) - 1:
    keep.append(len(tokens) - 1)
with open(prefix + ".logits.f32", "wb") as f:
    for p in keep:
        f.write(data[p * row:(p + 1) * row])
out = {"model": "qwen2-yarn (straw synth, see make_golden.sh)", "n_vocab": n_vocab,
       "tokens": tokens, "positions": keep, "logits_file": prefix.split("/")[-1] + ".logits.f32"}
open(prefix + ".json", "w").write(json.dumps(out) + "\n")
