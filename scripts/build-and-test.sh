#!/usr/bin/env bash
# Builds straw (CPU configuration) with its tests and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
bash scripts/test.sh build
