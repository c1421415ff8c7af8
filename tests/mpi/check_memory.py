#!/usr/bin/env python3
"""Peak resident memory stays within `plan`, measured from /proc by the
kernel (VmHWM), as Slurm's jobacct_gather and a cgroup would see it.

A QLoRA run on the `medium` preset (110M parameters, a 440 MB fp32 file)
at np = 1 loads the base through the bounded reader: the start-up phase's
peak must stay within the plan's loading figure plus the process baseline,
and the whole run's peak within the plan plus the baseline.

The baseline (the binary, its libraries, Open MPI, OpenBLAS's buffers, the
heap's own overhead) does not grow with the model: it is measured in the
same test as the peak RSS minus the plan of the same run on the `tiny`
preset (1M parameters). The allowance on top is 4% of the plan plus 16 MiB:
glibc malloc keeps freed chunks below its mmap threshold in its arenas
instead of returning them, which grows with the number and size of the
step's temporaries (measured here: +5 MiB over plan + baseline on a 313 MiB
plan, 2026-12-01). A whole-file mapping overshoots by the file's size
(476 MiB), over ten times the allowance.

The bound must be able to fail: with LLAMAFT_FAULTS=map_weights=1 the
weights are also mmapped and every page touched, as the old reader did, and
the same check must then report the start-up over its bound (by about the
file's 440 MB).

Usage: check_memory.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="2")
MiB = 1 << 20


def run(cmd, env=None, timeout=600):
    r = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        raise SystemExit(f"FAILED: {' '.join(cmd[:4])} ... exited {r.returncode}")
    return r.stdout + r.stderr


def train(a, model, name, faults=None):
    out = os.path.join(a.workdir, name)
    shutil.rmtree(out, ignore_errors=True)
    env = dict(ENV)
    if faults:
        env["LLAMAFT_FAULTS"] = faults
    run(launcher.mpirun(1, [a.llamaft, "train", "--model.path", model,
         "--data.path", a.data, "--data.seq_len", "64", "--finetune.method", "qlora", "--lora.r", "8",
         "--train.steps", "2", "--train.global_batch_size", "1", "--train.micro_batch_size", "1",
         "--checkpoint.dir", os.path.join(out, "ckpt"), "--checkpoint.every_steps", "1",
         "--output.dir", out]), env)
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "run_info.json")) as f:
        plan = json.load(f)["memory_plan_bytes"]
    return summary, plan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    a.data = os.path.join(a.workdir, "data.jsonl")
    with open(a.data, "w") as f:
        for i in range(4):
            f.write(json.dumps({"input_ids": [(7 * i + 13 * j) % 1000 + 3 for j in range(64)]}) + "\n")
    models = {}
    for preset in ("tiny", "medium"):
        models[preset] = os.path.join(a.workdir, preset)
        shutil.rmtree(models[preset], ignore_errors=True)
        run([a.llamaft, "init", "--preset", preset, "--seed", "1", "--output", models[preset]])
    file_bytes = os.path.getsize(os.path.join(models["medium"], "model.safetensors"))

    s_tiny, p_tiny = train(a, models["tiny"], "tiny_run")
    baseline = s_tiny["peak_rss_bytes_max_rank"] - p_tiny["total"]
    print(f"process baseline: {baseline / MiB:.1f} MiB (tiny: peak {s_tiny['peak_rss_bytes_max_rank'] / MiB:.1f} "
          f"MiB, plan {p_tiny['total'] / MiB:.1f} MiB)")
    check(0 <= baseline < 400 * MiB, f"the process baseline is between 0 and 400 MiB ({baseline / MiB:.1f})")

    def bounds(plan):
        slack = 0.04 * plan["total"] + 16 * MiB + baseline
        return plan["load"] + slack, plan["total"] + slack

    s, p = train(a, models["medium"], "medium_run")
    load_bound, total_bound = bounds(p)
    startup = s["memory_phases"]["startup"]
    print(f"medium ({file_bytes / 1e6:.0f} MB file): plan {p['total'] / MiB:.1f} MiB (loading {p['load'] / MiB:.1f}, "
          f"step {p['step'] / MiB:.1f}); start-up peak {startup['peak_rss_bytes_max_rank'] / MiB:.1f} MiB "
          f"(anon {startup['rss_anon_bytes_max_rank'] / MiB:.1f}, file {startup['rss_file_bytes_max_rank'] / MiB:.1f}),"
          f" whole-run peak {s['peak_rss_bytes_max_rank'] / MiB:.1f} MiB")
    check(startup["peak_rss_bytes_max_rank"] <= load_bound,
          f"start-up peak {startup['peak_rss_bytes_max_rank'] / MiB:.1f} MiB <= loading plan + baseline + allowance "
          f"{load_bound / MiB:.1f} MiB")
    check(s["peak_rss_bytes_max_rank"] <= total_bound,
          f"whole-run peak {s['peak_rss_bytes_max_rank'] / MiB:.1f} MiB <= plan + baseline + allowance "
          f"{total_bound / MiB:.1f} MiB")
    for phase, v in s["memory_phases"].items():
        check(v["rss_anon_bytes_max_rank"] + v["rss_file_bytes_max_rank"] + v["rss_shmem_bytes_max_rank"]
              <= v["peak_rss_bytes_max_rank"] * 1.01 + 8 * MiB,
              f"{phase}: the sampled anon/file/shmem maxima add up to no more than VmHWM")
    check(startup["rss_file_bytes_max_rank"] < 0.25 * file_bytes,
          f"start-up RssFile {startup['rss_file_bytes_max_rank'] / MiB:.1f} MiB is well under the file's "
          f"{file_bytes / MiB:.0f} MiB (nothing of the weights stays mapped)")

    # The same bound with the whole file mapped and touched must fail.
    s_m, p_m = train(a, models["medium"], "mapped_run", faults="map_weights=1")
    load_bound_m, _ = bounds(p_m)
    peak_m = s_m["memory_phases"]["startup"]["peak_rss_bytes_max_rank"]
    check(peak_m > load_bound_m,
          f"with the weights mmapped (map_weights=1) the start-up peak {peak_m / MiB:.1f} MiB exceeds its bound "
          f"{load_bound_m / MiB:.1f} MiB: the check catches a whole-file mapping")

    if FAILURES:
        print(f"memory: FAILED {len(FAILURES)}: " + "; ".join(FAILURES))
        return 1
    print("memory: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
