#!/usr/bin/env bash
# The Python environment of output.tracker (scripts/llamaft_track.py) and of its
# round-trip tests (tests/tracker/): the official W&B and MLflow clients in a venv
# of their own, never torch.
#   wandb 0.31.0          offline runs for `wandb sync`; `wandb leet inspect` reads
#                         the .wandb transaction log back (the tests use it).
#   mlflow-skinny 3.17.2  MLflow's own tracking client without the server and the
#                         ML flavours (full `mlflow` is ~920 MB with pandas, scipy,
#                         pyarrow, sklearn; skinny is the same MlflowClient).
#   sqlalchemy + alembic  the sqlite:/// store (MLflow 3 refuses file stores unless
#                         MLFLOW_ALLOW_FILE_STORE=true).
# Every transitive dependency is pinned by scripts/tracker-constraints.txt.
# Measured here: ~35 s and ~245 MB from PyPI.
#
# Idempotent and fast when done (a stamp in the venv records the pins). Exits 0
# with a message if PyPI is unreachable: the tracker tests then skip.
# The venv's python path is the last (and only) line on stdout; point
# tracker.python at it.
#
# Usage: scripts/setup_tracker_env.sh      (LLAMAFT_TRACKER_VENV overrides the path)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LLAMAFT_TRACKER_VENV:-$root/.venv-tracker}
py=$venv/bin/python
stamp=$venv/.llamaft-tracker-stamp
constraints=$root/scripts/tracker-constraints.txt
pins=(wandb==0.31.0 mlflow-skinny==3.17.2 SQLAlchemy==2.1.9 alembic==1.20.1)
want="stamp-v1 ${pins[*]} $(sha1sum "$constraints" | cut -c1-12)"
log() { echo "setup_tracker_env: $*" >&2; }

if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$py"
  exit 0
fi
if ! /usr/bin/python3 -c "import ensurepip" 2>/dev/null; then
  log "python3-venv is missing (apt-get install python3-venv)"
  exit 1
fi
if [ -x "$py" ] && [ -f "$stamp" ]; then
  log "rebuilding $venv for the current pins"
  /usr/bin/python3 -m venv --clear "$venv"
elif [ ! -x "$py" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
start=$(date +%s)
if ! "$py" -m pip install -q --disable-pip-version-check --retries 2 --timeout 30 -c "$constraints" "${pins[@]}"; then
  log "could not install ${pins[*]} from PyPI; the tracker tests will skip"
  exit 0
fi
if "$py" -c "import wandb, mlflow, sqlalchemy, alembic; from mlflow.tracking import MlflowClient"; then
  echo "$want" > "$stamp"
  log "ready in $(( $(date +%s) - start )) s, $(du -sm "$venv" | cut -f1) MB: ${pins[*]}"
else
  log "the installed clients do not import; the tracker tests will skip"
fi
echo "$py"
