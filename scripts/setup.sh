#!/usr/bin/env bash
# Installs every build and test dependency of inbetween from Debian 12 packages. Tests use ffmpeg and
# ffprobe (MP4 checks) and python3 (an independent reader of .pth files); they fail without them.
# `setup.sh --demo` installs only what building the `inbetween` command needs (scripts/demo.sh).
# Safe to run repeatedly; skips apt entirely when everything is already present.
set -euo pipefail

build=(
  build-essential cmake ninja-build ccache pkg-config
  libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libopenblas-dev libutf8proc-dev libpng-dev libjpeg62-turbo-dev libwebp-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libcpp-httplib-dev
)
tests=(
  git ca-certificates libgtest-dev libgmock-dev libstb-dev ffmpeg python3
  clang libclang-rt-14-dev  # libFuzzer for scripts/fuzz.sh, which scripts/test.sh runs
)

if [ "${1:-}" = "--demo" ]; then
  bash "$(dirname "$0")/apt_install.sh" setup "${build[@]}"
else
  bash "$(dirname "$0")/apt_install.sh" setup "${build[@]}" "${tests[@]}"
fi
