#!/usr/bin/env bash
# The README's main job, on a fresh Debian machine: installs what it needs,
# builds, creates a small Llama with `llamaft init`, generates a synthetic
# instruction task (reverse a string of digits) with the project's own code,
# fine-tunes it with `mpirun -np 2 llamaft train`, and compares the base and
# fine-tuned models' answers on held-out prompts.
# Environment: DEMO_DIR (default ./demo_out), DEMO_STEPS (default 400), DEMO_NP (default 2),
# DEMO_PROMPTS (held-out prompts compared, default 50), DEMO_SKIP_BUILD (set by the test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${DEMO_DIR:-$root/demo_out}
steps=${DEMO_STEPS:-400}
np=${DEMO_NP:-2}

echo "== 1/6 dependencies and build"
if [ -z "${DEMO_SKIP_BUILD:-}" ]; then  # the demo test runs on a finished build
  "$root/scripts/install-deps.sh"
  "$root/scripts/build.sh" --target llamaft >/dev/null
fi
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
rm -rf "$out"
mkdir -p "$out"

echo "== 2/6 a small Llama (GQA, llama3 RoPE scaling), randomly initialised"
"$bin" init --preset tiny --seed 0 --output "$out/base"

echo "== 3/6 synthetic task: reverse digits (4000 training rows, 200 held out)"
/usr/bin/python3 "$root/scripts/make_demo_data.py" "$out/data"
head -n 2 "$out/data/train.jsonl"

echo "== 4/6 base model on the held-out set"
"$bin" eval --model "$out/base" --data "$out/data/test.jsonl" --seq-len 16 | tee "$out/eval_base.json"

echo "== 5/6 fine-tuning: mpirun -np $np llamaft train ($steps steps)"
cat > "$out/train.cfg" <<CFG
[model]
path = $out/base
[data]
path = $out/data/train.jsonl
seq_len = 16
shuffle = true
[train]
global_batch_size = 32
micro_batch_size = 16
steps = $steps
lr = 3e-3
min_lr = 3e-4
warmup_steps = 20
lr_schedule = cosine
[fsdp]
strategy = full_shard
[output]
dir = $out/run
CFG
mpirun --oversubscribe -np "$np" "$bin" train --config "$out/train.cfg"
"$bin" eval --model "$out/run/model" --data "$out/data/test.jsonl" --seq-len 16 | tee "$out/eval_tuned.json"

echo "== 6/6 answers to held-out prompts, base vs fine-tuned"
/usr/bin/python3 "$root/scripts/demo_compare.py" --llamaft "$bin" --base "$out/base" --tuned "$out/run/model" \
  --prompts "$out/data/test_prompts.jsonl" --limit "${DEMO_PROMPTS:-50}" | tee "$out/compare.txt"

echo
echo "Where things went:"
echo "  base model        $out/base"
echo "  fine-tuned model  $out/run/model   (HF config.json + model.safetensors)"
echo "  metrics           $out/run/metrics.jsonl   (one JSON line per step)"
echo "  effective config  $out/run/config.cfg"
