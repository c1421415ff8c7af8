#!/usr/bin/env bash
# llamaft's GGUF files in llama.cpp itself (not in CI: building llama.cpp
# takes minutes). In a bench-only venv it builds llama-cpp-python from source
# (CMake; the build time is measured and kept in the venv's stamp), fine-tunes
# SmolLM2-135M-Instruct with LoRA on TinyStories and merges the adapter, then
# runs scripts/gguf_check.py: exports, llama.cpp's own converter and
# llama-quantize on the same folder (when a Python with torch >= 2.1 is
# around), tokenizer and chat template, greedy decoding (f32, f16) and
# perplexity (every outtype) against llamaft.
#
#   scripts/gguf_check.sh                 everything (first run: ~15-20 min on 2 cores, most of it the build)
#   LLAMAFT_GGUF_VENV=...                 the bench venv (default .venv-gguf)
#   LLAMAFT_CONVERT_PYTHON=...            Python for convert_hf_to_gguf.py (default: .venv-lm-eval's or
#                                         .venv-interop's when present; empty string skips that part)
#   LLAMAFT_GGUF_CHECK_DIR=...            work folder (default build/gguf_check)
# Exit 77 when PyPI is out of reach; 1 when a check fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
llamaft=${LLAMAFT_BIN:-$root/build/llamaft}
venv=${LLAMAFT_GGUF_VENV:-$root/.venv-gguf}
work=${LLAMAFT_GGUF_CHECK_DIR:-$root/build/gguf_check}
version=0.3.36  # llama-cpp-python; vendors ggml-org/llama.cpp@0c1e57098
threads=${LLAMAFT_THREADS:-$(nproc)}
log() { echo "gguf_check: $*" >&2; }

[ -x "$llamaft" ] || { log "no llamaft at $llamaft (run scripts/build.sh, or set LLAMAFT_BIN)"; exit 1; }
mkdir -p "$work"
cache=${LLAMAFT_MODEL_CACHE:-$HOME/.cache/llamaft}/gguf-bench
mkdir -p "$cache"

# 1. The bench venv: llama-cpp-python built from its sdist with CMake.
stamp=$venv/.llamaft-gguf-stamp
want="gguf-bench-v1 llama-cpp-python==$version"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(head -1 "$stamp")" = "$want" ]; then
  log "llama-cpp-python $version already built ($(sed -n 2p "$stamp"))"
else
  sdist=$cache/llama_cpp_python-$version.tar.gz
  /usr/bin/python3 -m venv --clear "$venv"
  if [ ! -f "$sdist" ]; then
    log "downloading the llama-cpp-python $version sdist (77 MB) from PyPI"
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python -d "$cache" \
      "llama-cpp-python==$version" >&2 || { log "PyPI is unreachable; skipping"; exit 77; }
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check numpy pyyaml >&2 || { log "PyPI is unreachable; skipping"; exit 77; }
  log "building llama.cpp $version from source (CMake, $threads jobs; the llava/mtmd library is not built)"
  start=$(date +%s)
  CMAKE_BUILD_PARALLEL_LEVEL=$threads CMAKE_ARGS="-DLLAVA_BUILD=OFF" \
    "$venv/bin/pip" install -q --disable-pip-version-check --no-binary llama-cpp-python "$sdist" >&2
  secs=$(( $(date +%s) - start ))
  log "built and installed in $secs s"
  printf '%s\nbuilt in %s s on %s, %s cores (%s)\n' "$want" "$secs" "$(date -u +%Y-%m-%d)" "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" > "$stamp"
fi
src=$cache/src/llama_cpp_python-$version
if [ ! -d "$src/vendor/llama.cpp" ]; then
  mkdir -p "$cache/src"
  tar xzf "$cache/llama_cpp_python-$version.tar.gz" -C "$cache/src"
fi

# 2. The model, and a fine-tuned, merged copy.
model=$("$root/scripts/fetch_smollm2.sh" | tail -1)
stories=/work/shared/assets/tinystories/tiny_stories.txt
[ -f "$stories" ] || stories=$root/../shared/assets/tinystories/tiny_stories.txt
head -n 8000 "$stories" > "$work/train.txt"
tail -n 1500 "$stories" > "$work/heldout.txt"
merged=$work/merged
if [ ! -f "$merged/config.json" ]; then
  rm -rf "$work/prepared" "$work/run"
  "$llamaft" prepare --model "$model" --input "$work/train.txt" --format text --template none --output "$work/prepared" \
    --seq-len 256 --pack true >&2
  log "fine-tuning $model with LoRA (r 16, 12 steps of 4 x 256 TinyStories tokens)"
  start=$(date +%s)
  "$llamaft" train --model.path "$model" --data.path "$work/prepared" --output.dir "$work/run" \
    --finetune.method lora --lora.r 16 --lora.alpha 32 --train.steps 12 --train.global_batch_size 4 --data.seq_len 256 \
    --train.lr 1e-3 --output.progress false --checkpoint.at_end false --runtime.threads "$threads" >&2
  log "trained in $(( $(date +%s) - start )) s; merging"
  "$llamaft" merge --model "$model" --adapter "$work/run/adapter" --output "$merged" --force >&2
fi

# 3. The checks.
convert_py=${LLAMAFT_CONVERT_PYTHON-}
if [ -z "${LLAMAFT_CONVERT_PYTHON+x}" ]; then
  for p in "$root/.venv-lm-eval/bin/python" "$root/.venv-interop/bin/python"; do
    if [ -x "$p" ] && "$p" -c 'import torch, transformers, numpy; assert int(torch.__version__.split(".")[0]) >= 2' 2>/dev/null; then
      convert_py=$p; break
    fi
  done
fi
vendored=$(grep -m1 -o 'ggml-org/llama.cpp@[0-9a-f]*' "$src/CHANGELOG.md")
log "llama.cpp: $("$venv/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'), vendored \
$vendored; converter Python: ${convert_py:-none}"
exec "$venv/bin/python" "$root/scripts/gguf_check.py" --llamaft "$llamaft" --model "$model" --merged "$merged" \
  --heldout "$work/heldout.txt" --llama-src "$src/vendor/llama.cpp" --convert-python "$convert_py" \
  --workdir "$work" --threads "$threads"
