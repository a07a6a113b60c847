#!/usr/bin/env bash
# Sets everything up, builds, and runs the main job on the tiny fixture model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
model=../shared/fixtures/tiny-flf2v/model
./build/inbetween encode-prompt --model "$model" --prompt "A small blue bird takes off from the ground, flapping its wings."
