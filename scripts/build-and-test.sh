#!/usr/bin/env bash
# Builds straw (CPU configuration; the CUDA backend too when nvcc is found) with its tests and runs
# the whole suite. The options are explicit so that the suite is built and run whatever configured
# build/ before (scripts/demo.sh configures it without the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRAW_TESTS=ON -DSTRAW_BENCH=ON >/dev/null
cmake --build build
bash scripts/test.sh build
