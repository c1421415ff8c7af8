#!/usr/bin/env python3
"""Faults end the job, with one message, on one host (2 ranks, CPU backend).

  1. A config error found on every rank: one line, from rank 0, exit 2, none of
     the launcher's banners (Open MPI's mpirun -q, as the job scripts run
     it; MPICH's Hydra prints none for an exit with a code).
  2. An error on rank 1 alone: one line, from rank 1, exit 2.
  3. SIGSTOP of rank 1 (then of rank 0) mid-run with runtime.comm_timeout_s = T:
     the collective watchdog ends the job with exit 5 within T + 3 s of
     stagger + 4 s of slack (a step, the watchdog's 0.1 s tick, mpirun's 1 s
     SIGKILL delay); one line, from the lowest rank that waited, naming the
     collective; the last committed checkpoint resumes.
  4. kill -9 of a rank: the launcher ends the job within 5 s; Open MPI's
     mpirun exits 137 (128 + 9), which jobs/slurm/preemptible.sbatch requeues
     (capped); MPICH's Hydra exits 9.
  5. SIGUSR1 to jobs/slurm/preemptible.sbatch (run by bash with a stand-in
     scontrol) 0 to 0.5 s after it started, during start-up: every time a
     committed checkpoint, exit 85 and a requeue, because the script holds
     the signal until every rank can catch it (LLAMAFT_READY_DIR).
  6. The same script on a stopped rank (5) and a killed one (137): requeued,
     and not once LLAMAFT_MAX_CRASH_REQUEUES is used up.
  (5 and 6 run Open MPI's mpirun through the job script: skipped in a build
  whose launcher is MPICH's Hydra.)
Prints the measured fault-to-exit times.

Usage: check_faults.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
TIMES = []


def error_lines(text):
    return [l for l in text.splitlines() if "llamaft: error" in l or "internal error" in l]


def noise(text):
    """The launcher's abort banners: Open MPI's (suppressed by mpirun -q) and
    Hydra's (it prints its BAD TERMINATION box only for a rank that died by a
    signal or left without MPI_Finalize, never for llamaft's own exits)."""
    return [l for l in text.splitlines()
            if re.search(r"MPI_ABORT|ORTE_ERROR_LOG|Primary job|mpirun detected|BAD TERMINATION|"
                         r"YOUR APPLICATION TERMINATED", l)]


