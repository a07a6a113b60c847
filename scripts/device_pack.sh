#!/usr/bin/env bash
# Packs what the GPU tests and `inbetween bench` need on the lent GPU machine into
# .device-pack/pack.tar.xz (the carry limit is 64 MiB): a build in build-gpu/ without the MP4
# writer (so no FFmpeg libraries travel), its gpu-labelled test binaries, the GPU benchmarks, the
# `inbetween` executable, the fixture case and the Debian libraries the GPU machine lacks
# (scripts/device_libs.sh). With MP4=1 the build keeps the MP4 writer and its FFmpeg libraries
# travel too (~56 MB packed), so that scripts/gpu_check.sh can also run a `serve` job. There, run:
#   tar -xJf .device-pack/pack.tar.xz && export LD_LIBRARY_PATH=$PWD/.device-libs \
#     INBETWEEN_FIXTURE=$PWD/.device-build/fixture INBETWEEN_BINARY_DIR=$PWD/.device-build && \
#     cd .device-build && ./test_kernels_gpu && ./inbetween bench ...
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURE="${INBETWEEN_FIXTURE:-../shared/fixtures/tiny-flf2v}"
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then export PATH=/usr/local/cuda/bin:$PATH; fi
mp4=OFF
[ "${MP4:-0}" = 1 ] && mp4=ON
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DINBETWEEN_MP4=$mp4 >build-gpu-configure.log 2>&1 \
  || { cat build-gpu-configure.log; exit 1; }
ninja -C build-gpu
rm -rf .device-build .device-libs .device-pack
mkdir -p .device-build .device-pack
bins=(build-gpu/inbetween)
for b in build-gpu/tests/*_gpu build-gpu/bench/*_gpu; do [ -x "$b" ] && bins+=("$b"); done
[ ${#bins[@]} -gt 1 ] || { echo "device_pack: no build-gpu/tests/*_gpu binaries (CUDA build?)"; exit 1; }
cp "${bins[@]}" .device-build/
cp -r "$FIXTURE" .device-build/fixture
bash scripts/device_libs.sh "${bins[@]}"
tar -cf - .device-build .device-libs | xz -T0 -9 > .device-pack/pack.tar.xz
grep -qx "/.device-pack/" .git/info/exclude 2>/dev/null || echo "/.device-pack/" >> .git/info/exclude
ls -la .device-pack/pack.tar.xz
