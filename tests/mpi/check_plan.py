#!/usr/bin/env python3
"""`llamaft plan` against what `train` measures on a tiny run: the per-rank
bytes of params, grads and optimizer state must match to 0.1%, and the total
peak of backend allocations within 10%, for every strategy at np = 2, and
with train.param_dtype = bf16 (bf16 activations and gathers, on the CPU too)."""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    model = os.path.join(args.workdir, "base")
    subprocess.run([args.llamaft, "init", "--preset", "tiny", "--output", model, "--force"], check=True,
                   capture_output=True)
    data = os.path.join(args.workdir, "data.jsonl")
    seq = 64
    with open(data, "w") as f:
        for i in range(8):
            f.write(json.dumps({"input_ids": [(i * 13 + t) % 1000 + 3 for t in range(seq)]}) + "\n")
    ok = True
    cases = [(s, "fp32") for s in ["full_shard", "shard_grad_op", "no_shard", "hybrid_shard"]]
    cases += [("full_shard", "bf16"), ("no_shard", "bf16")]
    for strategy, dtype in cases:
        out = os.path.join(args.workdir, f"{strategy}_{dtype}")
        shutil.rmtree(out, ignore_errors=True)  # a finished run left here would resume as done and measure nothing
        common = ["--model.path", model, "--data.seq_len", str(seq), "--train.micro_batch_size", "2",
                  "--fsdp.strategy", strategy, "--fsdp.shard_group_size", "2", "--train.param_dtype", dtype]
        subprocess.run(launcher.mpirun(2, [args.llamaft, "train", "--data.path", data,
                        "--output.dir", out, "--train.global_batch_size", "4", "--train.steps", "2",
                        "--output.export", "false", "--output.progress", "false"] + common),
                       env=ENV, check=True, capture_output=True)
        measured = json.loads(open(os.path.join(out, "metrics.jsonl")).readlines()[-1])
        plan = subprocess.run([args.llamaft, "plan", "--np", "2", "--json"] + common, env=ENV, check=True,
                              capture_output=True, text=True).stdout
        planned = next(json.loads(line) for line in plan.splitlines() if json.loads(line)["strategy"] == strategy)
        for key, mkey, tol in [("params", "mem_params_bytes", 0.001), ("grads", "mem_grads_bytes", 0.001),
                               ("optimizer", "mem_optimizer_bytes", 0.001),
                               ("activations", "mem_activations_bytes", 0.10),
                               ("buffers", "mem_buffers_bytes", 0.10), ("step", "mem_peak_bytes", 0.10)]:
            # One shard (no_shard) needs no buffers at all: both must then be zero.
            err = abs(planned[key] - measured[mkey]) / measured[mkey] if measured[mkey] else float(planned[key] != 0)
            good = err <= tol
            ok &= good
            print(f"{'ok  ' if good else 'FAIL'} {strategy:14s} {dtype} {key:12s} plan {planned[key]/2**20:9.3f} MiB "
                  f"measured {measured[mkey]/2**20:9.3f} MiB ({100*err:.1f}%)")
    print("plan vs measured:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
