#!/usr/bin/env bash
# Installs every build and test dependency of inbetween from Debian 12 packages. Tests use ffmpeg and
# ffprobe (MP4 checks) and python3 (an independent reader of .pth files); they fail without them.
# Safe to run repeatedly; skips apt entirely when everything is already present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libopenblas-dev libutf8proc-dev
  libpng-dev libjpeg62-turbo-dev libwebp-dev libstb-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  ffmpeg python3
  libcpp-httplib-dev
  clang libclang-rt-14-dev
)

bash "$(dirname "$0")/apt_install.sh" setup "${packages[@]}"
