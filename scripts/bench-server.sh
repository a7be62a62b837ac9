#!/usr/bin/env bash
# straw serve against llama-server on the same file, threads and slots, in one run (CPU).
#
#   scripts/bench-server.sh [-t 2] [-r 3] [-n 128] [FILE.gguf]
#
# FILE defaults to a synthetic Qwen2.5-1.5B Q4_K_M (made with straw synth when missing). For each of
# r rounds, straw serve and llama-server (-np 4) are started in turn and driven by
# scripts/bench-server.mjs: 1 client and 4 concurrent clients, each sending 3 streamed completions
# of n tokens (ignore_eos, distinct prompts). Then the prompt cache: the second turn of a chat with
# a ~2,000-token history, with the cache and with --no-cache-prompt. Prints JSON lines and a
# markdown summary (medians over the rounds). Needs build/bin/straw (or $STRAW), node, and
# llama-server (../shared/tools/peer/peer.sh setup-server).
set -euo pipefail
cd "$(dirname "$0")/.."
straw="${STRAW:-build/bin/straw}"
peer="${PEER:-../shared/tools/peer/peer.sh}"
threads=2 rounds=3 gen=128
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads="$2"; shift 2 ;;
    -r) rounds="$2"; shift 2 ;;
    -n) gen="$2"; shift 2 ;;
    -*) echo "bench-server: unknown option $1" >&2; exit 2 ;;
    *) file="$1"; shift ;;
  esac
done
file="${file:-/tmp/straw-q15-q4km.gguf}"
[ -f "$file" ] || "$straw" synth --preset qwen2.5-1.5b --type Q4_K_M -o "$file" >&2
llama_server="$(bash "$peer" path)/llama-server"
[ -x "$llama_server" ] || { echo "bench-server: llama-server is not built (peer.sh setup-server)" >&2; exit 3; }
port=18650
out="${OUT_DIR:-$(mktemp -d /tmp/straw-bench-server.XXXXXX)}"
mkdir -p "$out"
echo "bench-server: results in $out" >&2

wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench-server: the server did not become ready" >&2
  return 1
}
run_clients() {  # engine label
  for c in 1 4; do
    node scripts/bench-server.mjs --url "http://127.0.0.1:$port" --clients "$c" --requests 3 \
      --max-tokens "$gen" | sed "s/^{/{\"engine\":\"$1\",/" | tee -a "$out/results.jsonl"
  done
}
start_straw() {
  "$straw" serve -m "$file" -t "$threads" --parallel 4 --ctx 4096 --port "$port" "$@" \
    2>"$out/straw.log" &
  pid=$!
  wait_ready
}
start_llama() {
  "$llama_server" -m "$file" -t "$threads" -tb "$threads" -np 4 -c 16384 --host 127.0.0.1 \
    --port "$port" >"$out/llama.log" 2>&1 &
  pid=$!
  wait_ready
}
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

for r in $(seq 1 "$rounds"); do
  start_straw; run_clients straw; stop_server
  start_llama; run_clients llama.cpp; stop_server
done
for r in $(seq 1 "$rounds"); do
  start_straw
  node scripts/bench-server.mjs --url "http://127.0.0.1:$port" --second-turn | sed 's/^{/{"engine":"straw","cache":true,/' | tee -a "$out/results.jsonl"
  stop_server
  start_straw --no-cache-prompt
  node scripts/bench-server.mjs --url "http://127.0.0.1:$port" --second-turn | sed 's/^{/{"engine":"straw","cache":false,/' | tee -a "$out/results.jsonl"
  stop_server
done

python3 - "$out/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def pick(engine, clients, key):
    return med([r[key] for r in rows if r.get("engine") == engine and r.get("clients") == clients])
print("\n| clients | straw t/s | llama.cpp t/s | ratio | straw TTFT ms | llama.cpp TTFT ms | TTFT ratio |")
print("|---|---|---|---|---|---|---|")
for c in (1, 4):
    s, l = pick("straw", c, "aggregate_tps"), pick("llama.cpp", c, "aggregate_tps")
    st, lt = pick("straw", c, "ttft_ms_mean"), pick("llama.cpp", c, "ttft_ms_mean")
    print(f"| {c} | {s:.1f} | {l:.1f} | {s / l:.2f}x | {st:.0f} | {lt:.0f} | {lt / st:.2f}x |")
s1, s4 = pick("straw", 1, "aggregate_tps"), pick("straw", 4, "aggregate_tps")
print(f"\nstraw: 4 concurrent streams give {s4 / s1:.2f}x the tokens/s of one stream")
on = med([r["second_turn_ttft_ms"] for r in rows if r.get("cache") is True])
off = med([r["second_turn_ttft_ms"] for r in rows if r.get("cache") is False])
n = [r["first_turn_prompt_tokens"] for r in rows if r.get("first_turn_prompt_tokens")]
print(f"prompt cache: time to first token of the second turn (history of {n[0] if n else '?'} tokens): "
      f"{on:.0f} ms with the cache, {off:.0f} ms without ({100 * on / off:.1f}%)")
PY
