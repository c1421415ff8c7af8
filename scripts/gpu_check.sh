#!/usr/bin/env bash
# One command for a GPU machine, within 8 minutes on one H200: builds with
# CUDA, checks the device is usable, runs every GPU test (a skipped test is
# a failure here: LLAMAFT_REQUIRE_GPU=1), times the GEMM peak (random
# operands) and the attention kernels, trains the llama3.2-1b preset (random
# init) at seq 2048 in full fine-tuning and QLoRA, checks two identical runs
# agree to the bit, and sets the measured step against bench/roofline.py's
# modelled one from the same run's step counters.
#
# Every stage has a timeout, cut to what is left of the 470 s budget. The
# build and the work tree live outside $OUT ($LLAMAFT_GPU_WORK, default
# /tmp/llamaft_gpu_check); $OUT gets only gpu_check.log and summary.json.
# Exit status: 0 only when every stage passed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu_check_out}
work=${LLAMAFT_GPU_WORK:-/tmp/llamaft_gpu_check}
build=$work/build
mkdir -p "$out" "$work"
log=$out/gpu_check.log
exec > >(tee -a "$log") 2>&1
t_start=$(date +%s)
budget=${LLAMAFT_GPU_CHECK_BUDGET_S:-470}
stages=$work/stages.tsv
: > "$stages"
failed=0
# stage NAME LIMIT_S CMD...: runs CMD under min(LIMIT_S, what is left), records name, rc and seconds.
stage() {
  local name=$1 limit=$2; shift 2
  local left=$(( budget - ($(date +%s) - t_start) ))
  (( left < limit )) && limit=$left
  if (( limit <= 5 )); then
    echo "== $name: skipped, the ${budget} s budget is spent"
    printf '%s\t%s\t%s\n' "$name" 124 0 >> "$stages"; failed=1; return 124
  fi
  echo "== $name (timeout ${limit} s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$stages"
  (( rc != 0 )) && { echo "== $name FAILED (exit $rc)"; failed=1; }
  return $rc
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LLAMAFT_REQUIRE_GPU=1

stage nvidia-smi 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
  echo "no GPU visible (nvidia-smi failed)"; exit 1; }
stage configure 60 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMAFT_CUDA=ON \
  -DLLAMAFT_CUDA_ARCHS=90 >/dev/null || exit 1
stage build 200 cmake --build "$build" -j "$(nproc)" --target llamaft cuda_tests bench_cuda_gemm \
  bench_cuda_attention >/dev/null || exit 1
# A driver too old for this CUDA runtime fails here with the CUDA error, instead of every test skipping.
stage device-probe 30 "$build/tests/cuda_tests" --gtest_filter='CudaBackend.DeviceIsUsable' --gtest_brief=1 || {
  echo "the CUDA device is not usable (see the error above)"; exit 1; }
stage gemm-peak 45 bash -c "'$build/bench/bench_cuda_gemm' 8192 20 > '$work/gemm_peak.json'" && cat "$work/gemm_peak.json"
stage attention 45 bash -c "'$build/bench/bench_cuda_attention' 2048 32 8 64 > '$work/attention.json'" &&
  cat "$work/attention.json"
# StepCountsAtSize.Dump is bench/roofline.py's dry-run hook, not a test.
stage gpu-tests 150 "$build/tests/cuda_tests" --gtest_brief=1 --gtest_filter='-StepCountsAtSize.*' \
  --gtest_output="json:$work/cuda_tests.json"

"$build/llamaft" init --preset llama3.2-1b --dtype bfloat16 --output "$work/model" --force >/dev/null
python3 - "$work/data.jsonl" <<'PY'
import json, random, sys
r = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [r.randrange(0, 128000) for _ in range(2048)]}) + "\n")
PY
rm -rf "$work/run" "$work/qlora" "$work/repeat1" "$work/repeat2"
# Micro-batch 4 without activation checkpointing: the roofline's case.
stage train-1b 90 mpirun -np 1 "$build/llamaft" train --model.path "$work/model" --data.path "$work/data.jsonl" \
  --data.seq_len 2048 --train.global_batch_size 4 --train.micro_batch_size 4 --train.steps 8 --runtime.backend cuda \
  --train.param_dtype bf16 --output.dir "$work/run" --output.export false --checkpoint.at_end false \
  --output.progress false
