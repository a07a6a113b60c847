#!/usr/bin/env bash
# Sets everything up, builds, and runs every CPU test (unit, fixture, and the server's browser
# test in headless Chromium); GPU tests (label gpu) run only on a machine with a GPU:
# scripts/test.sh --gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
labels=(-LE gpu)
if [ "${1:-}" = "--gpu" ]; then
  labels=(-L gpu)
else
  # Chromium (apt), Node.js and playwright-core (npm) for tests/server/browser_test.mjs, before the
  # build so CMake finds node; here the browser test must run, not be skipped.
  bash scripts/setup_web.sh
  export INBETWEEN_REQUIRE_BROWSER=1
fi
bash scripts/build.sh
# --no-tests=error: a label that selects no test (e.g. --gpu on a build without CUDA) fails.
cd build && ctest --output-on-failure --no-tests=error -j2 "${labels[@]}"
