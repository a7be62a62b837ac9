#!/usr/bin/python3
# Cross-checks `straw inspect --json` and `straw dequant` against llama.cpp's own GGUF reader (gguf-py,
# from the peer tool's llama.cpp checkout; set GGUF_PY to its folder). Needs Debian's python3-numpy.
#   scripts/crosscheck-gguf-py.py build/bin/straw FILE.gguf

import json, subprocess, sys, os, numpy as np
sys.path.insert(0, os.environ.get('GGUF_PY', os.path.expanduser('~/.cache/straw-peer/llama.cpp/gguf-py')))
from gguf import GGUFReader
from gguf.quants import dequantize
straw, path = sys.argv[1], sys.argv[2]
j = json.loads(subprocess.run([straw, 'inspect', '--json', path], capture_output=True, check=True).stdout)
r = GGUFReader(path)
bad = 0
import tempfile
tmp = tempfile.mkdtemp()
# metadata
for k, f in r.fields.items():
    if k.startswith('GGUF.'): continue
    v = f.contents()
    sv = j['metadata'].get(k, '<missing>')
    if isinstance(v, float) or (isinstance(v, list) and v and isinstance(v[0], float)):
        ok = np.allclose(np.array(v, dtype=np.float64), np.array(sv, dtype=np.float64), rtol=0, atol=0)
    else:
        ok = v == sv
    if not ok:
        bad += 1; print('META MISMATCH', k, str(v)[:80], str(sv)[:80])
if set(j['metadata']) != set(k for k in r.fields if not k.startswith('GGUF.')):
    bad += 1; print('key sets differ')
tj = {t['name']: t for t in j['tensors']}
for t in r.tensors:
    s = tj[t.name]
    shape = [int(x) for x in t.shape]
    if s['shape'] != shape or s['type'] != t.tensor_type.name or s['bytes'] != int(t.n_bytes) or s['file_offset'] != int(t.data_offset):
        bad += 1; print('TENSOR MISMATCH', t.name, s, shape, t.tensor_type.name, t.n_bytes, t.data_offset)
    out = os.path.join(tmp, 't.f32')
    subprocess.run([straw, 'dequant', path, t.name, '-o', out], capture_output=True, check=True)
    a = np.fromfile(out, dtype=np.float32)
    ref = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    if a.shape != ref.shape or not np.array_equal(a.view(np.uint32), ref.view(np.uint32)):
        d = np.max(np.abs(a - ref)) if a.shape == ref.shape else 'shape'
        bad += 1; print('DEQUANT MISMATCH', t.name, t.tensor_type.name, d)
print(os.path.basename(path), 'tensors', len(r.tensors), 'keys', len(j['metadata']), 'BAD' if bad else 'ok', bad)
