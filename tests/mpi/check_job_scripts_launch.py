#!/usr/bin/env python3
"""The job scripts launch with whichever MPI the site's `mpirun` is.

finetune.sbatch and preemptible.sbatch run here outside Slurm (SLURM_NTASKS=2
and the few variables they read set by hand), with `mpirun` on PATH being
this build's launcher: Open MPI's mpirun in the Open MPI build, MPICH's Hydra
mpiexec in the MPICH build (scripts/mpich_check.sh). Each must pick that
launcher's flags and train the tiny preset for 4 steps on 2 ranks: exit 0,
4 steps in metrics.jsonl, world_size 2 in run_info.json.
(Under Slurm itself the scripts run in the slurm_* tests, with Open MPI.)
Usage: check_job_scripts_launch.py --llamaft BIN --repo DIR --workdir DIR"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    w = a.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(f"{w}/bin")
    exe = shutil.which(launcher.launcher())
    if not exe:
        print(f"skip: the build's launcher {launcher.launcher()} is not on PATH")
        return 77
    # The site's `mpirun`, whichever MPI it is (a wrapper, not a link: Hydra
    # finds its proxy next to the path it was started by).
    with open(f"{w}/bin/mpirun", "w") as f:
        f.write(f'#!/bin/sh\nexec "{exe}" "$@"\n')
    os.chmod(f"{w}/bin/mpirun", 0o755)
    env = dict(os.environ, PATH=f"{w}/bin:" + os.environ["PATH"], SLURM_NTASKS="2", SLURM_JOB_ID="4242",
               SLURM_SUBMIT_DIR=w, LLAMAFT_BIN=a.llamaft, LLAMAFT_THREADS="1", OMP_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               # Open MPI counts this machine's cores as its slots; 2 ranks may exceed them.
               OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run([a.llamaft, "init", "--preset", "tiny", "--output", f"{w}/base"], capture_output=True, text=True)
    check(r.returncode == 0, f"init --preset tiny: exit {r.returncode}")
    with open(f"{w}/data.jsonl", "w") as f:
        for i in range(32):
            f.write(json.dumps({"input_ids": [1] + [(i * 7 + j) % 400 + 3 for j in range(31)]}) + "\n")
    for script in ("finetune.sbatch", "preemptible.sbatch"):
        out = f"{w}/out_{script.split('.')[0]}"
        r = subprocess.run(["bash", os.path.join(a.repo, "jobs", "slurm", script),
                            os.path.join(a.repo, "configs", "tiny_full.cfg"), "--model.path", f"{w}/base",
                            "--data.path", f"{w}/data.jsonl", "--data.seq_len", "32",
                            "--train.global_batch_size", "4", "--train.micro_batch_size", "1", "--train.steps", "4",
                            "--train.warmup_steps", "1",
                            "--output.dir", out, "--output.export", "false"],
                           cwd=w, env=env, capture_output=True, text=True, timeout=300)
        steps = 0
        if os.path.exists(f"{out}/metrics.jsonl"):
            steps = sum(1 for line in open(f"{out}/metrics.jsonl") if '"loss"' in line and '"step"' in line)
        world = json.load(open(f"{out}/run_info.json")).get("world_size") if os.path.exists(f"{out}/run_info.json") else None
        ok = r.returncode == 0 and steps == 4 and world == 2
        check(ok, f"{script} with {launcher.name()}'s mpirun: exit {r.returncode}, {steps} steps, world_size {world}"
              + ("" if ok else f"\n{r.stdout[-800:]}\n{r.stderr[-1500:]}"))
    print("job scripts:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
