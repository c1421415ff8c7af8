#!/usr/bin/env python3
"""Scaling studies in one command.

  scaling_study.py local --np 1 2 4 --strategies full_shard hybrid_shard [--preset small --seq 256 ...]
      runs the sweep here with the MPI launcher named by LLAMAFT_MPIEXEC (default
      Open MPI's mpirun; MPICH's mpiexec works too), oversubscribed when np > cores,
      then collects it;
  scaling_study.py hosts --layouts 1x2 2x1 2x2 [--strategies hybrid_shard full_shard ...]
      runs layouts of HOSTS x RANKS-PER-HOST on two hosts made of network
      namespaces on this machine (tests/pyutil/netns_hosts.py; root), measures
      the inter-host bytes per step from the veth counters (a 1-step run's
      bytes subtracted from a 1+steps run's: start-up cancels), then collects;
      hybrid_shard's shard group is the ranks of one host;
  scaling_study.py collect DIR
      collects a finished sweep (e.g. from jobs/slurm/scaling_sweep.sh).

Every run folder's metrics.jsonl (and summary.json) is read; the first step of
each run is dropped as warm-up. Writes DIR/scaling.csv (ranks, strategy,
tokens/s, tokens/s per rank, efficiency, compute and communication seconds
per step, bytes communicated per step, memory per rank) and DIR/throughput.png,
DIR/efficiency.png, DIR/memory.png. Efficiency is tokens/s per rank relative to
the smallest rank count of the same strategy. Runs made by `hosts` add the
columns hosts, ranks_per_host and inter_host_bytes_per_step, and hosts.png
(inter-host MB and seconds per step by layout).
"""
import argparse
import csv
import json
import os
import subprocess
import sys

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "pyutil"))
import launcher  # noqa: E402  (Open MPI or MPICH launch lines)


def make_inputs(a, bin_):
    os.makedirs(a.dir, exist_ok=True)
    model = os.path.join(a.dir, "model")
    if not os.path.exists(os.path.join(model, "config.json")):
        subprocess.run([bin_, "init", "--preset", a.preset, "--output", model], check=True, capture_output=True)
    data = os.path.join(a.dir, "data.jsonl")
    import random
    rng = random.Random(0)
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    with open(data, "w") as f:
        for _ in range(256):
            f.write(json.dumps({"input_ids": [rng.randrange(3, vocab) for _ in range(a.seq)]}) + "\n")
    return model, data


