#!/usr/bin/env bash
# Training throughput and memory on this machine, all in one run:
#  - llamaft train on the stories15M-shaped `small` preset at np = 1 (all
#    cores as threads) and np = 2 (one thread per rank), with the compute /
#    communication split and the scaling efficiency;
#  - PyTorch training the same model (AdamW + clipping) on the same cores;
#  - peak RSS per rank at np = 1, 2, 4 against `llamaft plan`.
# Usage: bench/run_train_bench.sh [steps=6] [seq=256]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLAMAFT_BUILD_DIR:-$root/build}
bin=$build/llamaft
steps=${1:-6}; seq=${2:-256}
cores=$(nproc)
work=${BENCH_DIR:-/tmp/llamaft-train-bench}
rm -rf "$work"; mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

"$bin" init --preset small --seed 0 --output "$work/model" >/dev/null
/usr/bin/python3 - "$work/data.jsonl" "$seq" <<'PY'
import json, random, sys
rng = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [rng.randrange(3, 32000) for _ in range(int(sys.argv[2]))]}) + "\n")
PY

run() {  # name np threads micro_batch
  # --bind-to none: Open MPI binds each rank to one core by default, which
  # would put all of a multi-threaded rank's threads on that core.
  OMP_NUM_THREADS=$3 mpirun --oversubscribe --bind-to none -np "$2" "$bin" train --model.path "$work/model" \
    --data.path "$work/data.jsonl" --data.seq_len "$seq" --train.global_batch_size 8 --train.micro_batch_size "$4" \
    --train.steps "$steps" --output.dir "$work/$1" --output.export false --output.progress false \
    2> "$work/$1.log" || { cat "$work/$1.log"; exit 1; }
}
run np1 1 "$cores" 4
run np2 2 1 4
run np4 4 1 2
torch=$(/usr/bin/python3 "$root/bench/torch_model.py" 8 "$seq" "$steps" "$cores" train)

/usr/bin/python3 - "$work" "$torch" "$bin" "$seq" <<'PY'
import json, subprocess, sys
work, torch, bin_, seq = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]

def metrics(name):
    rows = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl")][1:]  # drop the warm-up step
    n = len(rows)
    return {k: sum(r[k] for r in rows) / n for k in ("tokens_per_s", "step_s", "comm_s")}

m1, m2 = metrics("np1"), metrics("np2")
print(f"training throughput, stories15M shape (dim 288, 6 layers, vocab 32000), seq {seq}, global batch 8:")
print(f"  {'run':<28} {'tokens/s':>9} {'step s':>8} {'comm s':>8} {'compute s':>9}")
for name, m in (("llamaft np=1 x 2 threads", m1), ("llamaft np=2 x 1 thread", m2)):
    print(f"  {name:<28} {m['tokens_per_s']:9.0f} {m['step_s']:8.3f} {m['comm_s']:8.3f} {m['step_s'] - m['comm_s']:9.3f}")
print(f"  {torch['impl'] + ' x ' + str(torch['threads']) + ' threads':<28} {torch['tokens_per_s']:9.0f} {torch['step_s']:8.3f}")
print(f"  scaling efficiency np=2 vs np=1 on the same cores: {m2['tokens_per_s'] / m1['tokens_per_s']:.2f}")
print(f"  llamaft / PyTorch: np=1 {m1['tokens_per_s'] / torch['tokens_per_s']:.2f}x, "
      f"np=2 {m2['tokens_per_s'] / torch['tokens_per_s']:.2f}x")
print("peak RSS per rank vs plan (full_shard):")
for name, np_, mb in (("np1", 1, 4), ("np2", 2, 4), ("np4", 4, 2)):
    s = json.load(open(f"{work}/{name}/summary.json"))
    plan = json.loads(subprocess.run([bin_, "plan", "--model", f"{work}/model", "--np", str(np_), "--seq-len", seq,
                                      "--micro-batch-size", str(mb), "--fsdp.strategy", "full_shard", "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    print(f"  np={np_}: peak RSS {s['peak_rss_bytes_max_rank'] / 2**20:7.1f} MiB (max rank), backend peak "
          f"{s['peak_backend_bytes_rank0'] / 2**20:7.1f} MiB, plan {plan['total'] / 2**20:7.1f} MiB "
          f"(RSS / plan {s['peak_rss_bytes_max_rank'] / plan['total']:.2f})")
PY
