#!/usr/bin/env bash
# kill -9 of a random rank at a random moment during asynchronous saves,
# TRIALS times (default 25), each followed by a check that the checkpoint
# `latest` names verifies (python-crc32c over every block) and resumes.
# Usage: scripts/checkpoint_kill_stress.sh [TRIALS]   (SEED=N for another draw)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
CKPT_KILL_TRIALS=${1:-25} CKPT_KILL_SEED=${SEED:-$(date +%s)} exec /usr/bin/python3 \
  "$root/tests/mpi/check_checkpoint_faults.py" --only-kill-trials \
  --llamaft "${LLAMAFT_BUILD_DIR:-$root/build}/llamaft" --workdir "${WORKDIR:-/tmp/llamaft-kill-stress}"
