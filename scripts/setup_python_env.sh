#!/usr/bin/env bash
# The Python environment of the reference tests: a venv on Debian's Python
# 3.11 that sees Debian's torch 1.13, numpy, h5py and sentencepiece
# (--system-site-packages) and adds pinned PyPI packages: safetensors and
# transformers 4.44.2 (the newest line that still runs on torch 1.13 and
# knows llama3 rope_scaling; tests use its LlamaForCausalLM as the oracle).
# Idempotent: a stamp file records the installed pins.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LLAMAFT_VENV:-$root/.venv-ref}
pins=("safetensors==0.4.5" "transformers==4.44.2" "tokenizers==0.19.1" "huggingface_hub==0.24.7" "tiktoken==0.7.0")
stamp="$venv/.llamaft-pins"
want="${pins[*]}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import torch, transformers" 2>/dev/null; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"; then
  echo "$want" > "$stamp"
else
  echo "setup_python_env: could not install ${pins[*]} from PyPI; reference tests fall back to the own torch oracle" >&2
fi
echo "reference python: $venv/bin/python"
