#!/usr/bin/env bash
# The README's main job, on a fresh Debian machine: installs what it needs,
# builds, then shows a LoRA fine-tune end to end with the project's own data:
#   1. `llamaft init` a small Llama, and give it a short full "pre-training"
#      on a copy task (digits => the same digits), standing in for a
#      downloaded base model: this demo reaches no model hub;
#   2. generate an instruction task (digits => the digits reversed),
#      `llamaft prepare` it, and fine-tune the base with LoRA via
#      `mpirun -np 2 llamaft train`;
#   3. compare the base model's and the fine-tuned model's answers to
#      held-out prompts side by side, with exact-match accuracy before and after.
# Environment: DEMO_DIR (default ./demo_out), DEMO_STEPS (LoRA steps, default 400), DEMO_NP (default 2),
# DEMO_METHOD (lora, or qlora for an NF4 base; default lora),
# DEMO_PROMPTS (held-out prompts compared, default 50), DEMO_SKIP_BUILD (set by the test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${DEMO_DIR:-$root/demo_out}
steps=${DEMO_STEPS:-400}
np=${DEMO_NP:-2}
method=${DEMO_METHOD:-lora}
quant_args=(); [[ "$method" == qlora ]] && quant_args=(--quant nf4)

echo "== 1/7 dependencies and build"
if [ -z "${DEMO_SKIP_BUILD:-}" ]; then  # the demo test runs on a finished build
  "$root/scripts/install-deps.sh"
  "$root/scripts/build.sh" --target llamaft >/dev/null
fi
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
rm -rf "$out"
mkdir -p "$out"

echo "== 2/7 a small Llama (GQA, llama3 RoPE scaling), randomly initialised"
"$bin" init --preset tiny --seed 0 --output "$out/init"

echo "== 3/7 the project's own data: a copy task (pre-training) and a reversal task (fine-tuning)"
/usr/bin/python3 "$root/scripts/make_demo_data.py" "$out/data/copy" --task copy --seed 1
/usr/bin/python3 "$root/scripts/make_demo_data.py" "$out/data/reverse" --task reverse --seed 0
"$bin" prepare --input "$out/data/copy/train.jsonl" --format tokens --output "$out/prepared/copy" --seq-len 16
"$bin" prepare --input "$out/data/reverse/train.jsonl" --format tokens --output "$out/prepared/reverse" \
  --seq-len 16 --val-fraction 0.05

common=(--data.seq_len 16 --data.shuffle true --train.global_batch_size 32 --train.micro_batch_size 16
        --train.lr_schedule cosine --train.warmup_steps 20 --output.progress false)
echo "== 4/7 a base model: $np ranks, full fine-tuning on the copy task (300 steps)"
mpirun -q --oversubscribe -np "$np" "$bin" train --model.path "$out/init" --data.path "$out/prepared/copy/train" \
  "${common[@]}" --train.steps 300 --train.lr 3e-3 --train.min_lr 3e-4 --output.dir "$out/base_run"
base=$out/base_run/model

echo "== 5/7 LoRA fine-tuning on the reversal task: mpirun -np $np llamaft train ($steps steps)"
cat > "$out/lora.cfg" <<CFG
[model]
path = $base
[data]
path = $out/prepared/reverse/train
seq_len = 16
shuffle = true
[train]
global_batch_size = 32
micro_batch_size = 16
steps = $steps
lr = 1e-2
min_lr = 1e-3
warmup_steps = 20
lr_schedule = cosine
eval_every = 100
[finetune]
method = $method
[lora]
r = 16
alpha = 32
[fsdp]
strategy = full_shard
[checkpoint]
every_steps = 200
[output]
dir = $out/lora_run
CFG
mpirun -q --oversubscribe -np "$np" "$bin" train --config "$out/lora.cfg"

echo "== 6/7 held-out loss and token accuracy, base vs base + adapter"
"$bin" eval --model "$base" --data "$out/prepared/reverse/val" --seq-len 16 | tee "$out/eval_base.json"
"$bin" eval --model "$base" --adapter "$out/lora_run/adapter" "${quant_args[@]}" --data "$out/prepared/reverse/val" --seq-len 16 |
  tee "$out/eval_tuned.json"

echo "== 7/7 answers to held-out prompts, base vs fine-tuned (base + LoRA adapter)"
/usr/bin/python3 "$root/scripts/demo_compare.py" --llamaft "$bin" --base "$base" --adapter "$out/lora_run/adapter" \
  "${quant_args[@]}" --prompts "$out/data/reverse/test_prompts.jsonl" --limit "${DEMO_PROMPTS:-50}" | tee "$out/compare.txt"
/usr/bin/python3 "$root/scripts/plot_metrics.py" "$out/lora_run" --output "$out/lora_run/metrics.png" || true

echo
echo "Where things went:"
echo "  base model       $base   (HF config.json + model.safetensors)"
echo "  LoRA adapter     $out/lora_run/adapter   (PEFT format: PeftModel.from_pretrained loads it)"
echo "  checkpoints      $out/lora_run/checkpoints   (sharded HDF5; rerun the train command to resume)"
echo "  metrics          $out/lora_run/metrics.jsonl and metrics.png; run_info.json, config.cfg"
echo "  merge it:        $bin merge --model $base --adapter $out/lora_run/adapter --output $out/merged"
