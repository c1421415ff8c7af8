#!/usr/bin/env bash
# Real sizes on this machine, end to end, as a user runs them (minutes; not
# in CI). Prints the memory table (peak RSS per rank against `plan`, per
# phase), the start-up phases, tokens/s, and init's thread scaling:
#   1. init llama3.2-1b at 1 and 2 threads (the speed-up) and llama3-8b (bf16,
#      5GB shards with an index, as Hugging Face ships it);
#   2. QLoRA on llama3-8b at np = 2 for 2 steps with a checkpoint each step;
#   3. resume that checkpoint at np = 1 and at np = 3 (one step each);
#   4. the exported adapter loaded by PEFT (the reference venv) on the bf16
#      base for one forward pass of a few tokens, against `llamaft eval
#      --adapter --quant bf16` on the same tokens.
# Usage: bench/run_scale_bench.sh   (SCALE_DIR: work folder, default /work/scale-bench;
#        SCALE_MODEL: an existing llama3-8b folder to skip its init)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
work=${SCALE_DIR:-/work/scale-bench}
ref_py=$root/.venv-ref/bin/python
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
drop_caches() { sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

echo "== init: llama3.2-1b at 1 and 2 threads"
for t in 1 2; do
  rm -rf "$work/init-1b-$t"
  OMP_NUM_THREADS=$t "$bin" init --preset llama3.2-1b --dtype bf16 --output "$work/init-1b-$t" | tee "$work/init-1b-$t.log"
done
cmp "$work/init-1b-1/model.safetensors" "$work/init-1b-2/model.safetensors" && echo "same bytes at 1 and 2 threads"
rm -rf "$work/init-1b-1" "$work/init-1b-2"

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
common=(--model.path "$model" --data.path "$work/data.jsonl" --data.seq_len 128 --finetune.method qlora
        --lora.r 16 --lora.alpha 32 --train.micro_batch_size 1 --train.global_batch_size 6 --train.lr 1e-4
        --checkpoint.dir "$work/ckpt" --checkpoint.every_steps 1 --output.progress false)
rm -rf "$work/ckpt" "$work"/run-*
# np = 2 first, then resume at 1 and 3 (global batch 6 divides all three).
run() {  # NAME NP STEPS
  echo "== QLoRA llama3-8b: $1 (np $2, to step $3)"
  drop_caches
  mpirun --oversubscribe -np "$2" "$bin" train "${common[@]}" --train.steps "$3" --output.dir "$work/run-$1" \
    2>&1 | tee "$work/run-$1.log" | grep -E "start-up|memory plan|resumed|checkpoint /|exported" || true
  test -f "$work/run-$1/summary.json"
}
run np2 2 2
run np1-resume 1 3
run np3-resume 3 4

echo "== the adapter in PEFT (bf16 base) against llamaft eval --adapter --quant bf16"
/usr/bin/python3 -c "
import json
with open('$work/eval.jsonl', 'w') as f: f.write(json.dumps({'input_ids': [128000, 791, 4062, 14198, 39935, 35308, 927, 279]}) + '\n')"
"$bin" eval --model "$model" --adapter "$work/run-np3-resume/adapter" --quant bf16 --data "$work/eval.jsonl" \
  --seq-len 8 --batch-size 1 > "$work/eval.json"
if [ -x "$ref_py" ]; then
  "$ref_py" - "$model" "$work/run-np3-resume/adapter" "$work/eval.jsonl" > "$work/peft.json" <<'EOF'
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
EOF
else
  echo '{"loss": null}' > "$work/peft.json"; echo "no .venv-ref: scripts/install-deps.sh --tests makes it"
fi

/usr/bin/python3 - "$work" <<'EOF'
import json, os, sys
w = sys.argv[1]
MiB = 1 << 20
print("\nmemory per rank: peak RSS (VmHWM, every rank's max) / plan, per phase")
print(f"{'run':<14} {'plan MiB':>9} {'phase':<11} {'peak MiB':>9} {'anon':>8} {'file':>7} {'peak/plan':>9}")
for name in ("np2", "np1-resume", "np3-resume"):
    s = json.load(open(f"{w}/run-{name}/summary.json"))
    info = json.load(open(f"{w}/run-{name}/run_info.json"))
    plan = info["memory_plan_bytes"]["total"]
    for phase, v in s["memory_phases"].items():
        print(f"{name:<14} {plan / MiB:>9.0f} {phase:<11} {v['peak_rss_bytes_max_rank'] / MiB:>9.0f} "
              f"{v['rss_anon_bytes_max_rank'] / MiB:>8.0f} {v['rss_file_bytes_max_rank'] / MiB:>7.0f} "
              f"{v['peak_rss_bytes_max_rank'] / plan:>9.3f}")
print("\nstart-up (s, slowest rank per phase) and throughput")
for name in ("np2", "np1-resume", "np3-resume"):
    s = json.load(open(f"{w}/run-{name}/summary.json"))
    st = json.load(open(f"{w}/run-{name}/run_info.json"))["startup_s"]
    steps = [json.loads(l) for l in open(f"{w}/run-{name}/metrics.jsonl") if '"loss"' in l]
    tok = sum(x.get("tokens", 0) for x in steps) / max(1e-9, sum(x.get("step_s", 0) for x in steps))
    print(f"{name:<14} total {s['startup_s']:6.1f}: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()
          if k != "bytes_read_max_rank") + f"; read {st['bytes_read_max_rank'] / 1e9:.2f} GB/rank; "
          f"first step {s['first_step_s']:.1f} s; {tok:.1f} tokens/s")
ours = json.load(open(f"{w}/eval.json"))
peft = json.load(open(f"{w}/peft.json"))
print(f"\nadapter on the bf16 base, 8 tokens: llamaft eval loss {ours['loss']:.5f}, PEFT {peft['loss']}")
EOF