stage qlora-1b 60 mpirun -np 1 "$build/llamaft" train --model.path "$work/model" --data.path "$work/data.jsonl" \
  --data.seq_len 2048 --train.global_batch_size 1 --train.steps 8 --runtime.backend cuda \
  --train.param_dtype bf16 --finetune.method qlora --fsdp.activation_checkpointing true --output.dir "$work/qlora" \
  --checkpoint.at_end false --output.progress false
"$build/llamaft" init --preset small --output "$work/small" --force >/dev/null
python3 - "$work/small_data.jsonl" <<'PY'
import json, random, sys
r = random.Random(1)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [r.randrange(0, 32000) for _ in range(256)]}) + "\n")
PY
for rep in 1 2; do
  stage "repeat$rep" 40 mpirun -np 1 "$build/llamaft" train --model.path "$work/small" \
    --data.path "$work/small_data.jsonl" --data.seq_len 256 --train.global_batch_size 8 --train.steps 10 \
    --runtime.backend cuda --train.param_dtype bf16 --output.dir "$work/repeat$rep" --output.export false \
    --checkpoint.at_end false --output.progress false >/dev/null
done
stage plan 30 bash -c "'$build/llamaft' plan --model '$work/model' --np 1 --seq-len 2048 --train.micro_batch_size 4 \
  --fsdp.strategy full_shard --train.param_dtype bf16 --runtime.backend cuda --json > '$work/plan.json'"
# The roofline from this run's own counters (the last logged step).
if [[ -s "$work/run/metrics.jsonl" ]]; then
  tail -n 1 "$work/run/metrics.jsonl" > "$work/last_step.json"
  stage roofline 20 python3 "$root/bench/roofline.py" --counters "$work/last_step.json" --gpu h200 --attention wmma \
    --json "$work/roofline.json" | tail -n 4
fi

python3 - "$work" "$out/summary.json" "$failed" <<'PY'
import json, os, sys
work, summary_path, failed = sys.argv[1], sys.argv[2], int(sys.argv[3])
def last_json(path):
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}
stages = [dict(zip(("stage", "rc", "seconds"), l.rstrip("\n").split("\t"))) for l in open(f"{work}/stages.tsv")]
summary = {"stages": stages, "passed": failed == 0}
print("== summary")
for s in stages:
    print(f"  {s['stage']:<14} exit {s['rc']:>3}  {s['seconds']:>4} s")
try:
    t = json.load(open(f"{work}/cuda_tests.json"))
    cases = [c for suite in t["testsuites"] for c in suite["testsuite"]]
    skipped = [c["name"] for c in cases if c.get("result") == "SKIPPED" or c.get("status") == "NOTRUN"]
    failures = [c["name"] for c in cases if c.get("failures")]
    summary["gpu_tests"] = {"total": len(cases), "failed": failures, "skipped": skipped}
    print(f"GPU tests: {len(cases)} run, {len(failures)} failed, {len(skipped)} skipped")
    if skipped or failures:
        summary["passed"] = False
except (OSError, ValueError, KeyError):
    summary["gpu_tests"] = None
    summary["passed"] = False
    print("GPU tests: no result file")
peak, attn = last_json(f"{work}/gemm_peak.json"), last_json(f"{work}/attention.json")
summary["gemm_peak"], summary["attention"] = peak, attn
try:
    runs = [[(m["loss"], m["grad_norm"]) for m in map(json.loads, open(f"{work}/repeat{i}/metrics.jsonl"))] for i in (1, 2)]
    same = runs[0] == runs[1] and len(runs[0]) > 0
    summary["repeatable"] = same
    summary["passed"] &= same
    print(f"repeatability (small, bf16, 10 steps, two runs): {'identical to the bit' if same else 'DIFFER'}")
