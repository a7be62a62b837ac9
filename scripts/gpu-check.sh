#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in two steps:
#
#   scripts/gpu-check.sh prepare   # HERE (the build machine): Release build for sm_90 with the
#                                  # tests and benchmarks, plus the golden test data, copied into
#                                  # .gpucheck/ (git-ignored through .git/info/exclude)
#   scripts/gpu-check.sh run       # THERE (H100 / H200, .gpucheck/ carried over): compiles nothing
#
# `run` takes about 8 minutes: the CUDA tests (every kernel against the CPU reference, CUDA Graph
# replay, the golden logits bar on the GPU), the kernel microbenchmarks (GB/s against the copy
# bandwidth it measures), then `straw synth` + `straw bench` on synthetic models while time
# remains, and prints a short table last. Logs and JSON go to $OUT (the device tool's folder) or
# .gpucheck/out.
#
# Environment: GPU_CHECK_ARCHS (prepare; default 90), GPU_CHECK_BUDGET (run; seconds, default
# 470), GPU_CHECK_MODELS (run; preset:type list, default the 7B and 32B in IQ4_XS and Q4_K_M),
# GPU_CHECK_SYNTH_FLAGS (run; extra `straw synth` flags, e.g. --no-data when writing is too slow).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHECK="$ROOT/.gpucheck"
mode="${1:-run}"

