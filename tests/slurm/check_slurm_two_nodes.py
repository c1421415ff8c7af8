#!/usr/bin/env python3
"""Slurm across two nodes, for real, on one machine: two hosts made of network
+ UTS namespaces (tests/pyutil/netns_hosts.py: slA at 10.78.0.1, slB at
10.78.0.2, a veth between them), munged, slurmctld on slA and a slurmd on each
host (Debian's slurm-wlm, configured in a temporary folder). Then
  1. `sbatch -N2 --ntasks-per-node=1 jobs/slurm/multinode.sbatch` on the tiny
     model runs to completion with the script's default launcher
     (srun --mpi=pmix) and with LLAMAFT_LAUNCHER=mpirun: one rank on each
     host (run_info.json's "hostnames", and slB's slurmd launched the
     step), and losses and final weights equal,
     bit for bit, those of a one-host `mpirun -np 2` run of the same config
     with hybrid_shard and shard_group_size 1 (the script's sharding);
  2. `sbatch -N2 --ntasks-per-node=1 jobs/slurm/preemptible.sbatch`: its
     mpirun starts the second rank on slB through Slurm (plm slurm, an srun
     of orted); `scancel --signal=USR1 --batch` mid-run gives a committed
     checkpoint, exit 85 and `scontrol requeue`; the requeued job resumes
     from the checkpoint and ends with the same final weights as an
     uninterrupted one-host run;
  3. cancels what is left, shuts the cluster down, kills what still runs in
     the two namespaces and deletes them, even on failure.
Exits 77 (skip) with the exact reason when slurm-wlm, munge, Open MPI or
root are missing, when network namespaces cannot be made, or when the
sandbox stops the daemons from starting.

Two things the namespaces need that a real node has of its own:
  - `ip netns exec` mounts a fresh /sys, which hides the cgroup file systems,
    and slurmd will not start without them (its cgroup plugin is loaded even
    with proctrack/linuxproc and task/none): each slurmd re-mounts this
    machine's cgroup mounts first, in its own mount namespace;
  - the nodes share one /tmp, where Slurm's PMIx plugin makes the same
    spmix_appdir_<uid>_<job>.<step> folder on every node ("File exists"):
    TmpFS=<work>/tmp/%n gives each node its own.

Usage: check_slurm_two_nodes.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import st_numpy  # noqa: E402
from checks import FAILURES, check  # noqa: E402
from netns_hosts import TwoHosts  # noqa: E402
sys.path.insert(0, HERE)
from slurm_util import POLICY, REVOKE_WAIT_S, sh, start_munge  # noqa: E402

# Not the one-node test's ports (16817/16818) nor netns_hosts' default hosts (lf*, 10.77.0).
PREFIX, SUBNET = "sl", "10.78.0"
CTLD_PORT, SLURMD_PORT = 16827, 16828
SHORT_STEPS = 40    # multinode.sbatch runs
LONG_STEPS = 200    # the preempted run: the signal comes after >= 20 steps
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED")


def tail(path, n=3):
    if not os.path.exists(path):
        return ""
    return " | ".join(open(path, errors="replace").read().strip().splitlines()[-n:])


def cgroup_remounts():
    """Shell commands that mount again, inside `ip netns exec` (whose fresh /sys hides them), the cgroup file
    systems this machine has under /sys/fs/cgroup: same type, source and options, so the same hierarchies."""
    cmds = []
    for line in open("/proc/self/mountinfo"):
        pre, post = line.split(" - ", 1)
        mnt = pre.split()[4]
        fstype, src, super_opts = post.split()[:3]
        if mnt != "/sys/fs/cgroup" and not mnt.startswith("/sys/fs/cgroup/"):
            continue
        opts = ",".join(o for o in super_opts.split(",") if o not in ("rw", "ro"))
        cmds.append(f"mkdir -p {mnt} && mount -t {fstype} {'-o ' + opts if opts else ''} {src} {mnt}")
    return " && ".join(cmds) or "true"


class TwoNodeCluster:
    """slurmctld on host 0 (slA), a slurmd on each host; every client command runs on slA."""

    def __init__(self, work, hosts):
        self.work = work
        self.hosts = hosts
        self.conf = os.path.join(work, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.procs = []

    def node_hardware(self):
        """CPUs and topology as `slurmd -C` sees them; both nodes share this machine's cores."""
        keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        toks = [t for t in sh(["slurmd", "-C"], check_rc=False).stdout.split() if t.split("=")[0] in keep]
        return " ".join(toks) if any(t.startswith("CPUs=") for t in toks) else "CPUs=2"

    def write_conf(self):
        w = self.work
        for d in ["state", "log"] + [f"{k}/{n}" for k in ("spool", "tmp") for n in self.hosts.names]:
            os.makedirs(os.path.join(w, d), exist_ok=True)
        hw = self.node_hardware()
        nodes = "".join(f"NodeName={n} NodeAddr={a} {hw} State=UNKNOWN\n"
                        for n, a in zip(self.hosts.names, self.hosts.addrs))
        ctld = self.hosts.names[0]
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=llamaft-two-nodes
SlurmctldHost={ctld}({self.hosts.addrs[0]})
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool/%n
TmpFS={w}/tmp/%n
SlurmctldPidFile={w}/slurmctld.pid
SlurmdPidFile={w}/spool/%n/slurmd.pid
SlurmctldLogFile={w}/log/slurmctld.log
SlurmdLogFile={w}/log/slurmd.%n.log
MinJobAge=600
{POLICY}KillWait=10
{nodes}PartitionName=debug Nodes={','.join(self.hosts.names)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")

    def client(self, argv, env=None, check_rc=True, timeout=60):
        """A Slurm client command (or any command) run on slA."""
        return sh(self.hosts.on(0, argv), env=env or self.env, check_rc=check_rc, timeout=timeout)

    def _daemon(self, name, host, argv):
        """Start a daemon on host; return None or why it died at start-up."""
        err = os.path.join(self.work, "log", name + ".stderr")
        p = subprocess.Popen(self.hosts.on(host, argv), env=self.env, stdout=subprocess.DEVNULL,
                             stderr=open(err, "w"))
        self.procs.append(p)
        time.sleep(1)
        if p.poll() is not None:
            log = os.path.join(self.work, "log", "slurmctld.log" if name == "slurmctld" else
                               f"{name.replace('-', '.')}.log")
            return f"{name} exited at start-up ({p.returncode}): {tail(err) or tail(log)}"
        return None

    def start(self):
        why = start_munge()
        if why:
            return why
        self.write_conf()
        why = self._daemon("slurmctld", 0, ["slurmctld", "-D", "-f", self.conf])
        if why:
            return why
        deadline = time.time() + 30
        while self.client(["scontrol", "ping"], check_rc=False).returncode != 0:
            if time.time() > deadline:
                return f"slurmctld does not answer scontrol ping; see {self.work}/log"
            time.sleep(1)
        mounts = cgroup_remounts()
        for i, n in enumerate(self.hosts.names):
            why = self._daemon(f"slurmd-{n}", i, ["sh", "-c", f"{mounts} && exec slurmd -D -N {n} -f {self.conf}"])
            if why:
                return why
        deadline = time.time() + 90
        while time.time() < deadline:
            states = self.node_states()
            if sorted(states) == sorted(self.hosts.names) and all(s == "idle" for s in states.values()):
                return None
            time.sleep(1)
        return f"the nodes never became idle (sinfo says {states}); see {self.work}/log"

    def node_states(self):
        r = self.client(["sinfo", "-h", "-N", "-o", "%N %T"], check_rc=False)
        return dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2)

    def job_state(self, job):
        r = self.client(["scontrol", "show", "job", str(job)], check_rc=False).stdout
        fields = dict(tok.split("=", 1) for tok in r.split() if "=" in tok)
        return fields.get("JobState", "?"), int(fields.get("Restarts", "0")), fields

    def wait_job(self, job, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            state, _, _ = self.job_state(job)
            if state in TERMINAL:
                return state
            time.sleep(1)
        return self.job_state(job)[0]

    def step_launches(self, node, job):
        """How many job steps of `job` node's slurmd launched (srun's tasks, or mpirun's orted through srun)."""
        log = os.path.join(self.work, "log", f"slurmd.{node}.log")
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        return text.count(f"launch task StepId={job}.")

    def _namespace_pids(self):
        pids = set()
        for h in self.hosts.names:
            r = sh(["ip", "netns", "pids", h], check_rc=False)
            pids.update(int(p) for p in r.stdout.split() if p.isdigit())
        return pids

    def stop(self):
        """Cancel what is left, shut Slurm down, kill what still runs in the namespaces, delete them."""
        try:
            if any(p.poll() is None for p in self.procs):
                self.client(["scancel", "--user=root"], check_rc=False)
                deadline = time.time() + 20
                while time.time() < deadline and self.client(["squeue", "-h"], check_rc=False).stdout.strip():
                    time.sleep(1)
                self.client(["scontrol", "shutdown"], check_rc=False)
            for p in self.procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        finally:
            # Job steps, ranks or daemons still in the two hosts: all were started by this test.
            for _ in range(5):
                pids = self._namespace_pids()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.5)
            self.hosts.down()


