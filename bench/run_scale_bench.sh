#!/usr/bin/env bash
# Real sizes on this machine, end to end, as a user runs them (minutes; not
# in CI). Prints the memory table (peak RSS per rank against `plan`, per
# phase), the start-up phases, tokens/s, and init's thread scaling:
#   1. init llama3.2-1b at 1 and 2 threads (the speed-up) and llama3-8b (bf16,
#      5GB shards with an index, as Hugging Face ships it);
#   2. QLoRA on llama3-8b at np = 2 for 2 steps with a checkpoint each step;
#   3. resume that checkpoint at np = 1 and at np = 3 (one step each; np 3
#      only where `plan` says three ranks fit in MemAvailable, and with
#      SCALE_GLOBAL_BATCH=6);
#   4. the exported adapter loaded by PEFT (the reference venv) on the bf16
#      base for one forward pass of a few tokens; against `llamaft eval
#      --adapter --quant bf16` on the same tokens for a llama3.2-1b adapter
#      (llamaft eval holds an fp32 copy of the base: 32 GB for 8B).
# Usage: bench/run_scale_bench.sh   (SCALE_DIR: work folder, default /work/scale-bench;
#        SCALE_MODEL: an existing llama3-8b folder to skip its init)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
work=${SCALE_DIR:-/work/scale-bench}
ref_py=${SCALE_REF_PY:-$root/.venv-ref/bin/python}
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
drop_caches() { sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

if [ -z "${SCALE_SKIP_INIT:-}" ]; then
echo "== init: llama3.2-1b at 1 and 2 threads"
for t in 1 2; do
  rm -rf "$work/init-1b-$t"
  OMP_NUM_THREADS=$t "$bin" init --preset llama3.2-1b --dtype bf16 --output "$work/init-1b-$t" | tee "$work/init-1b-$t.log"
done
cmp "$work/init-1b-1/model.safetensors" "$work/init-1b-2/model.safetensors" && echo "same bytes at 1 and 2 threads"
rm -rf "$work/init-1b-1" "$work/llama3.2-1b"
mv "$work/init-1b-2" "$work/llama3.2-1b"
fi

model=${SCALE_MODEL:-$work/llama3-8b}
if [ ! -f "$model/config.json" ]; then
  echo "== init: llama3-8b"
  "$bin" init --preset llama3-8b --dtype bf16 --max-shard-size 5GB --output "$model" | tee "$work/init-8b.log"
fi

/usr/bin/python3 - "$work/data.jsonl" <<'EOF'
import json, random, sys
r = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(16):
        f.write(json.dumps({"input_ids": [r.randrange(3, 128000) for _ in range(128)]}) + "\n")
EOF
# The global batch must divide by every np the run resumes at: 6 for 1, 2 and
# 3; 2 (the default, a third of the time) where np 3 does not fit anyway.
gbatch=${SCALE_GLOBAL_BATCH:-2}
common=(--model.path "$model" --data.path "$work/data.jsonl" --data.seq_len 128 --finetune.method qlora
        --lora.r 16 --lora.alpha 32 --train.micro_batch_size 1 --train.global_batch_size "$gbatch" --train.lr 1e-4
        --checkpoint.dir "$work/ckpt" --checkpoint.every_steps 1 --output.progress false)
rm -rf "$work/ckpt" "$work"/run-*
# np = 2 first, then resume at 1 and 3 (global batch 6 divides all three).
run() {  # NAME NP STEPS
  echo "== QLoRA llama3-8b: $1 (np $2, to step $3)"
  drop_caches
  # Every core busy: nproc / np OpenMP threads per rank, unbound (Open MPI
  # binds a rank to one core by default, which leaves np 1 on one thread).
  local threads=$(( $(nproc) / $2 )); [ "$threads" -ge 1 ] || threads=1
  OMP_NUM_THREADS=$threads mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS -np "$2" "$bin" train "${common[@]}" --train.steps "$3" --output.dir "$work/run-$1" \
    2>&1 | tee "$work/run-$1.log" | grep --line-buffered -E "start-up|memory plan|resumed|checkpoint /|exported" || true
  test -f "$work/run-$1/summary.json"
}
fits() {  # NP: does plan x NP (+ 200 MiB of process baseline per rank) fit in MemAvailable?
  local plan_bytes
  plan_bytes=$("$bin" plan --model.path "$model" --np "$1" --finetune.method qlora --fsdp.strategy full_shard \
    --data.seq_len 128 --train.micro_batch_size 1 --plan.json true | /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['total'])")
  local avail_kib
  avail_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  /usr/bin/python3 -c "import sys; need = $1 * ($plan_bytes + 200 * 2**20); have = $avail_kib * 1024
print(f'np $1: plan {$plan_bytes / 2**30:.2f} GiB per rank, {need / 2**30:.1f} GiB for $1 ranks, {have / 2**30:.1f} GiB available')
sys.exit(0 if need < have else 1)"
}
run np2 2 2
run np1-resume 1 3
last=np1-resume
if [ $((gbatch % 3)) -eq 0 ] && fits 3; then run np3-resume 3 4; last=np3-resume; else fits 3 || true; echo "== np 3 resume skipped (it needs SCALE_GLOBAL_BATCH=6 and the memory above)"; fi

# PEFT on the bf16 base: the 8B adapter (PEFT must accept it and run; llamaft
# eval keeps an fp32 resident copy, 32 GB for 8B, which does not fit here), and
# a llama3.2-1b QLoRA adapter from np 2 against `llamaft eval --adapter
# --quant bf16` on the same tokens.
/usr/bin/python3 -c "
import json
with open('$work/eval.jsonl', 'w') as f: f.write(json.dumps({'input_ids': [128000, 791, 4062, 14198, 39935, 35308, 927, 279]}) + '\n')"
peft_loss() {  # BASE ADAPTER OUT
  if [ -x "$ref_py" ]; then
    "$ref_py" - "$1" "$2" "$work/eval.jsonl" > "$3" <<'PY'
import json, sys, torch
from transformers import LlamaForCausalLM
from peft import PeftModel
torch.set_num_threads(2)
model = LlamaForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.bfloat16)
model = PeftModel.from_pretrained(model, sys.argv[2]).eval()
ids = torch.tensor([json.loads(open(sys.argv[3]).readline())["input_ids"]])
with torch.no_grad():
    loss = model(input_ids=ids, labels=ids).loss.item()
print(json.dumps({"loss": loss}))
PY
  else
    echo '{"loss": null}' > "$3"; echo "no .venv-ref: scripts/install-deps.sh --tests makes it"
  fi
}
echo "== PEFT: the llama3-8b adapter on the bf16 base"
drop_caches
peft_loss "$model" "$work/run-$last/adapter" "$work/peft-8b.json"
if [ -f "$work/llama3.2-1b/config.json" ]; then
  echo "== llama3.2-1b QLoRA at np 2 (1 step), its adapter in PEFT and in llamaft eval"
  OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS -np 2 "$bin" train \
    --model.path "$work/llama3.2-1b" --data.path "$work/data.jsonl" --data.seq_len 128 --finetune.method qlora \
    --lora.r 16 --lora.alpha 32 --train.lr 1e-3 --train.steps 1 --train.global_batch_size 2 \
    --checkpoint.every_steps 0 --checkpoint.dir "$work/ckpt-1b" --output.dir "$work/run-1b" --output.progress false \
    > "$work/run-1b.log" 2>&1
  "$bin" eval --model "$work/llama3.2-1b" --adapter "$work/run-1b/adapter" --quant bf16 --data "$work/eval.jsonl" \
    --seq-len 8 --batch-size 1 > "$work/eval-1b.json"
  peft_loss "$work/llama3.2-1b" "$work/run-1b/adapter" "$work/peft-1b.json"
