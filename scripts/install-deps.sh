#!/usr/bin/env bash
# Installs the Debian packages straw builds with (when run as root; harmless when present), and the
# npm packages of the server's end-to-end test (tests/server: the openai client and playwright-core,
# pinned by its package-lock; without them that one test is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake ninja-build g++ pkg-config libgtest-dev libgmock-dev libbenchmark-dev libcpp-httplib-dev
      nlohmann-json3-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -d tests/server/node_modules ] && command -v npm >/dev/null 2>&1; then
  (cd tests/server && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
    echo "install-deps: npm ci in tests/server failed: the server's end-to-end test will be skipped" >&2
fi