def losses(out):
    path = f"{out}/metrics.jsonl"
    return [json.loads(line)["loss"] for line in open(path)] if os.path.exists(path) else []


def run_info(out):
    path = f"{out}/run_info.json"
    return json.load(open(path)) if os.path.exists(path) else {}


def same_tensors(path, ref_path):
    if not (os.path.exists(path) and os.path.exists(ref_path)):
        return False
    got, want = st_numpy.load(path), st_numpy.load(ref_path)
    return sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)


def weights_equal(out, ref):
    """The final weights (the exported model) of two training outputs, bit for bit."""
    return same_tensors(f"{out}/model/model.safetensors", f"{ref}/model/model.safetensors")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    a.llamaft = os.path.abspath(a.llamaft)  # the job scripts run in other folders
    for tool in ("slurmctld", "slurmd", "sbatch", "srun", "munged", "mpirun"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not installed (Debian packages slurm-wlm, munge and openmpi-bin; "
                  "scripts/install-deps.sh --tests)")
            return 77
    if os.geteuid() != 0:
        print("SKIP: starting slurmd and munged in network namespaces needs root")
        return 77
    why = TwoHosts.skip_reason()
    if why:
        print(f"SKIP: two namespace hosts cannot be made here: {why}")
        return 77
    w = os.path.abspath(a.workdir)
    hosts = TwoHosts(os.path.join(w, "hosts"), PREFIX, SUBNET)
    cluster = TwoNodeCluster(os.path.join(w, "cluster"), hosts)
    if cluster._namespace_pids():  # daemons or ranks left over from an interrupted run of this test
        cluster.stop()
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(cluster.work)
    os.chmod(w, 0o755)
    t0 = time.time()
    ran = False
    try:
        hosts.up()
        why = cluster.start()
        if why:
            print(f"SKIP: the sandbox stops a two-node Slurm cluster from running: {why}")
            return 77
        print(f"cluster up in {time.time() - t0:.1f} s: nodes {cluster.node_states()}", flush=True)
        ran = True
        return run_checks(a, cluster, w)
    finally:
        cluster.stop()
        if ran:
            print(f"cluster torn down; {time.time() - t0:.1f} s in all", flush=True)


def run_checks(a, cluster, w):
    env = dict(cluster.env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               LLAMAFT_BIN=a.llamaft, LLAMAFT_REPO=REPO, LLAMAFT_STATE_DIR=f"{w}/job-state")
    jobs = os.path.join(REPO, "jobs", "slurm")
    names = cluster.hosts.names
    sh([a.llamaft, "init", "--preset", "tiny", "--seed", "2", "--output", f"{w}/base"])
    rng = np.random.default_rng(0)
    with open(f"{w}/data.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"input_ids": rng.integers(3, 1024, size=32).tolist()}) + "\n")

    def config(name, steps):
        path = f"{w}/{name}.cfg"
        with open(path, "w") as f:
            f.write(f"[model]\npath = {w}/base\n[data]\npath = {w}/data.jsonl\nseq_len = 32\nshuffle = true\n"
                    f"[train]\nglobal_batch_size = 4\nsteps = {steps}\nlr = 1e-3\nwarmup_steps = 5\n"
                    "lr_schedule = cosine\n[output]\nprogress = false\n")
        return path

    def one_host_reference(cfg, out, *extra):
        sh(["mpirun", "-q", "--oversubscribe", "-np", "2", a.llamaft, "train", "--config", cfg, "--output.dir", out,
            *extra], env=env, timeout=300)

    def submit(script, cfg, out, log, job_env=env):
        r = cluster.client(["sbatch", "--parsable", "-N2", "--ntasks-per-node=1", f"--chdir={w}", f"--output={log}",
                            os.path.join(jobs, script), cfg, "--output.dir", out], env=job_env)
        return r.stdout.strip().split(";")[0]

    def two_hosts(out):
        return sorted(run_info(out).get("hostnames", [])) == sorted(names)

    # 1. multinode.sbatch: one rank per node, hybrid_shard with shard groups of 1 (ranks per node). Bit for bit
    # is the right bar: the same ranks, sharding and reduction order give the same float operations on any host,
    # and the bar is sharp: a one-host full_shard run (shard 2 x replica 1) differs from this one from step 3 on
    # (6.924091981303308 against 6.924092027448839), so a script that lost its sharding flags fails here.
    short = config("short", SHORT_STEPS)
    ref = f"{w}/reference-hybrid"
    one_host_reference(short, ref, "--fsdp.strategy", "hybrid_shard", "--fsdp.shard_group_size", "1")
    want = losses(ref)
    # Guards that equality below means something: the reference trained (losses move, weights left the base).
    trained = len(set(want)) > 1 and not same_tensors(f"{ref}/model/model.safetensors", f"{w}/base/model.safetensors")
    check(len(want) == SHORT_STEPS and trained and os.path.exists(f"{ref}/model/model.safetensors"),
          f"one-host reference: {len(want)} steps, loss {want[0]:.4f} -> {want[-1]:.4f}, weights changed")
    mpi_list = cluster.client(["srun", "--mpi=list"], env=env, check_rc=False)
    launchers = ["srun", "mpirun"]
    if "pmix" not in (mpi_list.stdout + mpi_list.stderr):
        print(f"note: this Slurm has no mpi/pmix plugin (srun --mpi=list: {mpi_list.stdout.split()}); "
              "multinode.sbatch's default launcher (srun --mpi=pmix) is not tried", flush=True)
        launchers = ["mpirun"]
    for launcher in launchers:
        out, log = f"{w}/multinode-{launcher}", f"{w}/multinode-{launcher}.log"
        t = time.time()
        job = submit("multinode.sbatch", short, out, log, dict(env, LLAMAFT_LAUNCHER=launcher))
        state = cluster.wait_job(job, 180)
        what = f"multinode.sbatch, LLAMAFT_LAUNCHER={launcher}, job {job}"
        check(state == "COMPLETED", f"{what} ended {state} in {time.time() - t:.1f} s"
              + ("" if state == "COMPLETED" else f" (log: {tail(log, 5)})"))
        info = run_info(out)
        check(two_hosts(out) and info.get("strategy") == "hybrid_shard" and cluster.step_launches(names[1], job) == 1,
              f"{what}: ranks on {info.get('hostnames')}, {info.get('strategy')}, "
              f"{cluster.step_launches(names[1], job)} step launched by {names[1]}'s slurmd")
        got = losses(out)
        first = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), None)
        diff = "" if first is None else f" (first difference at step {first + 1}: {got[first]!r} vs {want[first]!r})"
        check(got == want, f"{what}: {len(got)} losses equal the one-host run bit for bit{diff}")
        check(weights_equal(out, ref), f"{what}: final weights equal the one-host run bit for bit")

    # 2. preemptible.sbatch across the two nodes: its mpirun reaches slB through Slurm (plm slurm -> srun orted).
    long = config("long", LONG_STEPS)
    ref = f"{w}/reference"
    one_host_reference(long, ref)
    out, log = f"{w}/preempted", f"{w}/preempted.log"
    job = submit("preemptible.sbatch", long, out, log)
    metrics = f"{out}/metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 20):
        if cluster.job_state(job)[0] in TERMINAL:
            break
        time.sleep(0.5)
    steps_before = sum(1 for _ in open(metrics)) if os.path.exists(metrics) else 0
    check(steps_before >= 20 and two_hosts(out),
          f"preemptible.sbatch job {job} is training on {run_info(out).get('hostnames')} ({steps_before} steps logged)")
    cluster.client(["scancel", "--signal=USR1", "--batch", job], env=env)
    # The requeued job waits for its begin time (about 120 s); make it eligible now. The script requeues
    # while the job still runs, so a job that reaches an end state was either requeued before or never.
    deadline = time.time() + 240
    requeued = False
    while time.time() < deadline:
        state, restarts, _ = cluster.job_state(job)
        if restarts >= 1 and not requeued and state == "PENDING":
            requeued = True
            time.sleep(REVOKE_WAIT_S)  # past the second of the old credential's revocation
            cluster.client(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check_rc=False)
        if state in TERMINAL:
            break
        time.sleep(1)
    state, restarts, fields = cluster.job_state(job)
    text = open(log).read() if os.path.exists(log) else ""
    check(requeued and restarts == 1, f"job {job} was requeued once (Restarts={restarts})")
    check(state == "COMPLETED", f"job {job} ended {state} on {fields.get('NodeList')}")
    check("forwarding SIGUSR1" in text and "llamaft exited 85" in text and "requeueing" in text,
          "the batch script forwarded the signal, saw exit 85 and requeued")
    check("restart 1" in text and "resumed from" in text, "the second run resumed from the checkpoint (restart 1)")
    launches = cluster.step_launches(names[1], job)
    check(two_hosts(out) and run_info(out).get("restarts") == 1 and launches == 2,
          f"the resumed run had one rank on each host too ({run_info(out).get('hostnames')}); mpirun reached "
          f"{names[1]} through Slurm in both runs ({launches} orted steps launched by its slurmd)")
    lines = [json.loads(line) for line in open(metrics)] if os.path.exists(metrics) else [{}]
    steps = [m.get("step") for m in lines]
    check(steps == list(range(1, LONG_STEPS + 1)) and lines[0].get("restarts") == 0
          and lines[-1].get("restarts") == 1,
          f"metrics: steps 1..{LONG_STEPS} once each, restarts 0 then 1 ({len(lines)} lines)")
    check(weights_equal(out, ref), "final weights after preemption + requeue across two nodes equal an "
          "uninterrupted one-host run bit for bit")
    print("slurm two nodes:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
