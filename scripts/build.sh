#!/usr/bin/env bash
# Configures and builds inbetween with its tests into build/ (Release, Ninja). The CUDA backend is
# built when nvcc is found and skipped otherwise. Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then export PATH=/usr/local/cuda/bin:$PATH; fi
# INBETWEEN_TESTS=ON explicitly: scripts/demo.sh configures the same folder without them.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINBETWEEN_TESTS=ON "$@" >build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
grep -E "inbetween: CUDA backend" build-configure.log || true
ninja -C build
