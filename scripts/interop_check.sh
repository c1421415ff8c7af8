#!/usr/bin/env bash
# Interop with today's Hugging Face releases: builds llamaft, makes the venv
# of scripts/setup_interop_env.sh (torch 2.15, transformers 5.24, peft 0.21.2;
# ~5.6 GB, so never in CI) and runs tests/interop/check_interop.py, which
# prints every figure. Run it before changing what llamaft reads or writes.
#   scripts/interop_check.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" --target llamaft >/dev/null
py=$("$root/scripts/setup_interop_env.sh" | tail -n 1)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
exec "$py" "$root/tests/interop/check_interop.py" --llamaft "${LLAMAFT_BUILD_DIR:-$root/build}/llamaft" \
  --workdir "${1:-${TMPDIR:-/tmp}/llamaft-interop}"
