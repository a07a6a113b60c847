#!/usr/bin/env bash
# Sets everything up, builds, and runs every CPU test (unit and fixture); GPU tests (label gpu)
# run only on a machine with a GPU: scripts/test.sh --gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
labels=(-LE gpu)
if [ "${1:-}" = "--gpu" ]; then labels=(-L gpu); fi
cd build && ctest --output-on-failure -j2 "${labels[@]}"
