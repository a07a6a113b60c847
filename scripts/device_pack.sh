#!/usr/bin/env bash
# Packs what the GPU tests need on the lent GPU machine into .device-pack/pack.tar.xz (the carry
# limit is 64 MiB): the gpu-labelled test binaries and the GPU benchmarks from build/, the fixture case, and the Debian
# libraries they link (scripts/device_libs.sh). There, run:
#   tar -xJf .device-pack/pack.tar.xz && export LD_LIBRARY_PATH=$PWD/.device-libs \
#     INBETWEEN_FIXTURE=$PWD/.device-build/fixture && cd .device-build && ./test_ops_gpu && ...
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURE="${INBETWEEN_FIXTURE:-../shared/fixtures/tiny-flf2v}"
rm -rf .device-build .device-libs .device-pack
mkdir -p .device-build .device-pack
bins=()
for b in build/tests/*_gpu build/bench/*_gpu; do [ -x "$b" ] && bins+=("$b"); done
[ ${#bins[@]} -gt 0 ] || { echo "device_pack: no build/tests/*_gpu binaries (CUDA build?)"; exit 1; }
cp "${bins[@]}" .device-build/
cp -r "$FIXTURE" .device-build/fixture
bash scripts/device_libs.sh .device-build/test_* .device-build/bench_*
tar -cJf .device-pack/pack.tar.xz .device-build .device-libs
grep -qx "/.device-pack/" .git/info/exclude 2>/dev/null || echo "/.device-pack/" >> .git/info/exclude
ls -la .device-pack/pack.tar.xz