fi

/usr/bin/python3 - "$work" <<'EOF'
import json, os, sys
w = sys.argv[1]
MiB = 1 << 20
print("\nmemory per rank: peak RSS (VmHWM, every rank's max) / plan, per phase")
print(f"{'run':<14} {'plan MiB':>9} {'phase':<11} {'peak MiB':>9} {'anon':>8} {'file':>7} {'peak/plan':>9}")
runs = [n for n in ("np2", "np1-resume", "np3-resume") if os.path.exists(f"{w}/run-{n}/summary.json")]
for name in runs:
    s = json.load(open(f"{w}/run-{name}/summary.json"))
    info = json.load(open(f"{w}/run-{name}/run_info.json"))
    plan = info["memory_plan_bytes"]["total"]
    for phase, v in s["memory_phases"].items():
        print(f"{name:<14} {plan / MiB:>9.0f} {phase:<11} {v['peak_rss_bytes_max_rank'] / MiB:>9.0f} "
              f"{v['rss_anon_bytes_max_rank'] / MiB:>8.0f} {v['rss_file_bytes_max_rank'] / MiB:>7.0f} "
              f"{v['peak_rss_bytes_max_rank'] / plan:>9.3f}")
print("\nstart-up (s, slowest rank per phase) and throughput")
for name in runs:
    s = json.load(open(f"{w}/run-{name}/summary.json"))
    st = json.load(open(f"{w}/run-{name}/run_info.json"))["startup_s"]
    steps = [json.loads(l) for l in open(f"{w}/run-{name}/metrics.jsonl") if '"loss"' in l]
    tok = sum(x.get("tokens", 0) for x in steps) / max(1e-9, sum(x.get("step_s", 0) for x in steps))
    print(f"{name:<14} total {s['startup_s']:6.1f}: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()
          if k != "bytes_read_max_rank") + f"; read {st['bytes_read_max_rank'] / 1e9:.2f} GB/rank; "
          f"first step {s['first_step_s']:.1f} s; {tok:.1f} tokens/s")
print(f"\nllama3-8b adapter in PEFT on the bf16 base, 8 tokens: loss {json.load(open(f'{w}/peft-8b.json'))['loss']}")
if os.path.exists(f"{w}/eval-1b.json"):
    ours, peft = json.load(open(f"{w}/eval-1b.json"))["loss"], json.load(open(f"{w}/peft-1b.json"))["loss"]
    print(f"llama3.2-1b adapter on the bf16 base, 8 tokens: llamaft eval {ours:.6f}, PEFT {peft}"
          + (f", |difference| {abs(ours - peft):.2e} ({abs(ours - peft) / abs(peft):.1e} relative)" if peft else ""))
EOF