def run_local(a):
    bin_ = a.llamaft or os.path.join(REPO, "build", "llamaft")
    model, data = make_inputs(a, bin_)
    cores = os.cpu_count() or 1
    for strategy in a.strategies:
        for np_ in a.np:
            name = f"np{np_}_{strategy}"
            out = os.path.join(a.dir, name)
            threads = max(1, cores // np_)
            cmd = launcher.mpirun(np_, [bin_, "train",
                   "--model.path", model, "--data.path", data, "--data.seq_len", str(a.seq),
                   "--train.global_batch_size", str(a.global_batch), "--train.micro_batch_size", str(a.micro_batch),
                   "--train.steps", str(a.steps), "--fsdp.strategy", strategy, "--output.dir", out,
                   "--output.export", "false", "--output.progress", "false", "--checkpoint.at_end", "false",
                   "--checkpoint.resume", "none", "--runtime.threads", str(threads)])
            if strategy == "hybrid_shard":
                cmd += ["--fsdp.shard_group_size", str(min(np_, a.group))]
            print(f"scaling_study: {name} ({threads} threads per rank)", flush=True)
            if os.path.exists(os.path.join(out, "metrics.jsonl")):
                os.remove(os.path.join(out, "metrics.jsonl"))
            subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    collect(a.dir)


def run_hosts(a):
    sys.path.insert(0, os.path.join(REPO, "tests", "pyutil"))
    from netns_hosts import TwoHosts
    why = TwoHosts.skip_reason()
    if why:
        sys.exit(f"scaling_study hosts: {why}")
    bin_ = a.llamaft or os.path.join(REPO, "build", "llamaft")
    model, data = make_inputs(a, bin_)
    cores = os.cpu_count() or 1
    with TwoHosts(os.path.join(a.dir, "hosts"), prefix="ss", subnet="10.75.0") as hosts:
        for layout in a.layouts:
            nh, per = (int(x) for x in layout.split("x"))
            if nh not in (1, 2) or per < 1:
                sys.exit(f"scaling_study hosts: layout {layout}: HOSTSxRANKS with 1 or 2 hosts")
            for strategy in a.strategies:
                name = f"h{nh}x{per}_{strategy}"
                out = os.path.join(a.dir, name)
                threads = max(1, cores // (nh * per))
                sent = []
                for steps in (1, 1 + a.steps):
                    argv = [bin_, "train", "--model.path", model, "--data.path", data, "--data.seq_len", str(a.seq),
                            "--train.global_batch_size", str(a.global_batch),
                            "--train.micro_batch_size", str(a.micro_batch), "--train.steps", str(steps),
                            "--fsdp.strategy", strategy, "--fsdp.shard_group_size", str(per), "--output.dir", out,
                            "--output.export", "false", "--output.progress", "false", "--checkpoint.at_end", "false",
                            "--checkpoint.resume", "none", "--runtime.threads", str(threads)]
                    if os.path.exists(os.path.join(out, "metrics.jsonl")):
                        os.remove(os.path.join(out, "metrics.jsonl"))
                    before = hosts.tx_bytes()
                    # More ranks than cores: yield when idle, as Open MPI does by itself on one oversubscribed host.
                    extra = ["--mca", "mpi_yield_when_idle", "1"] if nh * per > cores else []
                    subprocess.run(hosts.mpirun(per, argv, hosts=nh, extra=extra), env=dict(ENV, OMP_NUM_THREADS=str(threads)),
                                   check=True, capture_output=True)
                    sent.append(sum(hosts.tx_bytes().values()) - sum(before.values()))
                per_step = (sent[1] - sent[0]) / a.steps
                print(f"scaling_study: {name}: {per_step / 1e6:.3f} MB between the hosts per step", flush=True)
                with open(os.path.join(out, "hosts.json"), "w") as f:
                    json.dump({"hosts": nh, "ranks_per_host": per, "inter_host_bytes_per_step": per_step}, f)
    collect(a.dir)


def collect(sweep):
    rows = []
    for name in sorted(os.listdir(sweep)):
        path = os.path.join(sweep, name, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        lines = [m for m in (json.loads(l) for l in open(path)) if "tokens_per_s" in m]  # skip validation lines
        steady = lines[1:] or lines
        n = len(steady)
        mean = lambda k: sum(m[k] for m in steady) / n  # noqa: E731
        summary_path = os.path.join(sweep, name, "summary.json")
        summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
        ranks = lines[0]["world_size"]
        rows.append({
            "run": name, "ranks": ranks, "strategy": lines[0]["strategy"],
            "tokens_per_s": mean("tokens_per_s"), "tokens_per_s_per_rank": mean("tokens_per_s") / ranks,
            "step_s": mean("step_s"), "comm_s": mean("comm_s"), "compute_s": mean("step_s") - mean("comm_s"),
            "comm_bytes_per_step": mean("comm_bytes"),
            "mem_per_rank_bytes": steady[-1].get("mem_peak_bytes", 0),
            "peak_rss_bytes": summary.get("peak_rss_bytes_max_rank", 0),
        })
        hosts_path = os.path.join(sweep, name, "hosts.json")
        if os.path.exists(hosts_path):
            rows[-1].update(json.load(open(hosts_path)))
    if not rows:
        sys.exit(f"scaling_study: no run folders with metrics.jsonl under {sweep}")
    base = {}
    for r in sorted(rows, key=lambda r: r["ranks"]):
        base.setdefault(r["strategy"], r["tokens_per_s_per_rank"])
        r["efficiency"] = r["tokens_per_s_per_rank"] / base[r["strategy"]]
    rows.sort(key=lambda r: (r["strategy"], r["ranks"]))
    csv_path = os.path.join(sweep, "scaling.csv")
    cols = ["ranks", "strategy", "tokens_per_s", "tokens_per_s_per_rank", "efficiency", "compute_s", "comm_s",
            "step_s", "comm_bytes_per_step", "mem_per_rank_bytes", "peak_rss_bytes", "run"]
    if all("hosts" in r for r in rows):
        cols[1:1] = ["hosts", "ranks_per_host", "inter_host_bytes_per_step"]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in cols})
    print(f"{'strategy':<14} {'ranks':>5} {'tok/s':>9} {'tok/s/rank':>10} {'eff':>5} {'comp s':>7} {'comm s':>7} "
          f"{'comm MB':>8} {'mem MiB':>8}")
    for r in rows:
        print(f"{r['strategy']:<14} {r['ranks']:>5} {r['tokens_per_s']:9.0f} {r['tokens_per_s_per_rank']:10.0f} "
              f"{r['efficiency']:5.2f} {r['compute_s']:7.3f} {r['comm_s']:7.3f} {r['comm_bytes_per_step'] / 1e6:8.2f} "
              f"{r['mem_per_rank_bytes'] / 2**20:8.1f}")
    plot(rows, sweep)
    if all("hosts" in r for r in rows):
        for r in rows:
            print(f"  {r['hosts']} host(s) x {r['ranks_per_host']} {r['strategy']:<13} inter-host "
                  f"{r['inter_host_bytes_per_step'] / 1e6:8.3f} MB/step, step {r['step_s']:.3f} s, comm {r['comm_s']:.3f} s")
        plot_hosts(rows, sweep)
    print(f"wrote {csv_path} and throughput.png, efficiency.png, memory.png")


def plot(rows, sweep):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("scaling_study: matplotlib missing (Debian python3-matplotlib); CSV only")
        return
    strategies = sorted({r["strategy"] for r in rows})
    for key, label, fname, scale in [("tokens_per_s", "tokens/s (all ranks)", "throughput.png", 1),
                                     ("efficiency", "scaling efficiency (tokens/s per rank vs smallest run)",
                                      "efficiency.png", 1),
                                     ("mem_per_rank_bytes", "backend memory per rank (MiB)", "memory.png", 2**20)]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in strategies:
            pts = sorted((r["ranks"], r[key] / scale) for r in rows if r["strategy"] == s)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
        ax.set_xlabel("ranks")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(sweep, fname), dpi=110)
        plt.close(fig)


