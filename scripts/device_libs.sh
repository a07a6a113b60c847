#!/usr/bin/env bash
# Copies the Debian shared libraries that the given binaries need into .device-libs/, so binaries
# built here run on the Ubuntu GPU machine with LD_LIBRARY_PATH=.device-libs. Skipped: glibc, the
# CUDA libraries, and every library whose soname the GPU machine already has (its `ldconfig -p`,
# saved in scripts/gpu_machine_libs.txt). Usage: scripts/device_libs.sh BIN...
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device-libs
have=scripts/gpu_machine_libs.txt
for bin in "$@"; do
  ldd "$bin" | awk '/=> \//{print $1, $3}' | while read -r name lib; do
    case "$name" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*|ld-linux*) continue ;;
      libcuda*|libcublas*|libcudart*|libcudnn*|libnccl*) continue ;;
    esac
    if [ -f "$have" ] && grep -qxF "$name" "$have"; then continue; fi
    cp -Lu "$lib" .device-libs/
  done
done
du -sh .device-libs
