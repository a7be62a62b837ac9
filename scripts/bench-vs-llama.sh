#!/usr/bin/env bash
# straw against llama.cpp on the same files, same thread counts, in one run (CPU only).
#
#   scripts/bench-vs-llama.sh [-t 1,2] [-r 5] [-p 512] [-n 128] [-d 0] [--kernels auto,avx2]
#                             [-ctk f16] [-ctv f16] [-fa 1] [--llama-modes mmap,none] FILE.gguf...
#
# For each file and thread count: straw bench (once per --kernels level), llama-bench in its
# default (mmap) mode and with -lm none (weights read into memory: its fastest mode), interleaved so
# that a change in the machine's load hits both engines alike. Prints a markdown table of t/s, the
# ratios straw / llama.cpp, and straw's roofline fraction; the raw JSON goes to $OUT_DIR
# (default: a temporary folder, printed). Needs build/bin/straw (or $STRAW) and llama.cpp's tools
# (../shared/tools/peer/peer.sh setup). -ctk / -ctv set the K / V cache types of both engines;
# -fa sets llama.cpp's flash attention (straw's attention is always fused; llama.cpp needs -fa 1
# for quantized V caches). On a shared machine, run it under `chrt -f 50` so that other processes
# cannot take the cores in the middle of a test (llama.cpp's threads wait for each other at every
# op and collapse when one is descheduled). --llama-modes none skips llama.cpp's default mode (for
# long runs such as -d 16384).
set -euo pipefail
cd "$(dirname "$0")/.."
straw="${STRAW:-build/bin/straw}"
peer="${PEER:-../shared/tools/peer/peer.sh}"
threads=1,2 reps=5 prompt=512 gen=128 depth=0 kernels=auto ctk=f16 ctv=f16 fa= modes=mmap,none
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    -p) prompt="$2"; shift 2 ;;
    -n) gen="$2"; shift 2 ;;
    -d) depth="$2"; shift 2 ;;
    --kernels) kernels="$2"; shift 2 ;;
    -ctk) ctk="$2"; shift 2 ;;
    -ctv) ctv="$2"; shift 2 ;;
    -fa) fa="$2"; shift 2 ;;
    --llama-modes) modes="$2"; shift 2 ;;
    -*) echo "bench-vs-llama: unknown option $1" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[ ${#files[@]} -gt 0 ] || { sed -n 2,19p "$0" >&2; exit 2; }
llama_extra=(-ctk "$ctk" -ctv "$ctv")
[ -z "$fa" ] || llama_extra+=(-fa "$fa")
[ -x "$straw" ] || { echo "bench-vs-llama: $straw is not built" >&2; exit 3; }
out="${OUT_DIR:-$(mktemp -d /tmp/straw-vs-llama.XXXXXX)}"
mkdir -p "$out"
echo "bench-vs-llama: raw results in $out" >&2

i=0
for f in "${files[@]}"; do
  for t in ${threads//,/ }; do
    for k in ${kernels//,/ }; do
      "$straw" bench -m "$f" -t "$t" -p "$prompt" -n "$gen" -d "$depth" -r "$reps" --cpu-kernels "$k" \
        -ctk "$ctk" -ctv "$ctv" -o json \
        > "$out/$i-straw-$k-t$t.json"
    done
    for m in ${modes//,/ }; do
      lm=()
      [ "$m" = mmap ] || lm=(-lm "$m")
      bash "$peer" bench "$f" -t "$t" -p "$prompt" -n "$gen" -d "$depth" -r "$reps" "${llama_extra[@]}" \
        "${lm[@]}" -o json > "$out/$i-llama-$m-t$t.json" 2>/dev/null
    done
  done
  i=$((i + 1))
done

python3 - "$out" "$kernels" <<'EOF'
import glob, json, os, sys
out, kernels = sys.argv[1], sys.argv[2].split(",")
def load(path):
    return json.load(open(path)) if os.path.exists(path) else []
def by_test(rows):
    def name(r):
        n = ("pp%d" % r["n_prompt"]) if r["n_prompt"] else ("tg%d" % r["n_gen"])
        return n + (" @ d%d" % r["n_depth"] if r.get("n_depth") else "")
    return {name(r): r for r in rows}
print("| file | threads | test | " + " | ".join("straw %s" % k for k in kernels) +
      " | llama.cpp | llama.cpp -lm none | straw / llama.cpp | straw / -lm none | straw roofline |")
print("| --- | --: | --- | " + " | ".join("--:" for _ in kernels) + " | --: | --: | --: | --: | --: |")
keys = sorted({tuple(os.path.basename(p).split("-")[0:1]) + (p.rsplit("-t", 1)[1][:-5],)
               for p in glob.glob(out + "/*-straw-*.json")}, key=lambda k: (int(k[0]), int(k[1])))
for idx, t in keys:
    straw = {k: by_test(load("%s/%s-straw-%s-t%s.json" % (out, idx, k, t))) for k in kernels}
    mmap = by_test(load("%s/%s-llama-mmap-t%s.json" % (out, idx, t)))
    none = by_test(load("%s/%s-llama-none-t%s.json" % (out, idx, t)))
    first = straw[kernels[0]]
    for test, r in first.items():
        name = os.path.basename(r["model_filename"])
        cell = lambda x: "%.1f ± %.1f" % (x["avg_ts"], x["stddev_ts"]) if x else "-"
        ratio = lambda a, b: "%.2f" % (a["avg_ts"] / b["avg_ts"]) if a and b else "-"
        roof = r.get("roofline_fraction")
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, t, test, " | ".join(cell(straw[k].get(test)) for k in kernels),
            cell(mmap.get(test)), cell(none.get(test)), ratio(r, mmap.get(test)),
            ratio(r, none.get(test)), "%.0f %%" % (100 * roof) if roof else ""))
EOF
