#!/usr/bin/env bash
# `llamaft eval --task` against lm-evaluation-harness 0.4.13 itself (bench only,
# never in CI: its venv is ~6 GB of torch 2 wheels). On SmolLM2-135M-Instruct:
#  1. generates two tasks from shared/assets TinyStories text
#     (tests/lm_eval/make_tinystories_tasks.py): a 250-item cloze
#     (multiple_choice) and 40 stories (loglikelihood_rolling);
#  2. runs `llamaft eval --task` on each, and `lm_eval --model hf --model_args
#     pretrained=DIR,dtype=float32 --include_path TASKDIR --tasks NAME --device
#     cpu --log_samples` offline (HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1);
#     and the same at dtype=float64 (the arithmetic's exact value, to judge
#     fp32 rounding on both sides);
#  3. tests/lm_eval/compare_lm_eval.py: the same answer on every item, acc and
#     acc_norm equal, every loglikelihood within 1e-5 relative of lm_eval's
#     float64 run and, against its float32 run, within 1e-5 relative plus
#     lm_eval fp32's own distance from fp64; perplexities;
#  4. throughput on the cloze's first LLAMAFT_LM_EVAL_BENCH_ITEMS (100) items at
#     the same thread count, in the same run: llamaft's items/s (its scoring)
#     against lm_eval's hf backend (simple_evaluate with the model loaded), at
#     batch sizes LLAMAFT_LM_EVAL_BATCHES ("1 8"); the whole commands' wall
#     times of step 2 are printed too.
# Usage: scripts/lm_eval_check.sh [THREADS]   (exit 77 when the model cannot be fetched)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${1:-2}
bin=${LLAMAFT_BIN:-$root/build/llamaft}
shared=${LLAMAFT_SHARED:-$root/../shared}
work=${LLAMAFT_LM_EVAL_WORK:-/tmp/llamaft-lm-eval}
text=$shared/assets/tinystories/tiny_stories.txt
[ -f "$text" ] || { echo "lm_eval_check: $text not found (set LLAMAFT_SHARED)"; exit 77; }
set +e
model=$("$root/scripts/fetch_smollm2.sh" | tail -n 1); rc=$?
set -e
[ $rc -eq 0 ] || exit $rc
py=$("$root/scripts/setup_lm_eval_env.sh" | tail -n 1)
venv=$(dirname "$(dirname "$py")")
rm -rf "$work" && mkdir -p "$work/tasks"
python3 "$root/tests/lm_eval/make_tinystories_tasks.py" "$text" "$work/tasks" >/dev/null
export OMP_NUM_THREADS=$threads HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "lm_eval_check: $("$py" -c 'import torch, transformers, lm_eval, datasets, importlib.metadata as m; print("lm_eval", m.version("lm_eval"), "torch", torch.__version__, "transformers", transformers.__version__, "datasets", datasets.__version__)'), $threads threads, $(nproc) cores, model $model"
status=0
for task in tinystories_cloze tinystories_ppl; do
  start=$(date +%s.%N)
  "$bin" eval --model "$model" --task "$work/tasks/$task.yaml" --output-items "$work/$task.llamaft.jsonl" \
    --threads "$threads" > "$work/$task.llamaft.json" 2> "$work/$task.llamaft.log"
  ours_wall=$(echo "$(date +%s.%N) - $start" | bc)
  start=$(date +%s.%N)
  "$venv/bin/lm_eval" --model hf --model_args "pretrained=$model,dtype=float32" --include_path "$work/tasks" \
    --tasks "$task" --device cpu --log_samples --output_path "$work/lm_eval_out" > "$work/$task.lm_eval.log" 2>&1
  theirs_wall=$(echo "$(date +%s.%N) - $start" | bc)
  "$venv/bin/lm_eval" --model hf --model_args "pretrained=$model,dtype=float64" --include_path "$work/tasks" \
    --tasks "$task" --device cpu --log_samples --output_path "$work/lm_eval_fp64" > "$work/$task.lm_eval64.log" 2>&1
  echo "lm_eval_check: $task: llamaft $(cat "$work/$task.llamaft.json")"
  printf 'lm_eval_check: %s: whole command wall: llamaft %.1f s, lm_eval %.1f s\n' "$task" "$ours_wall" "$theirs_wall"
  python3 "$root/tests/lm_eval/compare_lm_eval.py" "$work/lm_eval_out" "$task" "$work/$task.llamaft.jsonl" \
    "$work/$task.llamaft.json" --fp64 "$work/lm_eval_fp64" || status=1
done
# Throughput on the cloze, same threads, both with the model loaded.
bench_items=${LLAMAFT_LM_EVAL_BENCH_ITEMS:-100}
for batch in ${LLAMAFT_LM_EVAL_BATCHES:-1 8}; do
  "$bin" eval --model "$model" --task "$work/tasks/tinystories_cloze.yaml" --threads "$threads" \
    --batch-size "$batch" --limit "$bench_items" 2>/dev/null | python3 -c "import json,sys; j=json.loads(sys.stdin.read()); print(f'lm_eval_check: throughput batch $batch: llamaft {j[\"items_per_s\"]:.2f} items/s ({j[\"items\"]} items in {j[\"forward_s\"]:.1f} s of scoring, acc {j[\"acc\"]})')"
  "$py" "$root/tests/lm_eval/time_lm_eval.py" "$model" "$work/tasks" tinystories_cloze "$threads" "$batch" \
    "$bench_items" 2>/dev/null \
    | tail -n 1 | python3 -c "import json,sys; j=json.loads(sys.stdin.read()); print(f'lm_eval_check: throughput batch $batch: lm_eval hf {j[\"items_per_s\"]:.2f} items/s ({j[\"items\"]} items in {j[\"seconds\"]:.1f} s of simple_evaluate, acc {j[\"acc\"]})')"
done
echo "lm_eval_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
