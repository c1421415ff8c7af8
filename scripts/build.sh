#!/usr/bin/env bash
# Configures and builds llamaft into ${LLAMAFT_BUILD_DIR:-build} (Release).
# CUDA code is compiled whenever nvcc is found (LLAMAFT_CUDA=AUTO).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLAMAFT_BUILD_DIR:-$root/build}
jobs=${LLAMAFT_JOBS:-$(nproc)}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${LLAMAFT_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$jobs" "$@"
