#!/usr/bin/env bash
# One command for a GPU machine: builds with CUDA, runs every GPU test, then
# trains the llama3.2-1b preset (random init) on one GPU for a few dozen steps
# at seq 2048 and prints tokens/s, MFU against a cuBLAS GEMM peak measured in
# the same run, and peak memory against `llamaft plan`. Logs go to $OUT when set.
# Must finish within 8 minutes on one H200.
#
# Then the same model with QLoRA (NF4 base, dequantized per block on the GPU).
#
# Also times the attention kernels (bf16, the 1B shape: the tensor-core
# FlashAttention-2 of kernels/attention_tc.cu) against the GEMM-bound time for
# their FLOPs, with the backend's own bf16 GEMM as the peak.
#
# Status (2026-11-29): with train.param_dtype = bf16 (used here) the CUDA
# backend keeps activations and gathered weights in bf16 (fp32 master
# weights, gradients, AdamW state and statistics), GEMMs on the tensor cores
# with fp32 accumulation. Checked in the CPU emulator only: never yet run on a GPU.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu_check_out}
mkdir -p "$out"
log=$out/gpu_check.log
exec > >(tee -a "$log") 2>&1
t_start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU visible"; exit 1; }

echo "== build (CUDA, sm_90)"
build=$root/build-gpu
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMAFT_CUDA=ON -DLLAMAFT_CUDA_ARCHS=90 >/dev/null || exit 1
cmake --build "$build" -j "$(nproc)" --target llamaft cuda_tests unit_tests bench_cuda_gemm \
  bench_cuda_attention >/dev/null || exit 1

echo "== dense GEMM peak (cuBLASLt, 8192^3)"
"$build/bench/bench_cuda_gemm" 8192 20 | tee "$out/gemm_peak.json"

echo "== attention kernel, bf16, llama3.2-1b shape (seq 2048, 32 x 8 heads, hd 64)"
timeout 120 "$build/bench/bench_cuda_attention" 2048 32 8 64 | tee "$out/attention.json"

echo "== GPU tests"
"$build/tests/cuda_tests" --gtest_brief=1 2>&1 | tail -n 30
gpu_tests=$?

echo "== llama3.2-1b, one GPU, seq 2048"
work=$out/work
rm -rf "$work"; mkdir -p "$work"
"$build/llamaft" init --preset llama3.2-1b --dtype bfloat16 --output "$work/model"
python3 - "$work/data.jsonl" <<'PY'
import json, random, sys
r = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [r.randrange(0, 128000) for _ in range(2048)]}) + "\n")
PY
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
timeout 300 mpirun -np 1 "$build/llamaft" train --model.path "$work/model" --data.path "$work/data.jsonl" \
  --data.seq_len 2048 --train.global_batch_size 1 --train.steps 12 --runtime.backend cuda \
  --train.param_dtype bf16 --fsdp.activation_checkpointing true --output.dir "$work/run" --output.export false --checkpoint.at_end false \
  --output.progress false
train_rc=$?
echo "== llama3.2-1b QLoRA (NF4 base), one GPU, seq 2048"
timeout 240 mpirun -np 1 "$build/llamaft" train --model.path "$work/model" --data.path "$work/data.jsonl" \
  --data.seq_len 2048 --train.global_batch_size 1 --train.steps 12 --runtime.backend cuda \
  --train.param_dtype bf16 --finetune.method qlora --fsdp.activation_checkpointing true --output.dir "$work/qlora" \
  --checkpoint.at_end false --output.progress false
qlora_rc=$?
echo "== repeatability: the same short bf16 run twice (small preset, seq 256)"
"$build/llamaft" init --preset small --output "$work/small" >/dev/null
python3 - "$work/small_data.jsonl" <<'PY'
import json, random, sys
r = random.Random(1)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [r.randrange(0, 32000) for _ in range(256)]}) + "\n")
PY
for rep in 1 2; do
  timeout 120 mpirun -np 1 "$build/llamaft" train --model.path "$work/small" --data.path "$work/small_data.jsonl" \
    --data.seq_len 256 --train.global_batch_size 8 --train.steps 10 --runtime.backend cuda --train.param_dtype bf16 \
    --output.dir "$work/repeat$rep" --output.export false --checkpoint.at_end false --output.progress false >/dev/null
