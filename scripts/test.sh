#!/usr/bin/env bash
# Runs the test suite of a build folder (default: build): every GoogleTest case through ctest.
set -euo pipefail
build="${1:-build}"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
