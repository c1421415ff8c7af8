#!/usr/bin/env bash
# The interop environment: today's Hugging Face releases on torch 2.x from
# PyPI, in a venv of its own (never the CI path: torch 2.x brings ~5 GB of
# CUDA wheels). Used by scripts/interop_check.sh and the bench scripts.
#   torch 2.15.0, transformers 5.24.0, peft 0.21.2, accelerate 1.x,
#   safetensors, numpy.
# Idempotent: a stamp in the venv records the pins. The venv's python path is
# the last line on stdout.
# Usage: scripts/setup_interop_env.sh   (LLAMAFT_INTEROP_VENV overrides the path)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LLAMAFT_INTEROP_VENV:-$root/.venv-interop}
py=$venv/bin/python
stamp=$venv/.llamaft-interop-stamp
pins=(torch==2.15.0 transformers==5.24.0 peft==0.21.2 accelerate safetensors numpy)
want="interop-v1 ${pins[*]}"
if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$py"; exit 0
fi
base_py=$(command -v python3)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null && base_py=/usr/bin/python3
"$base_py" -m venv --clear "$venv"
start=$(date +%s)
"$py" -m pip install -q --disable-pip-version-check "${pins[@]}" >&2
echo "setup_interop_env: installed in $(( $(date +%s) - start )) s, $(du -sh "$venv" | cut -f1) on disk:" \
     "$("$py" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')" >&2
echo "$want" > "$stamp"
echo "$py"
