#!/usr/bin/env python3
"""output.tracker end to end: `llamaft train` under mpirun -np 2 with the
follower (scripts/llamaft_track.py), read back with each client's own reader.

--case roundtrip (needs the venv of scripts/setup_tracker_env.sh; exits 77
without it):
  For MLflow (a sqlite store) and W&B (offline), a run is trained in two jobs:
  job 1 stops at step 3 (train.exit_after_steps, checkpoints at 2 and 3), the
  step-3 checkpoint is deleted so that job 2 resumes from step 2 and writes
  step 3 into metrics.jsonl a second time, as a requeued job does after a
  preemption between checkpoints. Then:
  - MLflow: MlflowClient finds one run, FINISHED; every numeric field of every
    training line (loss, lr, grad_norm, ...) and of every validation line has
    one value per step, equal to metrics.jsonl exactly; config.cfg is the
    params, run_info.json the tags; the model folder is an artifact.
  - W&B: two offline-run folders with one run id; `wandb leet inspect --json`
    (wandb's own reader of the .wandb transaction log) gives history rows that
    together hold each step exactly once, equal to metrics.jsonl exactly; the
    config record holds config.cfg and run_info; job 1 ended preempting, job 2
    logged the model artifact.
  - `llamaft track RUN_DIR --tracker mlflow` replays a run trained without a
    tracker; a second replay adds nothing.
--case missing-client (any python3): a client that cannot be imported, a
  client that fails, a tracker.python that does not exist and a follower that
  hangs each give one warning, and training exits 0 in normal time with a
  complete metrics.jsonl.

Usage: check_tracker.py --case CASE --llamaft BIN --workdir DIR [--tracker-python PY]
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
ok_all = True


def check(ok, what):
    global ok_all
    ok_all &= bool(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    return ok


class Runs:
    def __init__(self, a):
        self.a, self.w = a, a.workdir
        shutil.rmtree(self.w, ignore_errors=True)
        os.makedirs(self.w)
        subprocess.run([a.llamaft, "init", "--preset", "tiny", "--output", f"{self.w}/base"], check=True,
                       capture_output=True)
        with open(f"{self.w}/data.jsonl", "w") as f:
            for i in range(16):
                f.write(json.dumps({"input_ids": [(i * 17 + t) % 900 + 3 for t in range(20)]}) + "\n")

    def train(self, out, *extra, env=None, steps=6):
        cmd = [*launcher.mpirun("2", []), self.a.llamaft, "train", "--model.path", f"{self.w}/base",
               "--data.path", f"{self.w}/data.jsonl", "--data.val_path", f"{self.w}/data.jsonl",
               "--data.seq_len", "32", "--train.global_batch_size", "4", "--train.steps", str(steps),
               "--train.eval_every", "3", "--output.dir", out, "--output.progress", "false", *extra]
        t0 = time.time()
        r = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=300)
        r.wall_s = time.time() - t0
        if r.returncode != 0:
            print(r.stderr[-3000:])
        return r


def metrics_by_step(run_dir):
    """The lines a tracker must hold: the first line of each (kind, step); a resumed job's re-written steps
    are skipped."""
    train, val = {}, {}
    for line in open(f"{run_dir}/metrics.jsonl"):
        m = json.loads(line)
        if "loss" in m:
            train.setdefault(m["step"], m)
        elif "val_loss" in m:
            val.setdefault(m["step"], m)
    return train, val


def numeric(m):
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in m.items()
            if k != "step" and isinstance(v, (int, float)) and v is not None}


def two_jobs(runs, out, tracker_args):
    """Job 1 to step 3, drop its last checkpoint, job 2 from step 2 to the end."""
    r1 = runs.train(out, "--checkpoint.every_steps", "2", "--train.exit_after_steps", "3", *tracker_args)
    shutil.rmtree(f"{out}/checkpoints/step_000003")
    os.remove(f"{out}/checkpoints/latest")
    r2 = runs.train(out, "--checkpoint.every_steps", "2", "--tracker.log_artifact", "true", *tracker_args)
    steps = [json.loads(line)["step"] for line in open(f"{out}/metrics.jsonl") if '"loss"' in line]
    check(r1.returncode == 0 and r2.returncode == 0 and "resumed from" in r2.stderr and steps.count(3) == 2,
          f"two jobs, the second resumed from step 2 and re-wrote step 3 (train steps in metrics.jsonl: {steps})")
    check("warning" not in r1.stderr + r2.stderr, "no tracker warning")
    return r1, r2


def mlflow_case(runs, py):
    out = f"{runs.w}/mlflow_run"
    uri = f"sqlite:///{runs.w}/mlflow.db"
    two_jobs(runs, out, ["--output.tracker", "mlflow", "--tracker.uri", uri, "--tracker.python", py,
                         "--tracker.project", "roundtrip"])
    from mlflow.tracking import MlflowClient
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("roundtrip")
    found = c.search_runs([exp.experiment_id]) if exp else []
    if not check(len(found) == 1, f"MLflow holds one run for the two jobs ({len(found)})"):
        return
    run = found[0]
    states = glob.glob(f"{out}/tracker/mlflow*.json")
    state = json.load(open(states[0]))
    check(len(states) == 1 and run.info.run_id == state["run_id"] and run.info.status == "FINISHED",
          f"it is the run of {[os.path.basename(p) for p in states]}, {run.info.status}")
    train, val = metrics_by_step(out)
    bad, n = [], 0
    for lines in (train, val):
        keys = set().union(*(numeric(m) for m in lines.values()))
        for key in keys:
            hist = c.get_metric_history(run.info.run_id, key)
            got = [(h.step, h.value) for h in hist]
            want = [(s, float(numeric(m)[key])) for s, m in sorted(lines.items()) if key in numeric(m)]
            n += len(want)
            if sorted(got) != want:
                bad.append((key, got[:3], want[:3]))
    check(not bad and {"loss", "lr", "grad_norm", "val_loss"} <= set(run.data.metrics),
          f"every step of every metric ({n} values: loss, lr, grad_norm, tokens_per_s, ..., val_loss) once, "
          f"equal to metrics.jsonl exactly {bad[:2]}")
    params, tags = run.data.params, run.data.tags
    check(params.get("train.steps") == "6" and params.get("fsdp.strategy") == "full_shard"
          and params.get("data.seq_len") == "32" and "init.preset" not in params,
          "config.cfg is the run's params (training sections only)")
    check(tags.get("llamaft.world_size") == "2" and tags.get("llamaft.git_revision")
          and tags.get("llamaft.config_changed.train.exit_after_steps") == "0",
          "run_info.json is tags; job 2's changed train.exit_after_steps is a tag")
    arts = [a.path for a in c.list_artifacts(run.info.run_id, "model")]
    check("model/model.safetensors" in arts, f"the model folder is an artifact ({arts})")

    # The same run copied into another store (a server, later) is a new run there, with every step.
    uri3 = f"sqlite:///{runs.w}/copy.db"
    r = subprocess.run([runs.a.llamaft, "track", out, "--uri", uri3, "--python", py], capture_output=True, text=True,
                       env=ENV)
    c3 = MlflowClient(tracking_uri=uri3)
    found = c3.search_runs([c3.get_experiment_by_name("roundtrip").experiment_id]) if r.returncode == 0 else []
    hist = sorted((h.step, h.value) for h in c3.get_metric_history(found[0].info.run_id, "grad_norm")) if found else []
    check(len(found) == 1 and hist == [(s, m["grad_norm"]) for s, m in sorted(train.items())],
          f"`llamaft track RUN_DIR --uri OTHER` copies the followed run into another store ({len(hist)} steps)"
          + ("" if r.returncode == 0 else r.stderr[-500:]))

    # Replay: a run trained without a tracker, logged after the fact, twice.
    plain = f"{runs.w}/plain_run"
    r = runs.train(plain, steps=4)
    uri2 = f"sqlite:///{runs.w}/replay.db"
    cmd = [runs.a.llamaft, "track", plain, "--tracker", "mlflow", "--uri", uri2, "--python", py]
    r1 = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    r2 = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    c2 = MlflowClient(tracking_uri=uri2)
    found = c2.search_runs([c2.get_experiment_by_name("llamaft").experiment_id])
    hist = [(h.step, h.value) for h in c2.get_metric_history(found[0].info.run_id, "loss")] if found else []
    train, _ = metrics_by_step(plain)
    check(r.returncode == 0 and r1.returncode == 0 and r2.returncode == 0 and len(found) == 1
          and sorted(hist) == [(s, m["loss"]) for s, m in sorted(train.items())] and found[0].info.status == "FINISHED"
          and "logged 0 new steps" in r2.stdout,
          f"`llamaft track` replays a run trained without a tracker; a second replay adds nothing ({len(hist)} steps)")


def wandb_case(runs, py):
    out = f"{runs.w}/wandb_run"
    two_jobs(runs, out, ["--output.tracker", "wandb", "--tracker.python", py, "--tracker.project", "roundtrip"])
    dirs = sorted(glob.glob(f"{out}/wandb/offline-run-*"))
    state = json.load(open(f"{out}/tracker/wandb.json"))
    check(len(dirs) == 2 and all(d.endswith("-" + state["run_id"]) for d in dirs),
          f"two offline-run folders, one run id {state['run_id']} ({[os.path.basename(d) for d in dirs]})")
    wandb_cli = os.path.join(os.path.dirname(py), "wandb")
    sessions = []
    for d in dirs:
        r = subprocess.run([wandb_cli, "leet", "inspect", "--json", d], capture_output=True, text=True, timeout=120)
        sessions.append([json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")])
    if not check(len(sessions) == 2 and all(sessions), "wandb leet inspect reads both .wandb transaction logs"):
        return
    rows = [rec["history"]["item"] for s in sessions for rec in s if rec["type"] == "history"]
    got_steps = [row["_step"] for row in rows]
    train, val = metrics_by_step(out)
    check(got_steps == sorted(train), f"the history rows of the two jobs hold each step once ({got_steps})")
    bad, n = [], 0
    by_step = {row["_step"]: row for row in rows}
    for lines in (train, val):
        for s, m in lines.items():
            for k, v in numeric(m).items():
                n += 1
                if by_step.get(s, {}).get(k) != v:
                    bad.append((s, k, by_step.get(s, {}).get(k), v))
    check(not bad, f"every value ({n}: loss, lr, grad_norm, ..., val_loss) equals metrics.jsonl exactly {bad[:3]}")
    cfg = {}
    for s in sessions:
        for rec in s:
            if rec["type"] in ("run", "config"):
                cfg.update((rec.get("run", rec).get("config") or {}).get("update", {}))
    check(cfg.get("train.steps") == 6 and cfg.get("fsdp.strategy") == "full_shard"
          and cfg.get("run_info", {}).get("world_size") == 2,
          "the config record holds config.cfg (typed) and run_info.json")
    types = [{rec["type"] for rec in s} for s in sessions]
    run_recs = [rec["run"] for s in sessions for rec in s if rec["type"] == "run"]
    check(all(r.get("run_id") == state["run_id"] and r.get("resume") for r in run_recs),
          "both jobs open the same run id with resume")
    check("preempting" in types[0] and "preempting" not in types[1] and "artifact" in types[1],
          f"job 1 ended preempting; job 2 finished and logged the model artifact ({sorted(types[1])})")


def missing_client_case(runs):
    shim = f"{runs.w}/shims"
    for name, body in {
        "missing/wandb/__init__.py": "raise ImportError('simulated: wandb is not installed')\n",
        "failing/mlflow/__init__.py": "",
        "failing/mlflow/entities/__init__.py": "Metric = Param = RunTag = object\n",
        "failing/mlflow/tracking/__init__.py":
            "class MlflowClient:\n    def __init__(self, **kw):\n"
            "        raise RuntimeError('simulated: the tracking server is down')\n",
        "hanging/wandb/__init__.py": "import time\nclass Settings:\n    def __init__(self, **kw): pass\n"
                                     "def init(**kw):\n    time.sleep(15)\n    raise RuntimeError('gave up')\n",
    }.items():
        os.makedirs(os.path.dirname(f"{shim}/{name}"), exist_ok=True)
        open(f"{shim}/{name}", "w").write(body)
    base = runs.train(f"{runs.w}/no_tracker")
    check(base.returncode == 0, f"training without a tracker takes {base.wall_s:.1f} s")
    py = sys.executable
    cases = [
        ("a client that cannot be imported", "missing", ["--output.tracker", "wandb"], "setup_tracker_env.sh"),
        ("a client that fails", "failing", ["--output.tracker", "mlflow"], "simulated: the tracking server is down"),
        ("a tracker.python that does not exist", "missing",
         ["--output.tracker", "wandb", "--tracker.python", f"{runs.w}/no/such/python"], "cannot start"),
        ("a follower that hangs in init", "hanging", ["--output.tracker", "wandb", "--tracker.finish_timeout_s", "1"],
         "still logging"),
    ]
    for i, (what, shim_dir, args, needle) in enumerate(cases):
        out = f"{runs.w}/case{i}"
        env = dict(ENV, PYTHONPATH=f"{shim}/{shim_dir}")
        if "--tracker.python" not in args:
            args = args + ["--tracker.python", py]
        r = runs.train(out, *args, env=env)
        warnings = [line for line in r.stderr.splitlines() if "tracker:" in line]
        train, _ = metrics_by_step(out)
        check(r.returncode == 0 and len(warnings) == 1 and needle in warnings[0] and sorted(train) == list(range(1, 7))
              and r.wall_s < base.wall_s + 10,
              f"{what}: exit {r.returncode} in {r.wall_s:.1f} s, all 6 steps in metrics.jsonl, one warning: "
              f"{warnings[0] if warnings else warnings}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case", choices=["roundtrip", "missing-client"], required=True)
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--tracker-python", default="")
    a = p.parse_args()
    if a.case == "roundtrip":
        py = a.tracker_python
        probe = subprocess.run([py, "-c", "import wandb, mlflow, sqlalchemy"], capture_output=True) if os.access(
            py, os.X_OK) else None
        if probe is None or probe.returncode != 0:
            print(f"SKIP: {py} lacks wandb/mlflow; run scripts/setup_tracker_env.sh")
            return 77
        venv = os.path.abspath(os.path.join(os.path.dirname(py), ".."))
        if os.path.abspath(sys.prefix) != venv:  # read back with the clients' own readers
            os.execv(py, [py] + sys.argv)
    runs = Runs(a)
    if a.case == "roundtrip":
        mlflow_case(runs, a.tracker_python)
        wandb_case(runs, a.tracker_python)
    else:
        missing_client_case(runs)
    print(f"tracker {a.case}:", "PASSED" if ok_all else "FAILED")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