def rank_pids(mpirun_pid, np_, timeout=30):
    """{rank: pid} of the launcher's llamaft ranks (launcher.ranks)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = launcher.ranks(mpirun_pid)
        if len(found) == np_:
            return found
        time.sleep(0.05)
    raise RuntimeError("ranks not found")


def steps_logged(out):
    try:
        return sum(1 for _ in open(f"{out}/metrics.jsonl"))
    except OSError:
        return 0


def train_cmd(a, out, steps, extra=()):
    return launcher.mpirun(2, [a.llamaft, "train", "--config", a.cfg,
            "--output.dir", out, "--train.steps", str(steps), *extra], quiet=True)


def stop_a_rank(a, victim, timeout_s):
    out = f"{a.workdir}/stop{victim}"
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen(train_cmd(a, out, 1000000, ["--runtime.comm_timeout_s", str(timeout_s),
                                                     "--checkpoint.every_steps", "20", "--checkpoint.async", "false"]),
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids = rank_pids(p.pid, 2)
    while steps_logged(out) < 30:
        time.sleep(0.05)
    os.kill(pids[victim], signal.SIGSTOP)
    t0 = time.time()
    text, _ = p.communicate(timeout=timeout_s + 60)
    took = time.time() - t0
    waiter = 1 - victim
    errs = error_lines(text)
    TIMES.append((f"SIGSTOP of rank {victim}, comm_timeout_s {timeout_s}", took))
    bound = timeout_s + 3 * min(waiter, 3) + 4
    check(p.returncode == 5 and took <= bound,
          f"rank {victim} stopped: exit {p.returncode} after {took:.1f} s (bound {bound} s)")
    check(len(errs) == 1 and f"[rank {waiter}/2" in errs[0] and "made no progress for" in errs[0]
          and re.search(r"(all_gather|reduce_scatter|all_reduce_\w+|broadcast|barrier)", errs[0]) is not None,
          f"one message, from rank {waiter}, naming the collective: {errs}")
    check(not noise(text), f"no launcher banners ({noise(text)})")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    a.llamaft = os.path.abspath(a.llamaft)  # the job scripts run in other folders
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--output", f"{w}/base"], check=True, capture_output=True)
    with open(f"{w}/data.jsonl", "w") as f:
        for i in range(64):
            f.write(json.dumps({"input_ids": [(i * 37 + t * 11) % 1000 + 3 for t in range(32)]}) + "\n")
    a.cfg = f"{w}/train.cfg"
    with open(a.cfg, "w") as f:
        f.write(f"[model]\npath = {w}/base\n[data]\npath = {w}/data.jsonl\nseq_len = 32\n"
                "[train]\nglobal_batch_size = 4\nwarmup_steps = 1\n[output]\nprogress = false\nexport = false\n"
                "[checkpoint]\nat_end = false\n")

    # 1. the same config error on every rank
    r = subprocess.run(train_cmd(a, f"{w}/e1", 3, ["--train.lr_schedul", "cosine"]), env=ENV, capture_output=True,
                       text=True, timeout=120)
    errs = error_lines(r.stdout + r.stderr)
    check(r.returncode == 2 and len(errs) == 1 and errs[0].startswith("[rank 0/2 @ ")
          and "did you mean '--train.lr_schedule'" in errs[0], f"config error: exit {r.returncode}, one line {errs}")
    check(not noise(r.stdout + r.stderr), "config error: no launcher banners")
    # 2. an error on one rank
    r = subprocess.run(train_cmd(a, f"{w}/e2", 3), env=dict(ENV, LLAMAFT_FAULTS="fail_rank=1"), capture_output=True,
                       text=True, timeout=120)
    errs = error_lines(r.stdout + r.stderr)
    check(r.returncode == 2 and len(errs) == 1 and errs[0].startswith("[rank 1/2 @ ") and "fail_rank" in errs[0],
          f"error on rank 1 alone: exit {r.returncode}, one line {errs}")

    # 3. a stopped rank
    out = stop_a_rank(a, 1, 5)
    r = subprocess.run(train_cmd(a, out, 25, ["--checkpoint.resume", "auto"]), env=ENV, capture_output=True,
                       text=True, timeout=120)
    check(r.returncode == 0 and "resumed from" in r.stdout + r.stderr,
          f"the last checkpoint of the stopped run resumes (exit {r.returncode})")
    stop_a_rank(a, 0, 5)

    # 4. kill -9 of rank 1
    out = f"{w}/kill9"
    p9 = subprocess.Popen(train_cmd(a, out, 1000000), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    pids = rank_pids(p9.pid, 2)
    while steps_logged(out) < 10:
        time.sleep(0.05)
    os.kill(pids[1], signal.SIGKILL)
    t0 = time.time()
    p9.communicate(timeout=60)
    took = time.time() - t0
    TIMES.append(("kill -9 of rank 1", took))
    # What the launcher itself reports for a rank killed by SIGKILL differs: Open MPI's mpirun exits
    # 128 + 9 = 137 (what jobs/slurm/preemptible.sbatch requeues on, as srun does); MPICH's Hydra
    # mpiexec exits with the bare signal number, 9, after its BAD TERMINATION banner. Both end the
    # other rank at once.
    want9 = 137 if launcher.is_open_mpi() else 9
    check(p9.returncode == want9 and took < 5,
          f"kill -9: {launcher.name()} launcher exit {p9.returncode} (want {want9}) after {took:.1f} s")

    if not launcher.is_open_mpi():
        # jobs/slurm/preemptible.sbatch launches with Open MPI's `mpirun -q --bind-to none` (on an
        # MPICH site the job script launches with srun), so its sections cannot run with this build.
        print("SKIP sections 5 and 6 (jobs/slurm/preemptible.sbatch): the job script runs Open MPI's "
              f"mpirun, not this build's {launcher.launcher()}")
        for what, took in TIMES:
            print(f"fault to exit: {what}: {took:.2f} s")
        print("faults:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
        return 1 if FAILURES else 0

    # 5. preemption during start-up through the job script
    bindir = f"{w}/fakebin"
    os.makedirs(bindir)
    with open(f"{bindir}/scontrol", "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" >> {w}/scontrol.calls\n")
    os.chmod(f"{bindir}/scontrol", 0o755)
    for i, delay in enumerate((0.0, 0.03, 0.06, 0.1, 0.2, 0.5)):
        out = f"{w}/early{i}"
        env = dict(ENV, PATH=bindir + ":" + ENV["PATH"], SLURM_JOB_ID=str(1000 + i), SLURM_NTASKS="2",
                   SLURM_SUBMIT_DIR=w, LLAMAFT_BIN=a.llamaft, LLAMAFT_REPO=w)
        log = open(f"{out}.log", "w")
        job = subprocess.Popen(["bash", f"{REPO}/jobs/slurm/preemptible.sbatch", a.cfg, "--output.dir", out,
                                "--train.steps", "100000", "--checkpoint.async", "false"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
        # From the moment the script is up (its first line, after its trap), while the ranks start.
        deadline = time.time() + 30
        while "start" not in open(f"{out}.log").read() and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        job.send_signal(signal.SIGUSR1)
        job.wait(timeout=120)
        text = open(f"{out}.log").read()
        calls = open(f"{w}/scontrol.calls").read() if os.path.exists(f"{w}/scontrol.calls") else ""
        committed = [d for d in os.listdir(f"{out}/checkpoints")] if os.path.isdir(f"{out}/checkpoints") else []
        check(job.returncode == 0 and "llamaft exited 85" in text and f"requeue {1000 + i}" in calls
              and any(d.startswith("step_") for d in committed),
              f"SIGUSR1 {delay:.2f} s after the script started: exit 85, checkpoint {sorted(committed)}, requeued "
              f"({'yes' if f'requeue {1000 + i}' in calls else 'no'})")
        if job.returncode != 0 or "llamaft exited 85" not in text:
            print(text[-2000:])

    # 6. the script's requeues on a hang (5) and a crash (137), and the cap
    for i, (fault, cap) in enumerate((("stop", "3"), ("kill", "3"), ("kill", "0"))):
        out = f"{w}/script_{fault}_{cap}"
        jobid = str(2000 + i)
        env = dict(ENV, PATH=bindir + ":" + ENV["PATH"], SLURM_JOB_ID=jobid, SLURM_NTASKS="2", SLURM_SUBMIT_DIR=w,
                   LLAMAFT_BIN=a.llamaft, LLAMAFT_REPO=w, LLAMAFT_MAX_CRASH_REQUEUES=cap)
        log = open(f"{out}.log", "w")
        job = subprocess.Popen(["bash", f"{REPO}/jobs/slurm/preemptible.sbatch", a.cfg, "--output.dir", out,
                                "--train.steps", "1000000", "--runtime.comm_timeout_s", "5"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while steps_logged(out) < 10 and time.time() < deadline:
            time.sleep(0.05)
        victims = [int(x) for x in subprocess.run(["pgrep", "-f", f"^{a.llamaft} train --config {a.cfg} --checkpoint"
                                                   f".resume auto --output.dir {out} "], capture_output=True,
                                                  text=True).stdout.split()]
        os.kill(victims[-1], signal.SIGSTOP if fault == "stop" else signal.SIGKILL)
        job.wait(timeout=90)
        text = open(f"{out}.log").read()
        calls = open(f"{w}/scontrol.calls").read()
        want_code = "5" if fault == "stop" else "137"
        requeued = f"requeue {jobid}" in calls
        check(f"llamaft exited {want_code}" in text and requeued == (cap != "0"),
              f"preemptible.sbatch, a rank {'stopped' if fault == 'stop' else 'killed'}, "
              f"LLAMAFT_MAX_CRASH_REQUEUES={cap}: exit {want_code}, requeued: {requeued}")
        if not (f"llamaft exited {want_code}" in text):
            print(text[-1500:])

    for what, took in TIMES:
        print(f"fault to exit: {what}: {took:.2f} s")
    print("faults:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
