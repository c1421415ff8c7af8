#!/usr/bin/env bash
# The Python environment of the reference tests (tests/reference/).
#
# A venv on Debian's Python 3.11 that sees Debian's torch 1.13, numpy and
# sentencepiece (--system-site-packages) plus exact PyPI pins:
#   transformers 4.49.0  the newest release whose Llama still imports on torch
#                        1.13 (4.50 needs torch.distributed.tensor); knows
#                        rope_scaling "llama3" (4.43+) and config head_dim
#                        (4.45+); the tests use its LlamaForCausalLM as oracle.
#   peft 0.21.2 + accelerate 0.34.2 (LoRA forward/backward/merge/save checked).
#   safetensors 0.4.5    an independent reader/writer for llamaft's files.
#   tiktoken 0.7.0       the Llama 3 tokenizer oracle (tests/data).
#   tensorboard 2.17.1   its event-file reader checks llamaft's TensorBoard output.
#   gguf 0.19.0          llama.cpp's gguf-py: reads and dequantizes GGUF files (the
#                        oracle of `llamaft convert`, tests/convert); needs numpy and
#                        yaml (Debian's); transformers' GGUF loader uses it too.
# Everything is installed with --no-deps from the full pin list: Debian's torch
# reports version 1.13.0a0, a pre-release that does not satisfy "torch>=1.13",
# so letting pip resolve would download a multi-GB torch 2.x into the venv.
#
# Idempotent and fast when done: a stamp in the venv records the pins. If PyPI
# is unreachable the script still succeeds and the tests fall back to the own
# torch oracle (llama_ref.py), saying so. The venv's python path is the last
# (and only) line on stdout.
#
# Usage: scripts/setup_python_env.sh            (LLAMAFT_VENV overrides the venv path)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LLAMAFT_VENV:-$root/.venv-ref}
py=$venv/bin/python
stamp=$venv/.llamaft-ref-stamp
apt_packages=(python3-venv python3-torch python3-numpy python3-sentencepiece python3-yaml)
pins=(
  safetensors==0.4.5
  transformers==4.49.0 tokenizers==0.21.4 huggingface_hub==0.36.2
  filelock==4.3.1 fsspec==2026.9.0 regex==2026.11.19 tqdm==4.70.1
  peft==0.21.2 accelerate==0.34.2 Jinja2==3.1.6 MarkupSafe==3.0.4
  tiktoken==0.7.0
  tensorboard==2.17.1 protobuf==4.25.5 absl-py==2.1.0 six==1.16.0
  gguf==0.19.0
)
want="stamp-v3 ${pins[*]}"
log() { echo "setup_python_env: $*" >&2; }

if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$py"
  exit 0
fi

# 1. Debian packages, only those missing (apt-get update only then).
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root to apt-get install ${missing[*]}"; exit 1; }
    sudo=sudo
  fi
  log "installing ${missing[*]} with apt-get"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. The venv. One of ours from older pins is rebuilt so no stale package stays.
if [ -x "$py" ] && ! grep -q "include-system-site-packages = true" "$venv/pyvenv.cfg" 2>/dev/null; then
  log "$venv exists without --system-site-packages (Debian's torch would be invisible); remove it or set LLAMAFT_VENV"
  exit 1
fi
if [ -x "$py" ] && { [ -f "$stamp" ] || [ -f "$venv/.llamaft-pins" ]; }; then
  log "rebuilding $venv for the current pins"
  /usr/bin/python3 -m venv --clear --system-site-packages "$venv"
elif [ ! -x "$py" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi

# 3. PyPI pins; failure (no network) leaves the tests on the own oracle.
if ! "$py" -m pip install -q --disable-pip-version-check --no-deps --retries 2 --timeout 30 "${pins[@]}"; then
  log "could not install the PyPI pins; reference tests compare against the own torch oracle only"
  echo "$py"
  exit 0
fi
if "$py" - <<'EOF'
import torch, numpy, sentencepiece, safetensors.numpy
import gguf.quants
from transformers import LlamaForCausalLM, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
import peft
assert "llama3" in ROPE_INIT_FUNCTIONS, "transformers without llama3 rope_scaling"
m = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}))
ids = torch.arange(6)[None]
m(input_ids=ids, labels=ids, use_cache=False).loss.backward()
EOF
then
  echo "$want" > "$stamp"
  log "ready: torch $("$py" -c 'import torch; print(torch.__version__)'), ${pins[*]}"
else
  log "the pinned transformers/peft do not work here; reference tests compare against the own torch oracle only"
fi
echo "$py"
