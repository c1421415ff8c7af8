#!/usr/bin/env python3
"""Two hosts for real (tests/pyutil/netns_hosts.py: network + UTS namespaces
over a veth pair, Open MPI over TCP through an rsh agent), 2 ranks per host:

  1. Open MPI and llamaft see 2 hosts x 2 ranks (run_info.json's hostnames).
  2. hybrid_shard (shard groups of 2 within a host, the replica all-reduce
     across hosts) and full_shard over all 4 ranks: losses equal a 4-rank run
     on one host bit for bit (the same ranks, the same collective algorithms:
     only the transport differs).
  3. Inter-host bytes per step, from the veth's tx_bytes, against the
     communication model (check_comm_volume.py's per-rank volumes, placed on
     the two hosts; startup traffic cancels in the difference of a 1-step and
     a 1+N-step run):
       hybrid_shard: each rank all-reduces its gradient shard (4 P_u / 2 bytes
         per unit) with its replica on the other host; a 2-rank all-reduce of
         n bytes sends n each way, so both directions carry 4 x n per rank's n.
       full_shard (ranks 0, 1 on A; 2, 3 on B; c = 4 P_u / 4 per unit): an
         all-gather sends every c to both ranks of the other host (libnbc's
         linear and recursive-doubling schedules alike): 8c over the link;
         a reduce-scatter is libnbc's binomial reduce to rank 0 (rank 2's
         partial sum of all 4c crosses) then a linear scatter (c to each of
         ranks 2, 3): 6c.
     Measured / model must lie in [1, 1.10]: Ethernet, IP and TCP headers are
     66 bytes per segment of at most 1448 (4.6%), plus ACKs (one per two
     segments: 2.3%) and Open MPI's fragment headers (< 0.1%); TSO makes it
     less, never below the payload.
  4. A link cut mid-run (veth down) with runtime.comm_timeout_s = 5: the
     watchdog ends the job with exit 5; the time from the cut to mpirun's
     exit is printed.
  5. A slow link (tbf 1 Gbit/s; this kernel has no netem for delay): training
     goes on (full_shard), and comm_s in metrics.jsonl against the link's
     added transfer time (bytes / rate) gives the share the gather prefetch
     hides, printed.
Exits 77 with the reason where namespaces cannot be made.

Usage: check_two_hosts.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
sys.path.insert(0, HERE)
from netns_hosts import ENV, TwoHosts  # noqa: E402
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402
import check_comm_volume  # noqa: E402

ENV = dict(ENV, OMP_NUM_THREADS="1")


def train_args(a, out, strategy, steps, extra=()):
    return [a.llamaft, "train", "--model.path", a.model, "--data.path", a.data, "--data.seq_len", "32",
            "--train.global_batch_size", "8", "--train.steps", str(steps), "--train.warmup_steps", "1",
            "--fsdp.strategy", strategy, "--fsdp.shard_group_size", "2", "--output.dir", out,
            "--output.export", "false", "--output.progress", "false", "--checkpoint.at_end", "false", *extra]


def tagged(tag):
    """pids of the llamaft ranks whose environment holds LLAMAFT_TEST_TAG=tag (on either host)."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if f"LLAMAFT_TEST_TAG={tag}".encode() in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") \
                        and b"llamaft" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]:
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


def metrics(out):
    return [json.loads(l) for l in open(f"{out}/metrics.jsonl")]


def run(cmd, timeout=300):
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    why = TwoHosts.skip_reason()
    if not why and not launcher.is_open_mpi():
        # The two hosts are reached through Open MPI's rsh agent (netns_hosts.py's
        # mpirun --mca plm_rsh_agent, orted on the far side) and the byte model
        # counts Open MPI's libnbc schedules; neither exists under Hydra.
        why = (f"two hosts need Open MPI's mpirun (rsh agent into the namespaces, libnbc's collective "
               f"schedules in the byte model); this build launches with {launcher.launcher()} (Hydra)")
    if why:
        print(f"SKIP: {why}")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    a.model, a.data = f"{w}/tiny", f"{w}/data.jsonl"
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--output", a.model], check=True, capture_output=True)
    with open(a.data, "w") as f:
        for i in range(64):
            f.write(json.dumps({"input_ids": [(i * 37 + t * 11) % 1000 + 3 for t in range(32)]}) + "\n")
    cfg = json.load(open(f"{a.model}/config.json"))
    hosts = TwoHosts(f"{w}/hosts", prefix="lt", subnet="10.76.0")
    with hosts:
        return checks(a, hosts, cfg)


