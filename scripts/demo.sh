#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, write a tiny random-weight model
# in the release layout, and generate demo.mp4 between the two keyframes in assets/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build && { bash scripts/build.sh >build/demo-build.log 2>&1 || { cat build/demo-build.log; exit 1; }; }
./build/inbetween synth-model --preset tiny --out build/demo-model --overwrite --quiet
./build/inbetween generate --model build/demo-model \
  --first assets/first.png --last assets/last.png \
  --prompt "The sun sets slowly over a calm sea, the sky turning orange" \
  --frames 33 --size 320x176 --steps 12 --seed 42 --output demo.mp4
ffprobe -v error -show_entries stream=codec_name,width,height,nb_frames -of default=nw=1 demo.mp4
