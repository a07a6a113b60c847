#!/usr/bin/env bash
# Copies the Debian shared libraries that the given binaries need (other than glibc and the CUDA
# libraries, which the GPU machine has) into .device-libs/, so binaries built here run on the
# Ubuntu GPU machine with LD_LIBRARY_PATH=.device-libs. Usage: scripts/device_libs.sh BIN...
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device-libs
for bin in "$@"; do
  ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*|ld-linux*) ;;
      libcuda*|libcublas*|libcudart*|libcudnn*|libnccl*) ;;
      *) cp -Lu "$lib" .device-libs/ ;;
    esac
  done
done
du -sh .device-libs
