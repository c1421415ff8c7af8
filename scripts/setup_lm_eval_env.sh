#!/usr/bin/env bash
# The bench-only lm-evaluation-harness environment for scripts/lm_eval_check.sh:
# lm_eval 0.4.13 with its Hugging Face backend on torch 2.x from PyPI, in a
# venv of its own (never the CI path: torch 2.x brings GBs of CUDA wheels).
# Idempotent: a stamp in the venv records the pins. The venv's python path is
# the last line on stdout.
# Usage: scripts/setup_lm_eval_env.sh   (LLAMAFT_LM_EVAL_VENV overrides the path)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LLAMAFT_LM_EVAL_VENV:-$root/.venv-lm-eval}
py=$venv/bin/python
stamp=$venv/.llamaft-lm-eval-stamp
pins=("lm_eval[hf]==0.4.13" torch==2.15.0 transformers==5.24.0)
want="lm-eval-v1 ${pins[*]}"
if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$py"; exit 0
fi
base_py=$(command -v python3)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null && base_py=/usr/bin/python3
"$base_py" -m venv --clear "$venv"
start=$(date +%s)
"$py" -m pip install -q --disable-pip-version-check "${pins[@]}" >&2
echo "setup_lm_eval_env: installed in $(( $(date +%s) - start )) s, $(du -sh "$venv" | cut -f1) on disk:" \
     "$("$py" -c 'import torch, transformers, lm_eval, datasets; print("torch", torch.__version__, "transformers", transformers.__version__, "lm_eval", lm_eval.__version__ if hasattr(lm_eval, "__version__") else "?", "datasets", datasets.__version__)')" >&2
echo "$want" > "$stamp"
echo "$py"
