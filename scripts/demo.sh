#!/usr/bin/env bash
# The first thing to run on a fresh machine: installs the build dependencies, builds the
# `inbetween` command alone (no tests, no benchmarks), writes the hand-built demo model and turns
# the two keyframes in assets/ into demo.mp4, saying what it does at each step.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n== %s (%ds so far)\n' "$1" $((SECONDS - start)); }

step "1/4 Installing the build dependencies (Debian packages; nothing when present)"
bash scripts/setup.sh --demo

step "2/4 Building ./build/inbetween alone (one line per compile step; several minutes on 2 cores the first time)"
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then export PATH=/usr/local/cuda/bin:$PATH; fi
mkdir -p build
# Tests are not built here (scripts/test.sh builds them); the CUDA backend is built when nvcc is found.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINBETWEEN_TESTS=OFF >build/demo-configure.log 2>&1 ||
  { cat build/demo-configure.log; exit 1; }
grep -E "inbetween: CUDA backend" build/demo-configure.log || true
# One line per finished compile step: [done/total elapsed] what.
NINJA_STATUS="[%f/%t %es] " ninja -C build inbetween | sed -u -e 's/ CXX object / /' -e 's/CMakeFiles\/[^/]*\.dir\///'

step "3/4 Writing the demo model to build/demo-model (hand-built weights, see README: The demo)"
./build/inbetween synth-model --preset demo --out build/demo-model --overwrite --quiet

step "4/4 Generating demo.mp4: 33 frames at 320x176, 12 steps, from assets/first.png to assets/last.png"
./build/inbetween generate --model build/demo-model \
  --first assets/first.png --last assets/last.png \
  --prompt "The sun sets slowly over a calm sea, the sky turning orange" \
  --frames 33 --size 320x176 --steps 12 --seed 42 --output demo.mp4
printf '\nDone in %ds: open demo.mp4 (it starts at assets/first.png and ends at assets/last.png).\n' $((SECONDS - start))
