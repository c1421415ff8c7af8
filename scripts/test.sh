#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, and runs
# every test through ctest. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" --tests
"$root/scripts/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cd "${LLAMAFT_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 900 "$@"
