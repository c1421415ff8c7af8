#!/usr/bin/env python3
"""Slurm, for real: starts a one-node cluster on localhost (munged, slurmctld,
slurmd from Debian's slurm-wlm, configured in a temporary folder), then
  1. `sbatch --test-only` passes for every script in jobs/slurm/;
  2. sbatches preemptible.sbatch on the tiny model with 2 CPU ranks, sends
     the preemption signal mid-run (`scancel --signal=USR1 --batch`), and
     checks that the job checkpointed, exited 85, was requeued, resumed from
     the checkpoint with SLURM_RESTART_COUNT=1 in its metrics, finished, and
     ended with the same final weights as an uninterrupted run;
  3. kills a rank of an `srun --mpi=pmix -K1` step with kill -9: srun exits
     137 (128 + 9) within KillWait + 15 s;
  4. shuts the cluster down.
Exits 77 (skip) with the exact reason when slurm-wlm/munge are missing or the
sandbox stops slurmd from running.

Usage: check_slurm.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import st_numpy  # noqa: E402
sys.path.insert(0, HERE)
from slurm_util import POLICY, REVOKE_WAIT_S, sh, start_munge  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402


class Cluster:
    def __init__(self, work):
        self.work = work
        self.host = socket.gethostname()
        self.conf = os.path.join(work, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.procs = []

    def write_conf(self):
        cpus = 2
        m = sh(["slurmd", "-C"], check_rc=False).stdout
        for tok in m.split():
            if tok.startswith("CPUs="):
                cpus = int(tok[5:])
        for d in ("state", "spool", "log"):
            os.makedirs(os.path.join(self.work, d), exist_ok=True)
        w = self.work
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=llamaft-test
SlurmctldHost={self.host}
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool
SlurmctldPidFile={w}/slurmctld.pid
SlurmdPidFile={w}/slurmd.pid
SlurmctldLogFile={w}/log/slurmctld.log
SlurmdLogFile={w}/log/slurmd.log
{POLICY}KillWait=30
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")

    def start(self):
        why = start_munge()
        if why:
            return why
        self.write_conf()
        for daemon in ("slurmctld", "slurmd"):
            p = subprocess.Popen([daemon, "-D", "-f", self.conf], env=self.env, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(self.work, "log", daemon + ".stderr"), "w"))
            self.procs.append(p)
            time.sleep(2)
            if p.poll() is not None:
                err = open(os.path.join(self.work, "log", daemon + ".stderr")).read().strip()
                log = os.path.join(self.work, "log", daemon + ".log")
                tail = open(log).read().strip().splitlines()[-3:] if os.path.exists(log) else []
                return f"{daemon} exited at start-up ({p.returncode}): {err} {' | '.join(tail)}"
        deadline = time.time() + 90
        while time.time() < deadline:
            state = sh(["sinfo", "-h", "-o", "%T"], env=self.env, check_rc=False).stdout.strip()
            if state.startswith("idle"):
                return None
            time.sleep(2)
        return f"the node never became idle (sinfo says '{state}'); see {self.work}/log"

    def stop(self):
        sh(["scontrol", "shutdown"], env=self.env, check_rc=False)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    def job_state(self, job):
        r = sh(["scontrol", "show", "job", str(job)], env=self.env, check_rc=False).stdout
        fields = dict(tok.split("=", 1) for tok in r.split() if "=" in tok)
        return fields.get("JobState", "?"), int(fields.get("Restarts", "0")), fields


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    a.llamaft = os.path.abspath(a.llamaft)  # the job scripts run in other folders
    for tool in ("slurmctld", "slurmd", "sbatch", "munged"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not installed (Debian packages slurm-wlm and munge; scripts/install-deps.sh --tests)")
            return 77
    if os.geteuid() != 0:
        print("SKIP: starting slurmd and munged needs root here")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    os.chmod(w, 0o755)
    cluster = Cluster(os.path.join(w, "cluster"))
    os.makedirs(cluster.work)
    why = cluster.start()
    if why:
        print(f"SKIP: the sandbox stops a local Slurm cluster from running: {why}")
        cluster.stop()
        return 77
    try:
        return run_checks(a, cluster, w)
    finally:
        cluster.stop()


def run_checks(a, cluster, w):
    env = dict(cluster.env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               LLAMAFT_BIN=a.llamaft, LLAMAFT_REPO=REPO)
    # 1. every script passes sbatch --test-only
    jobs = os.path.join(REPO, "jobs", "slurm")
    for script in sorted(os.listdir(jobs)):
        if not script.endswith(".sbatch"):
            continue
        r = sh(["sbatch", "--test-only", "--ntasks=1", "--nodes=1", os.path.join(jobs, script), "x.cfg"], env=env,
               check_rc=False)
        check(r.returncode == 0 and "to start" in (r.stdout + r.stderr), f"sbatch --test-only {script}")
    r = sh(f"DRY_RUN=1 NODES=1 {jobs}/scaling_sweep.sh x.cfg", env=env, check_rc=False)
    check(r.returncode == 0 and sum(l.startswith("sbatch ") for l in r.stdout.splitlines()) == 2, "scaling_sweep.sh DRY_RUN lists one sbatch per point")

    # 2. preemption and requeue on the tiny model with 2 ranks
    sh([a.llamaft, "init", "--preset", "tiny", "--seed", "2", "--output", f"{w}/base"])
    rng = np.random.default_rng(0)
    with open(f"{w}/data.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"input_ids": rng.integers(3, 1024, size=32).tolist()}) + "\n")
    cfg = f"{w}/train.cfg"
    with open(cfg, "w") as f:
        f.write(f"[model]\npath = {w}/base\n[data]\npath = {w}/data.jsonl\nseq_len = 32\nshuffle = true\n"
                "[train]\nglobal_batch_size = 4\nsteps = 400\nlr = 1e-3\nwarmup_steps = 5\nlr_schedule = cosine\n"
                "[output]\nprogress = false\n")
    ref = f"{w}/reference"
    sh([*launcher.mpirun("2", []), a.llamaft, "train", "--config", cfg, "--output.dir", ref], env=env,
       timeout=300)
    out = f"{w}/preempted"
    r = sh(["sbatch", "--parsable", "--ntasks=2", f"--output={w}/job.log", os.path.join(jobs, "preemptible.sbatch"),
            cfg, "--output.dir", out], env=env)
    job = r.stdout.strip().split(";")[0]
    # Wait until training is under way, then preempt.
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(f"{out}/metrics.jsonl") and
                                         sum(1 for _ in open(f"{out}/metrics.jsonl")) >= 20):
        time.sleep(0.5)
    steps_before = sum(1 for _ in open(f"{out}/metrics.jsonl")) if os.path.exists(f"{out}/metrics.jsonl") else 0
    check(steps_before >= 20, f"job {job} is training ({steps_before} steps logged)")
    sh(["scancel", "--signal=USR1", "--batch", job], env=env)
    # The requeued job waits for its begin time; make it eligible now.
    deadline = time.time() + 300
    requeued = False
    while time.time() < deadline:
        state, restarts, fields = cluster.job_state(job)
        if restarts >= 1 and not requeued and state == "PENDING":
            requeued = True
            time.sleep(REVOKE_WAIT_S)  # past the second of the old credential's revocation
            sh(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check_rc=False)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") and restarts >= 1:
            break
        time.sleep(1)
    state, restarts, fields = cluster.job_state(job)
    log = open(f"{w}/job.log").read() if os.path.exists(f"{w}/job.log") else ""
    check(requeued and restarts == 1, f"job {job} was requeued once (Restarts={restarts})")
    check(state == "COMPLETED", f"job {job} ended {state}")
    check("forwarding SIGUSR1" in log and "llamaft exited 85" in log and "requeueing" in log,
          "the batch script forwarded the signal, saw exit 85 and requeued")
    check("restart 1" in log and "resumed from" in log, "the second run resumed from the checkpoint (restart 1)")
    metrics = [json.loads(l) for l in open(f"{out}/metrics.jsonl")]
    steps = [m["step"] for m in metrics]
    check(steps[-1] == 400 and metrics[-1]["restarts"] == 1 and metrics[0]["restarts"] == 0,
          f"metrics: steps to 400, restarts 0 then 1 ({len(metrics)} lines)")
    got = st_numpy.load(f"{out}/model/model.safetensors")
    want = st_numpy.load(f"{ref}/model/model.safetensors")
    check(all(np.array_equal(got[k], want[k]) for k in want),
          "final weights after preemption + requeue equal an uninterrupted run bit for bit")

    # 3. a rank killed under srun (multinode.sbatch's launcher): srun -K1 ends the step with 128 + 9.
    # The other rank catches the step's SIGTERM as a preemption signal and sits in its collective, so
    # slurmstepd's SIGKILL comes KillWait (30 s here) later.
    out = f"{w}/srun_kill"
    p = subprocess.Popen(["srun", "-n2", "--mpi=pmix", "-K1", a.llamaft, "train", "--config", cfg, "--output.dir", out,
                          "--train.steps", "1000000", "--checkpoint.at_end", "false"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(f"{out}/metrics.jsonl") and
                                         sum(1 for _ in open(f"{out}/metrics.jsonl")) >= 10):
        time.sleep(0.1)
    pids = sh(["pgrep", "-f", f"^{a.llamaft} train --config {cfg} --output.dir {out} "], check_rc=False).stdout.split()
    os.kill(int(pids[-1]), 9)
    t0 = time.time()
    text, _ = p.communicate(timeout=120)
    took = time.time() - t0
    print(f"srun, kill -9 of a rank: exit {p.returncode} after {took:.1f} s")
    check(p.returncode == 137 and took < 30 + 15, f"srun -K1: a rank killed by signal 9 ends the step with 137 ({took:.1f} s)")

    # 4. walltime-aware saves (issue 31 item 6): a job with a 3-minute limit saves and exits 85 once the job's
    # end (SLURM_JOB_END_TIME or scontrol's EndTime) is nearer than a save + a step + 100 s, about 80 s in, and
    # preemptible.sbatch requeues it. Slurm may send --signal up to 60 s early, so the script's USR1 is moved to
    # 1 s before the end: it comes at 119 s at the earliest, well after the walltime save.
    out = f"{w}/walltime"
    t0 = time.time()
    r = sh(["sbatch", "--parsable", "--ntasks=2", "--time=3", "--signal=B:USR1@1", f"--output={w}/walltime.log",
            os.path.join(jobs, "preemptible.sbatch"), cfg, "--output.dir", out, "--train.steps", "1000000",
            "--checkpoint.walltime_margin_s", "100"], env=env)
    job = r.stdout.strip().split(";")[0]
    deadline = time.time() + 240
    state, restarts = "", 0
    while time.time() < deadline:
        state, restarts, fields = cluster.job_state(job)
        if restarts >= 1 or state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            break
        time.sleep(1)
    took = time.time() - t0
    for _ in range(20):  # the batch script's last lines, written as it requeues
        log = open(f"{w}/walltime.log").read() if os.path.exists(f"{w}/walltime.log") else ""
        if "requeueing" in log:
            break
        time.sleep(0.5)
    sh(["scancel", job], env=env, check_rc=False)
    source = re.search(r"the job ends in (\d+) s \(([^)]*)\)", log)
    print(f"walltime: job {job} {state}, restarts {restarts} after {took:.0f} s; end time from "
          f"{source.group(2) if source else '?'}", flush=True)
    check(source is not None, "llamaft found the job's end time (" + (source.group(2) if source else "none") + ")")
    parts = {"requeued": restarts >= 1, "walltime save": "time limit is" in log, "exit 85": "llamaft exited 85" in log,
             "requeueing": "requeueing" in log, "no signal": "forwarding SIGUSR1" not in log,
             "checkpoint": os.path.exists(f"{out}/checkpoints/latest")}
    check(all(parts.values()), f"walltime: saved, exited 85 and requeued before the 3-minute limit, without a signal "
          f"({took:.0f} s; {state}, restarts {restarts}; missing: {[k for k, v in parts.items() if not v]})")
    print("slurm:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
