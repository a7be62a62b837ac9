# llama.cpp's max nrmse against exact math (shared/testdata golden files) with quantized KV caches,
# for tests/golden_test.cpp (Golden.QuantizedKvCacheStaysCloseToTheF16Cache). Writes JSON to stdout.
#   python3 tests/data/kv_quant/measure.py KVORACLE_BINARY TESTDATA_DIR > tests/data/kv_quant/llamacpp.json
import array
import json
import math
import os
import subprocess
import sys
import tempfile

oracle, testdata = sys.argv[1:3]
models = ["llama-tiny-f16", "qwen2-tiny-f32", "qwen3-tiny-f16", "qwen2-tiny-q4_k_m", "qwen3-tiny-iq4_xs"]
kv_types = [("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "q4_0")]


def max_nrmse(a, r, n_vocab, n):
    worst = 0.0
    for p in range(n):
        ra, aa = r[p * n_vocab:(p + 1) * n_vocab], a[p * n_vocab:(p + 1) * n_vocab]
        mean = sum(ra) / n_vocab
        num = sum((x - y) ** 2 for x, y in zip(aa, ra))
        den = sum((y - mean) ** 2 for y in ra)
        worst = max(worst, math.sqrt(num / den))
    return worst


out = {}
with tempfile.TemporaryDirectory() as tmp:
    for name in models:
        j = json.load(open(os.path.join(testdata, "golden", name + ".json")))
        toks = os.path.join(tmp, "tokens.txt")
        open(toks, "w").write(" ".join(map(str, j["tokens"])))
        exact = array.array("f")
        exact.frombytes(open(os.path.join(testdata, "golden", j["exact_logits_file"]), "rb").read())
        row = {}
        for k, v in kv_types:
            logits = os.path.join(tmp, "logits.f32")
            subprocess.run([oracle, os.path.join(testdata, "models", j["model"]), toks, logits, k, v],
                           check=True, capture_output=True)
            a = array.array("f")
            a.frombytes(open(logits, "rb").read())
            row[k + "/" + v] = float("%.4e" % max_nrmse(a, exact, j["n_vocab"], len(j["tokens"])))
        out[name] = row
print(json.dumps(out, indent=1))
