#!/usr/bin/env bash
# Memory and throughput by fine-tuning mode (full, lora, lora-bf16, lora-int8, qlora),
# all measured in one run on this machine:
#  - per-rank memory of `llamaft train` at np = 2 on the tiny and the
#    stories15M-shaped `small` presets: the backend's peak bytes and the peak
#    RSS, each against `llamaft plan`'s estimate for the same settings;
#  - tokens/s by mode on `small` (np = 2, one thread per rank), as a ratio to
#    full fine-tuning measured in the same run;
#  - via `plan` only: per-rank memory by mode for llama3-8b and llama3-70b at
#    np = 1, 8 and 64 (full_shard, seq 2048, micro batch 1, activation
#    checkpointing; fp32 on the CPU backend, which `plan` models).
# Usage: bench/run_lora_modes_bench.sh [steps=6] [seq=256]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLAMAFT_BUILD_DIR:-$root/build}
bin=$build/llamaft
steps=${1:-6}; seq=${2:-256}
work=${BENCH_DIR:-/tmp/llamaft-lora-bench}
rm -rf "$work"; mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

modes=("full:full:none" "lora:lora:none" "lora-bf16:lora:bf16" "lora-int8:lora:int8" "qlora:qlora:none")
for preset in tiny small; do
  "$bin" init --preset "$preset" --seed 0 --output "$work/$preset" >/dev/null
  vocab=$([ "$preset" = tiny ] && echo 1024 || echo 32000)
  /usr/bin/python3 - "$work/$preset.jsonl" "$seq" "$vocab" <<'PY'
import json, random, sys
rng = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [rng.randrange(3, int(sys.argv[3])) for _ in range(int(sys.argv[2]))]}) + "\n")
PY
  for m in "${modes[@]}"; do
    IFS=: read -r name method quant <<<"$m"
    args=(--finetune.method "$method" --quant.base "$quant" --data.seq_len "$seq" --train.micro_batch_size 4
          --fsdp.strategy full_shard)
    OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np 2 "$bin" train --model.path "$work/$preset" \
      --data.path "$work/$preset.jsonl" --train.global_batch_size 8 --train.steps "$steps" \
      --output.dir "$work/run_${preset}_$name" --output.export false --output.progress false \
      --checkpoint.at_end false "${args[@]}" 2> "$work/run_${preset}_$name.log" ||
      { cat "$work/run_${preset}_$name.log"; exit 1; }
    "$bin" plan --model.path "$work/$preset" --np 2 --json "${args[@]}" > "$work/plan_${preset}_$name.json"
  done
done
for preset in llama3-8b llama3-70b; do
  for np in 1 8 64; do
    for m in "${modes[@]}"; do
      IFS=: read -r name method quant <<<"$m"
      "$bin" plan --preset "$preset" --np "$np" --json --finetune.method "$method" --quant.base "$quant" \
        --fsdp.strategy full_shard --data.seq_len 2048 --fsdp.activation_checkpointing true \
        > "$work/plan_${preset}_np${np}_$name.json"
    done
  done
done

/usr/bin/python3 - "$work" "$steps" <<'PY'
import json, sys
work, steps = sys.argv[1], int(sys.argv[2])
modes = ["full", "lora", "lora-bf16", "lora-int8", "qlora"]
MiB, GiB = 2 ** 20, 2 ** 30
print(f"== per-rank memory at np = 2, measured vs `llamaft plan` (seq from the run, micro batch 4)")
print(f"{'model':6} {'mode':10} {'plan MiB':>9} {'backend peak':>13} {'/plan':>6} {'peak RSS':>9} {'/plan':>6}"
      f" {'params':>8} {'grads+opt':>10}")
tps = {}
for preset in ("tiny", "small"):
    for m in modes:
        plan = json.loads(open(f"{work}/plan_{preset}_{m}.json").read().strip().splitlines()[-1])
        summ = json.load(open(f"{work}/run_{preset}_{m}/summary.json"))
        peak, rss = summ["peak_backend_bytes_rank0"], summ["peak_rss_bytes_max_rank"]
        print(f"{preset:6} {m:10} {plan['total'] / MiB:9.1f} {peak / MiB:13.1f} {peak / plan['total']:6.2f}"
              f" {rss / MiB:9.1f} {rss / plan['total']:6.2f} {plan['params'] / MiB:8.2f}"
              f" {(plan['grads'] + plan['optimizer']) / MiB:10.2f}")
        rows = [json.loads(l) for l in open(f"{work}/run_{preset}_{m}/metrics.jsonl")][1:]  # drop the warm-up step
        tps[(preset, m)] = sum(r["tokens_per_s"] for r in rows) / len(rows)
print()
print(f"== tokens/s by mode, np = 2 x 1 thread, {steps - 1} timed steps (ratio to full fine-tuning in this run)")
for preset in ("tiny", "small"):
    base = tps[(preset, "full")]
    print(f"{preset:6} " + "  ".join(f"{m} {tps[(preset, m)]:8.0f} ({tps[(preset, m)] / base:4.2f}x)" for m in modes))
print()
print("== per-rank GiB from `llamaft plan` (full_shard, seq 2048, micro batch 1, activation checkpointing, fp32)")
print(f"{'model':11} {'np':>3} " + " ".join(f"{m:>10}" for m in modes) + "   qlora/full")
for preset in ("llama3-8b", "llama3-70b"):
    for np_ in (1, 8, 64):
        tot = {m: json.loads(open(f"{work}/plan_{preset}_np{np_}_{m}.json").read().strip().splitlines()[-1])["total"]
               for m in modes}
        print(f"{preset:11} {np_:3d} " + " ".join(f"{tot[m] / GiB:10.2f}" for m in modes) +
              f"   {tot['qlora'] / tot['full']:.3f}")
PY