done
"$build/llamaft" plan --model "$work/model" --np 1 --seq-len 2048 --fsdp.activation_checkpointing true \
  --fsdp.strategy full_shard --train.param_dtype bf16 --runtime.backend cuda --json > "$work/plan.json"

python3 - "$work" "$train_rc" "$gpu_tests" "$qlora_rc" "$out/gemm_peak.json" "$out/attention.json" <<'PY'
import json, sys
work, train_rc, gpu_tests, qlora_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def last_json(path):
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}
peak, attn = last_json(sys.argv[5]), last_json(sys.argv[6])
cfg = json.load(open(f"{work}/model/config.json"))
rows = []
try:
    rows = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl")][2:]
except OSError:
    pass
plan = json.load(open(f"{work}/plan.json"))
print("== summary")
print(f"GPU tests exit {gpu_tests}; training exit {train_rc}; QLoRA exit {qlora_rc}")
try:
    runs = [[(m["loss"], m["grad_norm"]) for m in map(json.loads, open(f"{work}/repeat{i}/metrics.jsonl"))] for i in (1, 2)]
    same = runs[0] == runs[1] and len(runs[0]) > 0
    print(f"repeatability (small, bf16, 10 steps, two runs): losses and grad norms "
          f"{'identical to the bit' if same else 'DIFFER'}")
except OSError:
    print("repeatability: no metrics")
if attn:
    print(f"attention (bf16, seq {attn['seq']}): forward {attn['attn_fwd_ms']:.2f} ms = {attn['fwd_vs_gemm_bound']:.2f}x, "
          f"backward {attn['attn_bwd_ms']:.2f} ms = {attn['bwd_vs_gemm_bound']:.2f}x the GEMM-bound time "
          f"at the backend's bf16 GEMM rate ({attn['bf16_gemm_tflops']:.0f} TFLOP/s; target <= 1.5x)")
try:
    q = [json.loads(l) for l in open(f"{work}/qlora/metrics.jsonl")][2:]
    print(f"llama3.2-1b QLoRA: {sum(r['tokens_per_s'] for r in q) / len(q):.0f} tokens/s, "
          f"loss {q[0]['loss']:.3f} -> {q[-1]['loss']:.3f}")
except (OSError, ZeroDivisionError, KeyError):
    print("llama3.2-1b QLoRA: no metrics")
if rows:
    tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
    d, L, f, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    qd = cfg["num_attention_heads"] * cfg["head_dim"]; kvd = cfg["num_key_value_heads"] * cfg["head_dim"]
    n = L * (d * (qd + 2 * kvd) + qd * d + 3 * d * f) + V * d
    flops = (6 * n + 6 * L * 2048 * qd) * tps
    print(f"llama3.2-1b: {tps:.0f} tokens/s, {flops / 1e12:.1f} TFLOP/s model FLOPs; "
          f"backend peak {rows[-1]['mem_peak_bytes'] / 2**30:.2f} GiB vs plan {plan['total'] / 2**30:.2f} GiB "
          f"(ratio {rows[-1]['mem_peak_bytes'] / plan['total']:.3f}; target within 10%)")
    print(f"MFU against the H200's nominal dense bf16 peak (989 TFLOP/s): {100 * flops / 989e12:.1f}%")
    if peak:
        print(f"MFU against the bf16 GEMM peak measured in this run ({peak['bf16_tflops']:.0f} TFLOP/s): "
              f"{100 * flops / (peak['bf16_tflops'] * 1e12):.1f}%  (fp32 GEMM peak {peak['fp32_tflops']:.0f})")
PY
echo "gpu_check finished in $(( $(date +%s) - t_start )) s; log in $log"
