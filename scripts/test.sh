#!/usr/bin/env bash
# Runs the test suite of a build folder (default: build): every GoogleTest case through ctest.
# Fails when the folder has no tests (configured with -DSTRAW_TESTS=OFF): "no test ran" is never
# a success.
set -euo pipefail
build="${1:-build}"
ctest --test-dir "$build" --output-on-failure --no-tests=error -j"$(nproc)"
