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
(cd build && ctest --output-on-failure --no-tests=error -j2 "${labels[@]}")
# Fuzzing: every libFuzzer target (fuzz/) for a short fixed time, failing on a finding. Needs clang
# with libFuzzer, which scripts/setup.sh installs; ~2-3 minutes with the fuzz build.
if [ "${1:-}" != "--gpu" ]; then
  if bash scripts/fuzz.sh --check; then
    bash scripts/fuzz.sh 20
  else
    echo "fuzz: SKIPPED, clang++ cannot link -fsanitize=fuzzer here (apt: clang libclang-rt-14-dev)"
  fi
fi