prepare() {
  set -e
  local build="$ROOT/build-gpu" archs="${GPU_CHECK_ARCHS:-90}"
  cmake -S "$ROOT" -B "$build" -G Ninja ${GPU_CHECK_CMAKE_FLAGS:-} -DCMAKE_BUILD_TYPE=Release -DSTRAW_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$archs" -DCMAKE_CUDA_STANDARD=17 -DSTRAW_TESTS=ON -DSTRAW_BENCH=ON
  ninja -C "$build" -j"$(nproc)" straw_cli straw_tests straw_bench
  rm -rf "$CHECK"
  mkdir -p "$CHECK/bin" "$CHECK/testdata/models" "$CHECK/testdata/golden"
  for b in straw straw_tests straw_bench; do
    cp "$build/bin/$b" "$CHECK/bin/"
    strip "$CHECK/bin/$b" 2>/dev/null || true
  done
  # The golden data the GPU tests read: the models, their .json and exact logits (not llama.cpp's
  # logits files, which only the CPU tests compare).
  local td="${STRAW_TESTDATA:-$ROOT/../shared/testdata}"
  if [ -d "$td/models" ]; then
    # The models the CUDA golden test reads, all but the 15 MB qwen2-tiny-f32 (its test skips):
    # binaries + data stay under the 64 MiB the device tool carries.
    local m
    for m in llama-tiny-f16 llama-tiny-iq4_xs llama-tiny-q4_k_m qwen2-tiny-iq4_xs qwen2-tiny-q4_k_m \
             qwen2-tiny-q8_0 qwen3-tiny-f16 qwen3-tiny-iq4_xs qwen3-tiny-q4_k_m stories260K stories260K-q8_0 \
             qwen35-tiny-f16 qwen35-tiny-iq4_xs qwen35-tiny-q4_k_m qwen3moe-tiny-q4_k_m \
             qwen35moe-tiny-iq4_xs; do
      [ -f "$td/models/$m.gguf" ] && cp "$td/models/$m.gguf" "$CHECK/testdata/models/"
      [ -f "$td/golden/$m.json" ] && cp "$td/golden/$m.json" "$CHECK/testdata/golden/"
      [ -f "$td/golden/$m.exact.f32" ] && cp "$td/golden/$m.exact.f32" "$CHECK/testdata/golden/"
      # qwen35 and the MoE files have no exact-math file: their GPU tests compare with llama.cpp's
      # logits (one MoE file per architecture: the other two skip, to stay under the carry limit).
      case "$m" in qwen35-*|*moe-*) [ -f "$td/golden/$m.logits.f32" ] && cp "$td/golden/$m.logits.f32" "$CHECK/testdata/golden/" ;; esac
    done
    # qwen2-tiny-f32's golden data without its model: its GPU tests then skip with a message.
    cp "$td/golden/qwen2-tiny-f32.json" "$td/golden/qwen2-tiny-f32.exact.f32" "$CHECK/testdata/golden/"
  else
    echo "note: no test data at $td: the golden GPU tests will skip" >&2
  fi
  # The shared libraries the device image may lack (Google Benchmark, cpp-httplib and theirs):
  # everything ldd resolves but the C/C++ runtimes and CUDA's own, which the image has.
  mkdir -p "$CHECK/lib"
  for b in "$CHECK"/bin/*; do ldd "$b" | awk '/=> \//{print $3}'; done | sort -u |
    grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*|libpthread|libdl|librt|libcublas|libcublasLt|libcudart)\.so' |
    while read -r l; do cp -L "$l" "$CHECK/lib/"; done
  grep -qx '/.gpucheck/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpucheck/' >> "$ROOT/.git/info/exclude"
  # One compressed file travels (the device tool carries 64 MiB): run unpacks it when present.
  grep -qx '/.gpucarry/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpucarry/' >> "$ROOT/.git/info/exclude"
  mkdir -p "$ROOT/.gpucarry"
  tar -C "$ROOT" -cJf "$ROOT/.gpucarry/gpucheck.tar.xz" .gpucheck
  # llama.cpp's CUDA llama-bench (peer.sh setup-cuda) rides along when it is built.
  local peer="${STRAW_PEER_DIR:-$HOME/.cache/straw-peer}/llama-cuda-sm90.tar.xz"
  [ -f "$peer" ] && cp "$peer" "$ROOT/.gpucarry/"
  du -sh "$CHECK" "$ROOT/.gpucarry"/*
  echo "carry .gpucarry and run: bash scripts/gpu-check.sh run   (timeout_s 600)"
}

# synth PRESET TYPE FILE TIMEOUT LOG: a synthetic model of a real one's shape (kept if present).
synth() {
  [ -s "$3" ] && return 0
  timeout "$4" "$CHECK/bin/straw" synth --preset "$1" --type "$2" -o "$3" ${GPU_CHECK_SYNTH_FLAGS:-} > "$5" 2>&1 \
    || { rm -f "$3"; return 1; }
}

# with_vram LOG CMD...: runs CMD while sampling the GPU's used memory every 50 ms into LOG.csv;
# LOG.peak gets "baseline_MiB peak_MiB" (the baseline read just before CMD starts).
with_vram() {
  local log="$1"; shift
  local base; base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$log.csv" 2>/dev/null &
  local smi=$!
  "$@"; local rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  echo "$base $(sort -n "$log.csv" | tail -1)" > "$log.peak"
  return $rc
}

# hybrid: Qwen2.5-32B IQ4_XS under an 8 GiB VRAM budget with an 8192 context, as the user runs it:
# the plan (JSON and table), then straw bench with the GPU's used memory sampled.
hybrid() {
  local out="$CHECK/out" file=/tmp/straw-check-qwen2.5-32b-IQ4_XS.gguf left
  local budget_flag="--vram-budget ${GPU_CHECK_VRAM:-8GiB} --ctx 8192"
  echo "== hybrid ($(elapsed) s)"
  left=$(( budget - $(elapsed) ))
  if ! synth qwen2.5-32b IQ4_XS "$file" $(( left > 120 ? left - 60 : 60 )) "$out/synth-hybrid.log"; then
    echo "hybrid skipped: synth failed" >> "$out/models.txt"; return
  fi
  "$CHECK/bin/straw" plan -m "$file" $budget_flag -o json > "$out/plan-hybrid.json" 2>&1
  "$CHECK/bin/straw" plan -m "$file" $budget_flag > "$out/plan-hybrid.txt" 2>&1
  left=$(( budget - $(elapsed) ))
  with_vram "$out/vram-hybrid" timeout $(( left > 40 ? left - 20 : 20 )) "$CHECK/bin/straw" bench -m "$file" \
    $budget_flag -p 512 -n "${GPU_CHECK_HYBRID_N:-64}" -r 2 > "$out/bench-hybrid.md" 2> "$out/bench-hybrid.err"
  echo "hybrid bench $? (vram baseline/peak MiB: $(cat "$out/vram-hybrid.peak"))" >> "$out/models.txt"
  tail -4 "$out/bench-hybrid.md"
}

# llama: llama.cpp's CUDA llama-bench (peer.sh setup-cuda's pack, carried in .gpucarry/ or already
# unpacked in /tmp) on the same files: full offload on the 7B, and each -ngl of GPU_CHECK_NGL on the
# 32B with the GPU's used memory sampled, so the best -ngl that fits the budget can be read off.
llama() {
  local out="$CHECK/out" lb="" d left
  for d in /tmp/llama-cuda-sm90; do
    [ -x "$d/llama-bench" ] && lb="$d/llama-bench" && break
  done
  if [ -z "$lb" ] && [ -f "$ROOT/.gpucarry/llama-cuda-sm90.tar.xz" ]; then
    tar -C /tmp -xJf "$ROOT/.gpucarry/llama-cuda-sm90.tar.xz" && lb=/tmp/llama-cuda-sm90/llama-bench
  fi
  echo "== llama.cpp ($(elapsed) s)"
  if [ -z "$lb" ]; then echo "llama skipped: no llama-cuda-sm90 carried" >> "$out/models.txt"; return; fi
  local f7=/tmp/straw-check-qwen2.5-7b-IQ4_XS.gguf f32=/tmp/straw-check-qwen2.5-32b-IQ4_XS.gguf
  if [ -s "$f7" ]; then
    left=$(( budget - $(elapsed) ))
    timeout $(( left > 40 ? left - 20 : 20 )) "$lb" -m "$f7" -ngl 99 -fa 0,1 -p 512 -n 128 -r 2 \
      > "$out/llama-7b.md" 2>&1
    echo "llama 7b full offload $?" >> "$out/models.txt"
  fi
  [ -s "$f32" ] || return
  left=$(( budget - $(elapsed) ))
  if [ "$left" -gt 60 ]; then
    timeout $(( left - 20 )) "$lb" -m "$f32" -ngl 99 -fa 1 -p 512 -n 128 -r 2 > "$out/llama-32b.md" 2>&1
    echo "llama 32b full offload $?" >> "$out/models.txt"
  fi
  local ngl
  for ngl in ${GPU_CHECK_NGL:-16 20 24}; do
    left=$(( budget - $(elapsed) ))
    [ "$left" -lt 40 ] && { echo "llama ngl $ngl skipped: out of time" >> "$out/models.txt"; continue; }
    with_vram "$out/vram-llama-ngl$ngl" timeout $(( left - 20 )) "$lb" -m "$f32" -ngl "$ngl" -fa 1 -p 512 \
      -n "${GPU_CHECK_HYBRID_N:-64}" -r 2 > "$out/llama-32b-ngl$ngl.md" 2>&1
    echo "llama 32b ngl $ngl $? (vram baseline/peak MiB: $(cat "$out/vram-llama-ngl$ngl.peak"))" >> "$out/models.txt"
  done
}

run() {
  # Logs go to .gpucheck/out; the device tool's $OUT (at most 8 files come back) gets them as one
  # logs.tgz at the end.
  local bin="$CHECK/bin" out="$CHECK/out" start budget
  start=$(date +%s)
  budget="${GPU_CHECK_BUDGET:-470}"
  elapsed() { echo $(( $(date +%s) - start )); }
  mkdir -p "$out"
  if [ -f "$ROOT/.gpucarry/gpucheck.tar.xz" ] && [ ! -x "$bin/straw_tests" ]; then
    tar -C "$ROOT" -xJf "$ROOT/.gpucarry/gpucheck.tar.xz"
  fi
  [ -d "$CHECK/lib" ] && export LD_LIBRARY_PATH="$CHECK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [ ! -x "$bin/straw_tests" ]; then
    echo "no carried build in $bin: run 'scripts/gpu-check.sh prepare' on the build machine" >&2
    exit 2
  fi
  export STRAW_TESTDATA="$CHECK/testdata"
  # cuBLAS is linked dynamically (the CUDA runtime statically): find it if the build's path is off.
  if ldd "$bin/straw_tests" | grep -q 'not found'; then
    local d
    for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-*/lib64 \
             $(python3 -c 'import nvidia.cublas as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null); do
      [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    ldd "$bin/straw_tests" | grep 'not found'
  fi
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,temperature.gpu,driver_version \
    --format=csv > "$out/gpu.txt" 2>&1
  cat "$out/gpu.txt"
  # qwen35's linear-attention kernels and the MoE ops are verified here, so this run lets qwen35
  # models and MoE FFNs onto the GPU (src/api/placement.cpp keeps them on the CPU otherwise until
  # they have passed).
  export STRAW_CUDA_LINEAR_ATTENTION=1 STRAW_CUDA_MOE=1
  local phases=" ${GPU_CHECK_PHASES:-tests kernels models hybrid llama} "
  has() { [[ "$phases" == *" $1 "* ]]; }
  : > "$out/models.txt"

  if has tests; then
    echo "== tests ($(elapsed) s)"
    timeout 200 "$bin/straw_tests" --gtest_filter="${GPU_CHECK_TESTS:-*Cuda*}" > "$out/tests.log" 2>&1
    echo "straw_tests exit $?" >> "$out/tests.log"
    grep -E '^\[  (FAILED|PASSED|SKIPPED) |max_nrmse|exit ' "$out/tests.log" | tail -40
  fi

  if has kernels; then
    echo "== kernel benchmarks ($(elapsed) s)"
    timeout "${GPU_CHECK_KERNELS_TIMEOUT:-220}" "$bin/straw_bench" --benchmark_filter="${GPU_CHECK_KERNELS:-^cuda/}" --benchmark_out="$out/kernels.json" \
      --benchmark_out_format=json > "$out/kernels.txt" 2>&1
    echo "straw_bench exit $?" >> "$out/kernels.txt"
    tail -3 "$out/kernels.txt"
  fi

  has models && echo "== models ($(elapsed) s)"
  local models="${GPU_CHECK_MODELS:-qwen2.5-7b:IQ4_XS qwen2.5-7b:Q4_K_M qwen2.5-32b:IQ4_XS qwen2.5-32b:Q4_K_M}"
  has models || models=""
  local have_synth=0 graphs_flag=0
  "$bin/straw" synth --help > /dev/null 2>&1 && have_synth=1
  "$bin/straw" bench --help 2>&1 | grep -q -- '--no-cuda-graphs' && graphs_flag=1
  for spec in $models; do
    local preset="${spec%%:*}" type="${spec##*:}" left
    local file="/tmp/straw-check-$preset-$type.gguf" tag="$preset-$type"
    left=$(( budget - $(elapsed) ))
    if [ "$have_synth" = 0 ]; then echo "$tag skipped: this straw has no synth command" >> "$out/models.txt"; continue; fi
    if [ "$left" -lt 100 ]; then echo "$tag skipped: out of time" >> "$out/models.txt"; continue; fi
    if ! synth "$preset" "$type" "$file" $(( left - 60 )) "$out/synth-$tag.log"; then
      echo "$tag skipped: synth failed or timed out (see synth-$tag.log)" >> "$out/models.txt"
      rm -f "$file"; continue
    fi
    left=$(( budget - $(elapsed) ))
    timeout $(( left > 30 ? left - 10 : 20 )) "$bin/straw" bench -m "$file" -p 512 -n 128 -r 2 \
      > "$out/bench-$tag.md" 2>&1
    echo "$tag graphs $?" >> "$out/models.txt"
    left=$(( budget - $(elapsed) ))
    if [ "$graphs_flag" = 1 ] && [ "${GPU_CHECK_NOGRAPHS:-1}" = 1 ] && [ "$left" -gt 30 ]; then
      timeout $(( left - 10 )) "$bin/straw" bench -m "$file" -p 0 -n 128 -r 2 --no-cuda-graphs \
        > "$out/bench-$tag-nographs.md" 2>&1
      echo "$tag nographs $?" >> "$out/models.txt"
    fi
    # The hybrid and llama.cpp phases reuse the 7B and 32B IQ4_XS files.
    [ "$type" = IQ4_XS ] || rm -f "$file"
  done

  if has hybrid; then hybrid; fi
  if has llama; then llama; fi

  echo "== summary ($(elapsed) s)"
  python3 - "$out" <<'PY' 2>&1 | tee "$out/summary.txt"
import glob, json, os, re, sys
out = sys.argv[1]
gpu = open(os.path.join(out, "gpu.txt")).read().strip().splitlines()
print("GPU:", gpu[1] if len(gpu) > 1 else "unknown")
log = open(os.path.join(out, "tests.log"), errors="replace").read()
def count(tag):
    m = re.search(r"^\[  %s  \] (\d+) test" % tag, log, re.M)
    return int(m.group(1)) if m else 0
failed = re.findall(r"^\[  FAILED  \] (\S+)", log, re.M)
failed = sorted(set(f for f in failed if "." in f))
print("tests: %d passed, %d failed, %d skipped%s" % (count("PASSED"), len(failed), count("SKIPPED"),
      (" -- " + ", ".join(failed[:6])) if failed else ""))
try:
    bench = json.load(open(os.path.join(out, "kernels.json")))["benchmarks"]
except Exception as e:
    bench = []
    print("kernel benchmarks: no results (%s)" % e)
by = {b["name"].split("/min_time")[0]: b for b in bench if "error_occurred" not in b}
copy = by.get("cuda/copy", {}).get("GB/s")
if copy:
    print("copy bandwidth %.0f GB/s (memory clock x bus estimate %.0f GB/s)" % (copy, by["cuda/copy"].get("estimate_GB/s", 0)))
def frac(names):
    # bytes-weighted: total bytes over total time
    tb = tt = 0.0
    for n in names:
        b = by.get(n)
        if not b: return None
        t = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1}[b["time_unit"]]
        tb += b["GB/s"] * t; tt += t
    return tb / tt if tt else None
shapes = ["32B.attn_q", "32B.attn_kv", "32B.ffn_up", "32B.ffn_down"]
types = ["IQ4_XS", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "IQ4_NL", "Q5_0", "Q5_1", "Q4_0", "F16", "BF16", "F32"]
if copy:
    print("decode matvec on Qwen2.5-32B shapes, GB/s (fraction of copy): 1 token int8 | 1 token float | 8 tokens")
    for t in types:
        q = t not in ("F16", "BF16", "F32")
        a = frac(["cuda/matvec/%s/%s/t1/%s" % (t, s, "int8" if q else "float") for s in shapes])
        f = frac(["cuda/matvec/%s/%s/t1/float" % (t, s) for s in shapes]) if q else None
        e = frac(["cuda/matvec/%s/%s/t8/%s" % (t, s, "int8" if q else "float") for s in shapes])
        cell = lambda v: "%6.0f (%3.0f%%)" % (v, 100 * v / copy) if v else "      -      "
        print("  %-7s %s | %s | %s" % (t, cell(a), cell(f), cell(e)))
    for ctx in (4096, 32768):
        b = by.get("cuda/attention_decode/32B/ctx%d" % ctx)
        if b: print("attention decode ctx %5d: %5.0f GB/s (%3.0f%%), %d splits" % (ctx, b["GB/s"], 100 * b["GB/s"] / copy, b.get("splits", 0)))
    for t in ("Q4_K", "IQ4_XS"):
        row = []
        for n in (16, 32, 64, 512):
            g = by.get("cuda/prompt/%s/32B.ffn_up/t%d/gemm" % (t, n))
            m = by.get("cuda/prompt/%s/32B.ffn_up/t%d/matvec8" % (t, n))
            if g: row.append("t%d %.0f TF/s%s" % (n, g["TFLOP/s"], (" (matvec8 %.2fx time)" % (m["real_time"] / g["real_time"])) if m else ""))
        if row: print("prompt GEMM %s ffn_up: %s" % (t, ", ".join(row)))
def ts(path, test):
    try:
        for line in open(path):
            cells = [c.strip() for c in line.split("|")]
            for i, c in enumerate(cells):
                if c == test and i + 1 < len(cells):
                    return float(cells[i + 1].split()[0])
    except (OSError, ValueError):
        pass
    return None
print("models (straw bench, t/s): pp512 | tg128 | tg128 without graphs")
for line in open(os.path.join(out, "models.txt")):
    parts = line.split()
    if "skipped" in line: print("  " + line.strip()); continue
    if len(parts) >= 2 and parts[1] == "graphs":
        tag = parts[0]
        pp = ts(os.path.join(out, "bench-%s.md" % tag), "pp512")
        tg = ts(os.path.join(out, "bench-%s.md" % tag), "tg128")
        ng = ts(os.path.join(out, "bench-%s-nographs.md" % tag), "tg128")
        f = lambda v: "%8.2f" % v if v else "       -"
        print("  %-22s %s | %s | %s%s" % (tag, f(pp), f(tg), f(ng), ("   graphs %.2fx" % (tg / ng)) if tg and ng else ""))
    elif len(parts) >= 2 and parts[0] in ("hybrid", "llama"):
        print("  " + line.strip())
# straw's hybrid rows and llama.cpp's rows: test and t/s of every table row
for path in sorted(glob.glob(os.path.join(out, "bench-hybrid.md")) + glob.glob(os.path.join(out, "llama-*.md"))):
    for line in open(path, errors="replace"):
        cells = [c.strip() for c in line.split("|")][1:-1]
        if len(cells) > 3 and re.match(r"(pp|tg)\d+", cells[-2] if "t/s" not in cells[-1] else ""):
            print("  %-24s %s" % (os.path.basename(path)[:-3], " | ".join(c for c in cells if c and not c.startswith("qwen2"))))
        elif len(cells) > 3 and any(re.fullmatch(r"(pp|tg)\d+", c) for c in cells):
            print("  %-24s %s" % (os.path.basename(path)[:-3], " | ".join(cells[3:])))
try:
    print("hybrid plan: " + [l for l in open(os.path.join(out, "plan-hybrid.txt")) if l.startswith("VRAM")][0].strip())
except (OSError, IndexError):
    pass
PY
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    tar -C "$out" -czf "$OUT/logs.tgz" . && cp "$out/summary.txt" "$OUT/" 2>/dev/null
  fi
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