def plot_hosts(rows, sweep):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    strategies = sorted({r["strategy"] for r in rows})
    layouts = sorted({(r["hosts"], r["ranks_per_host"]) for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(strategies)
    for i, s in enumerate(strategies):
        by = {(r["hosts"], r["ranks_per_host"]): r for r in rows if r["strategy"] == s}
        xs = [j + i * width for j in range(len(layouts))]
        axes[0].bar(xs, [by[l]["inter_host_bytes_per_step"] / 1e6 if l in by else 0 for l in layouts], width, label=s)
        axes[1].bar(xs, [by[l]["step_s"] if l in by else 0 for l in layouts], width, label=s)
    for ax, label in zip(axes, ["inter-host MB per step", "seconds per step"]):
        ax.set_xticks([j + width * (len(strategies) - 1) / 2 for j in range(len(layouts))])
        ax.set_xticklabels([f"{h}x{p}" for h, p in layouts])
        ax.set_xlabel("hosts x ranks per host")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(sweep, "hosts.png"), dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("local")
    lo.add_argument("--dir", default="runs/scaling-local")
    lo.add_argument("--llamaft")
    lo.add_argument("--np", type=int, nargs="+", default=[1, 2, 4])
    lo.add_argument("--strategies", nargs="+", default=["full_shard", "hybrid_shard", "no_shard"])
    lo.add_argument("--preset", default="small")
    lo.add_argument("--seq", type=int, default=128)
    lo.add_argument("--global-batch", type=int, default=8)
    lo.add_argument("--micro-batch", type=int, default=1)
    lo.add_argument("--steps", type=int, default=4)
    lo.add_argument("--group", type=int, default=2, help="hybrid_shard group size")
    ho = sub.add_parser("hosts")
    ho.add_argument("--dir", default="runs/scaling-hosts")
    ho.add_argument("--llamaft")
    ho.add_argument("--layouts", nargs="+", default=["1x2", "2x1", "2x2"])
    ho.add_argument("--strategies", nargs="+", default=["hybrid_shard", "full_shard"])
    ho.add_argument("--preset", default="tiny")
    ho.add_argument("--seq", type=int, default=64)
    ho.add_argument("--global-batch", type=int, default=8)
    ho.add_argument("--micro-batch", type=int, default=1)
    ho.add_argument("--steps", type=int, default=3)
    co = sub.add_parser("collect")
    co.add_argument("dir")
    a = p.parse_args()
    if a.cmd == "local":
        run_local(a)
    elif a.cmd == "hosts":
        run_hosts(a)
    else:
        collect(a.dir)


if __name__ == "__main__":
    main()