def checks(a, hosts, cfg):
    w = a.workdir
    steps, extra_steps = 1, 4
    for strategy in ("hybrid_shard", "full_shard"):
        one = f"{w}/one_{strategy}"
        r = run(launcher.mpirun(4, train_args(a, one, strategy, steps + extra_steps), quiet=True))
        check(r.returncode == 0, f"{strategy} on one host: exit {r.returncode} {r.stderr[-500:]}")
        sent = {}
        for n in (steps, steps + extra_steps):
            out = f"{w}/two_{strategy}_{n}"
            before = hosts.tx_bytes()
            r = run(hosts.mpirun(2, train_args(a, out, strategy, n)))
            after = hosts.tx_bytes()
            check(r.returncode == 0, f"{strategy} on two hosts, {n} steps: exit {r.returncode} {r.stderr[-800:]}")
            if r.returncode != 0:
                return 1
            sent[n] = {h: after[h] - before[h] for h in after}
        names = json.load(open(f"{out}/run_info.json"))["hostnames"]
        check(names == [hosts.names[0]] * 2 + [hosts.names[1]] * 2, f"{strategy}: ranks on hosts {names}")
        got, want = [m["loss"] for m in metrics(out)], [m["loss"] for m in metrics(one)]
        check(got == want, f"{strategy}: losses on two hosts equal one host bit for bit ({got[-1]!r})")
        per_step = {h: (sent[steps + extra_steps][h] - sent[steps][h]) / extra_steps for h in sent[steps]}
        vol = check_comm_volume.expected(cfg, strategy, 4, 2, 2)
        if strategy == "hybrid_shard":
            grad = vol["all_reduce_bytes"] - 40  # the replica all-reduce; the 40 bytes of counts are world-wide
            model = 4 * grad
        else:
            model = 8 * vol["all_gather_bytes"] + 1.5 * vol["reduce_scatter_bytes"]
        total = sum(per_step.values())
        ratio = total / model
        check(1.0 <= ratio <= 1.10,
              f"{strategy}: inter-host bytes per step {total:,.0f} ({', '.join(f'{h} sent {b:,.0f}' for h, b in per_step.items())})"
              f" against the model {model:,.0f}: {ratio:.4f}")
        a.__dict__[f"ratio_{strategy}"] = ratio

    # 4. the link cut mid-run
    out = f"{w}/cut"
    tag = f"cut{os.getpid()}"
    p = subprocess.Popen(hosts.mpirun(2, train_args(a, out, "hybrid_shard", 1000000, ["--runtime.comm_timeout_s", "5"]),
                                      extra=["-x", "LLAMAFT_TEST_TAG"]),
                         env=dict(ENV, LLAMAFT_TEST_TAG=tag), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not os.path.exists(f"{out}/metrics.jsonl")
                                      or sum(1 for _ in open(f"{out}/metrics.jsonl")) < 10):
        time.sleep(0.1)
    ranks = tagged(tag)
    hosts.set_link(False)
    t0 = time.time()
    while tagged(tag) and time.time() - t0 < 60:
        time.sleep(0.05)
    ranks_gone = time.time() - t0
    # mpirun waits for the far side's daemon until the link returns (under
    # Slurm, the node is marked down after SlurmdTimeout and the job ends).
    hosts.set_link(True)
    t1 = time.time()
    text, _ = p.communicate(timeout=120)
    mpirun_after_restore = time.time() - t1
    errs = [l for l in text.splitlines() if "llamaft: error" in l]
    print(f"link cut: all {len(ranks)} ranks exited {ranks_gone:.1f} s after the cut; mpirun exit {p.returncode} "
          f"{mpirun_after_restore:.1f} s after the link returned")
    check(len(ranks) == 4 and ranks_gone <= 5 + 9 + 5 and p.returncode == 5,
          f"link cut: every rank ended {ranks_gone:.1f} s after it (bound 19 s), exit {p.returncode}")
    check(1 <= len(errs) <= 2 and all("made no progress" in e for e in errs)
          and len({e.split(" @ ")[1].split("]")[0] for e in errs}) == len(errs),
          f"link cut: at most one line per side of the cut: {errs}")

    # 5. the slow link, full_shard (its gathers cross the link and are prefetched; hybrid_shard's
    # cross-host all-reduce is a blocking one at the end of the step)
    rate = 1e9 / 8
    base = metrics(f"{w}/two_full_shard_{steps + extra_steps}")
    hosts.limit_rate("1gbit")
    out = f"{w}/slow"
    r = run(hosts.mpirun(2, train_args(a, out, "full_shard", steps + extra_steps)))
    check(r.returncode == 0, f"slow link: trains (exit {r.returncode})")
    slow = metrics(out)
    mean = lambda rows, k: sum(m[k] for m in rows[1:]) / len(rows[1:])  # noqa: E731
    added = a.ratio_full_shard * (8 * check_comm_volume.expected(cfg, "full_shard", 4, 2, 2)["all_gather_bytes"]
                                  + 1.5 * check_comm_volume.expected(cfg, "full_shard", 4, 2, 2)["reduce_scatter_bytes"])
    added /= 2 * rate  # both directions at once
    d_comm = mean(slow, "comm_s") - mean(base, "comm_s")
    print(f"slow link (tbf 1 Gbit/s), full_shard: step {mean(base, 'step_s'):.3f} -> {mean(slow, 'step_s'):.3f} s, "
          f"comm_s {mean(base, 'comm_s'):.3f} -> {mean(slow, 'comm_s'):.3f} s per step; the link's added transfer "
          f"time is >= {added:.3f} s per step, of which {max(0.0, 1 - d_comm / added):.0%} is hidden")
    print("two hosts:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