except OSError:
    print("repeatability: no metrics")
if attn:
    print(f"attention (bf16, seq {attn['seq']}): forward {attn['attn_fwd_ms']:.2f} ms = {attn['fwd_vs_gemm_bound']:.2f}x, "
          f"backward {attn['attn_bwd_ms']:.2f} ms = {attn['bwd_vs_gemm_bound']:.2f}x the GEMM-bound time")
try:
    q = [json.loads(l) for l in open(f"{work}/qlora/metrics.jsonl")][2:]
    summary["qlora_tokens_per_s"] = sum(r["tokens_per_s"] for r in q) / len(q)
    print(f"llama3.2-1b QLoRA: {summary['qlora_tokens_per_s']:.0f} tokens/s")
except (OSError, ZeroDivisionError, KeyError, ValueError):
    print("llama3.2-1b QLoRA: no metrics")
try:
    rows = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl")][2:]
except (OSError, ValueError):
    rows = []
if rows:
    cfg = json.load(open(f"{work}/model/config.json"))
    tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
    step_s = sum(r["step_s"] for r in rows) / len(rows)
    d, L, f, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    qd = cfg["num_attention_heads"] * cfg["head_dim"]; kvd = cfg["num_key_value_heads"] * cfg["head_dim"]
    n = L * (d * (qd + 2 * kvd) + qd * d + 3 * d * f) + V * d
    flops = (6 * n + 6 * L * 2048 * qd) * tps
    dev = rows[-1].get("device", {})
    summary["train_1b"] = {"tokens_per_s": tps, "step_s": step_s, "model_tflops": flops / 1e12,
                           "mfu_nominal": flops / 989e12, "host_syncs": dev.get("host_syncs"),
                           "launches": dev.get("launches"), "mem_peak_bytes": rows[-1]["mem_peak_bytes"]}
    print(f"llama3.2-1b (micro-batch 4, seq 2048): {tps:.0f} tokens/s, step {step_s * 1e3:.1f} ms, "
          f"{flops / 1e12:.1f} TFLOP/s, MFU {100 * flops / 989e12:.1f}% of 989 TFLOP/s; "
          f"{dev.get('host_syncs')} host syncs and {dev.get('launches')} launches a step")
    try:
        plan = json.load(open(f"{work}/plan.json"))
        summary["train_1b"]["plan_bytes"] = plan["total"]
        print(f"  memory: backend peak {rows[-1]['mem_peak_bytes'] / 2**30:.2f} GiB vs plan {plan['total'] / 2**30:.2f} GiB")
    except (OSError, ValueError, KeyError):
        pass
    if peak:
        print(f"  MFU against the bf16 GEMM peak measured in this run ({peak['bf16_tflops']:.0f} TFLOP/s): "
              f"{100 * flops / (peak['bf16_tflops'] * 1e12):.1f}%")
    roof = last_json(f"{work}/roofline.json") if os.path.exists(f"{work}/roofline.json") else {}
    if roof:
        modelled = roof["results"]["wmma"]["step_ms"]
        summary["train_1b"]["modelled_step_ms"] = modelled
        print(f"  measured step {step_s * 1e3:.1f} ms vs MODELLED {modelled:.1f} ms (bench/roofline.py, wmma attention)")
else:
    summary["passed"] = False
    print("llama3.2-1b: no metrics")
json.dump(summary, open(summary_path, "w"), indent=2)
print("gpu_check:", "PASSED" if summary["passed"] else "FAILED")
sys.exit(0 if summary["passed"] else 1)
PY
rc=$?
echo "gpu_check finished in $(( $(date +%s) - t_start )) s; log in $log, summary in $out/summary.json"
exit $rc
