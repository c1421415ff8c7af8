#!/usr/bin/env python3
"""Issue 31 item 6: walltime-aware saves, with the job's end given as Slurm
gives it (SLURM_JOB_END_TIME; the real-slurmctld test covers a real job):
  1. the end 16 s away and checkpoint.walltime_margin_s = 6: np 2 training
     saves and exits 85 before the end (never after it), saying how far the
     end is, with a committed checkpoint at the step it names; a resumed run
     continues from that step;
  2. an end an hour away: the run trains its steps and exits 0;
  3. checkpoint.walltime_margin_s = 0 turns it off: the near end is ignored.
Usage: check_walltime.py --llamaft BIN --workdir DIR"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    base_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    for k in ("SLURM_JOB_ID", "SLURM_JOB_END_TIME"):
        base_env.pop(k, None)
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "0", "--output", f"{w}/tiny"], check=True,
                   capture_output=True, env=base_env)
    with open(f"{w}/d.jsonl", "w") as f:
        for i in range(32):
            f.write(json.dumps({"input_ids": [1] + [(i * 13 + j) % 400 + 3 for j in range(31)]}) + "\n")

    def train(out, steps, end, *extra):
        env = dict(base_env, **({"SLURM_JOB_END_TIME": str(end)} if end else {}))
        cmd = launcher.mpirun(2, [a.llamaft, "train", "--model", f"{w}/tiny", "--data", f"{w}/d.jsonl",
                                  "--data.seq_len", "32", "--train.global_batch_size", "4", "--train.steps", str(steps),
                                  "--output.dir", out, "--output.progress", "false", *extra])
        t0 = time.time()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        return r, time.time() - t0

    # 1. A near end.
    end = int(time.time()) + 16
    r, took = train(f"{w}/near", 10 ** 7, end, "--checkpoint.walltime_margin_s", "6")
    m = re.search(r"checkpointed at step (\d+), exiting 85", r.stderr)
    latest = open(f"{w}/near/checkpoints/latest").read().strip() if os.path.exists(f"{w}/near/checkpoints/latest") else ""
    step = int(m.group(1)) if m else -1
    check(r.returncode == 85 and "the job ends in" in r.stderr and "SLURM_JOB_END_TIME" in r.stderr and m is not None
          and latest.endswith(f"step_{step:06d}") and time.time() < end,
          f"the end {end - int(time.time() - took)} s away, margin 6 s: exit {r.returncode} after {took:.1f} s, "
          f"before the end, checkpoint {latest} at the step named ({step})")
    if step > 0:
        r2, _ = train(f"{w}/near", step + 3, 0)
        steps = [json.loads(x)["step"] for x in open(f"{w}/near/metrics.jsonl") if '"step"' in x and '"lr"' in x]
        check(r2.returncode == 0 and steps[-3:] == [step + 1, step + 2, step + 3] and f"resumed from" in r2.stderr,
              f"the resumed run continues from step {step} (exit {r2.returncode})")
    # 2. A far end.
    r, took = train(f"{w}/far", 20, int(time.time()) + 3600, "--checkpoint.walltime_margin_s", "6")
    check(r.returncode == 0 and "the job ends in" in r.stderr and "time limit is" not in r.stderr,
          f"an end an hour away: 20 steps and exit {r.returncode}")
    # 3. Off.
    r, took = train(f"{w}/off", 20, int(time.time()) + 5, "--checkpoint.walltime_margin_s", "0")
    check(r.returncode == 0 and "the job ends in" not in r.stderr,
          f"checkpoint.walltime_margin_s = 0: the near end is ignored (exit {r.returncode})")
    print("walltime:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
