#!/usr/bin/env python3
"""Log a llamaft run folder to Weights & Biases or MLflow.

llamaft stays a native binary: with output.tracker = wandb|mlflow, rank 0 of
`llamaft train` starts this script as a follower that tails
output.dir/metrics.jsonl and logs, with the official client,
  - every step's metrics and the validation lines (the names of metrics.jsonl),
    and the greedy samples (W&B history text, MLflow text artifacts);
  - config.cfg (the effective config) as the run's config / params;
  - run_info.json as tags and metadata (git revision, world size, hosts, Slurm
    job, restarts);
  - at the end, with tracker.log_artifact, the adapter or model folder.

One tracker run per run folder: its id lives in output.dir/tracker/<tracker>.json
with the last step logged of each kind of line, so a requeued job (which appends
to metrics.jsonl, re-writing the steps after its checkpoint) continues the same
run and no step is logged twice. `replay` logs whatever is not logged yet, which
is how a run trained with output.tracker = none, or one whose follower was cut
off, reaches a tracker after the fact (`llamaft track RUN_DIR` runs it).

Failure is never fatal for training: a missing or failing client is one warning
(on --warn-fd, else stderr) and exit code 3.

Usage:
  llamaft_track.py follow RUN_DIR --parent-pid PID [--warn-fd FD] [--set KEY=VALUE ...]
  llamaft_track.py replay RUN_DIR [--set KEY=VALUE ...]
KEYs are llamaft config keys (output.tracker, tracker.mode, tracker.uri, ...);
they win over RUN_DIR/config.cfg.
"""
import argparse
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import signal
import sys
import threading
import time

EXIT_CLIENT = 3  # the one warning was given; llamaft train says nothing more
DEFAULTS = {
    "output.tracker": "none", "tracker.project": "llamaft", "tracker.run_name": "", "tracker.entity": "",
    "tracker.mode": "offline", "tracker.uri": "", "tracker.log_artifact": "false",
}
# Sections of config.cfg that describe a training run (not those of the other commands).
RUN_SECTIONS = ("model", "data", "train", "finetune", "quant", "lora", "fsdp", "output", "checkpoint", "runtime",
                "tracker")
INSTALL_HINT = ("install it with scripts/setup_tracker_env.sh and set tracker.python = .venv-tracker/bin/python "
                "(or `pip install {pkg}` for tracker.python)")


class ClientError(Exception):
    """The tracking client is missing or failed: warn once, exit 3."""


# ---- the run folder ---------------------------------------------------------------------

def read_config(path):
    """config.cfg as written by llamaft (INI, values annotated '# source') -> {"section.key": "value"}."""
    out, section = {}, ""
    if not os.path.exists(path):
        return out
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        for marker in (" #", "\t#"):
            if marker in line:
                line = line[:line.index(marker)].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif "=" in line:
            k, v = line.split("=", 1)
            out[f"{section}.{k.strip()}"] = v.strip()
    return out


def typed(value):
    if value in ("true", "false"):
        return value == "true"
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def classify(rec):
    """(kind, order key) of a metrics.jsonl line, or None for lines we do not log."""
    step = rec.get("step")
    if not isinstance(step, int):
        return None
    if "loss" in rec:
        return "train", [step]
    if "val_loss" in rec:
        return "val", [step]
    if "task" in rec:  # train.eval_task's scores (task_acc, task_acc_norm, ...)
        return "task", [step]
    if "sample" in rec:
        return "sample", [step, int(rec["sample"])]
    return None


def numbers(rec):
    """The numeric fields of a line (bools as 0/1); strings and non-finite values are left out."""
    out = {}
    for k, v in rec.items():
        if k == "step" or isinstance(v, str) or v is None:
            continue
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = v
    return out


class Tail:
    """Complete lines appended to a file since the last call (a partial last line waits)."""

    def __init__(self, path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a torn line from a killed job
        return out


class State:
    """output.dir/tracker/<tracker>.json: the run id and the last logged position of each kind of line."""

    def __init__(self, path):
        self.path = path
        self.data = {"uid": secrets.token_hex(4), "run_id": "", "last": {}, "artifact_logged": False, "sessions": 0}
        if os.path.exists(path):
            self.data.update(json.load(open(path)))

    def save(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def is_new(self, kind, key):
        return key > self.data["last"].get(kind, [0])

    def mark(self, kind, key):
        if key > self.data["last"].get(kind, [0]):
            self.data["last"][kind] = key


# ---- the two clients ----------------------------------------------------------------------

class WandbSink:
    name = "wandb"

    def __init__(self, run_dir, settings, state, run_cfg, run_info):
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
        except Exception as e:  # noqa: BLE001
            raise ClientError(f"the wandb client cannot be imported ({type(e).__name__}: {e}); "
                              + INSTALL_HINT.format(pkg="wandb")) from e
        self.wandb = wandb
        mode = settings["tracker.mode"]
        if not state.data["run_id"]:
            state.data["run_id"] = state.data["uid"]  # W&B takes our id: stable before init can fail
            state.save()
        try:
            self.run = wandb.init(
                project=settings["tracker.project"], entity=settings["tracker.entity"] or None,
                name=settings["tracker.run_name"] or os.path.basename(os.path.abspath(run_dir)),
                id=state.data["run_id"], resume="allow", mode=mode, dir=run_dir,
                config={k: typed(v) for k, v in run_cfg.items()}, settings=wandb.Settings(console="off"))
            self.run.config.update({"run_info": run_info}, allow_val_change=True)
            tags = [f"{k}:{run_info[k]}" for k in ("method", "strategy", "backend") if k in run_info]
            if "world_size" in run_info:
                tags.append(f"np:{run_info['world_size']}")
            self.run.tags = tuple(tags)
        except Exception as e:  # noqa: BLE001
            hint = ("offline mode needs no network" if mode == "offline" else
                    "online mode needs the network and WANDB_API_KEY on this node; use tracker.mode = offline and "
                    "`wandb sync` from a login node")
            raise ClientError(f"wandb.init failed ({type(e).__name__}: {e}); {hint}") from e

    def log_steps(self, steps):
        for step, metrics, texts in steps:
            data = dict(metrics)
            data.update(texts)
            self.run.log(data, step=step)

    def log_artifact(self, path, kind):
        art = self.wandb.Artifact(re.sub(r"[^A-Za-z0-9._-]", "-", f"{self.run.name}-{kind}"), type="model")
        art.add_dir(path)
        self.run.log_artifact(art)

    def close(self, final):
        if not final:
            self.run.mark_preempting()  # shown as preempted, and resumable
        self.run.finish()

    def where(self):
        if self.run.settings.mode == "offline":
            return f"offline run {self.run.id} in {self.run.dir.rsplit('/files', 1)[0]} (`wandb sync` it)"
        return f"run {self.run.url}"


class MlflowSink:
    name = "mlflow"

    def __init__(self, run_dir, settings, state, run_cfg, run_info):
        uri = settings["tracker.uri"]
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
        try:
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient
        except Exception as e:  # noqa: BLE001
            raise ClientError(f"the mlflow client cannot be imported ({type(e).__name__}: {e}); "
                              + INSTALL_HINT.format(pkg="mlflow-skinny sqlalchemy alembic")) from e
        self.Metric, self.Param, self.RunTag = Metric, Param, RunTag
        self.uri = uri
        try:
            self.client = c = MlflowClient(tracking_uri=uri)
            exp = c.get_experiment_by_name(settings["tracker.project"])
            if exp is None:
                where = None
                if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
                    where = "file:" + os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "mlartifacts")
                exp_id = c.create_experiment(settings["tracker.project"], artifact_location=where)
            else:
                exp_id = exp.experiment_id
            run_id = state.data["run_id"]
            if not run_id:  # created by a session that died before saving the id?
                found = c.search_runs([exp_id], f"tags.`llamaft.uid` = '{state.data['uid']}'", max_results=1)
                run_id = found[0].info.run_id if found else ""
            if run_id:
                c.update_run(run_id, status="RUNNING")
                have = c.get_run(run_id).data.params
            else:
                name = settings["tracker.run_name"] or os.path.basename(os.path.abspath(run_dir))
                run_id = c.create_run(exp_id, run_name=name, tags={"llamaft.uid": state.data["uid"]}).info.run_id
                have = {}
            state.data["run_id"] = run_id
            state.save()
            self.run_id = run_id
            # Params are immutable in MLflow: a resumed job with a changed key keeps the first value and
            # says so in a tag.
            params = [Param(k, v[:6000]) for k, v in run_cfg.items() if k not in have]
            tags = [RunTag(f"llamaft.config_changed.{k}", v[:5000]) for k, v in run_cfg.items()
                    if k in have and have[k] != v[:6000]]
            for k, v in run_info.items():
                if isinstance(v, list):
                    v = ",".join(map(str, v))
                elif isinstance(v, dict):
                    v = json.dumps(v)
                tags.append(RunTag(f"llamaft.{k}", str(v)[:5000]))
            for i in range(0, max(len(params), len(tags)), 100):
                c.log_batch(run_id, params=params[i:i + 100], tags=tags[i:i + 100])
            for f in ("config.cfg", "run_info.json"):
                if os.path.exists(os.path.join(run_dir, f)):
                    c.log_artifact(run_id, os.path.join(run_dir, f))
        except Exception as e:  # noqa: BLE001
            raise ClientError(f"MLflow at {uri} failed ({type(e).__name__}: {e})") from e

    def log_steps(self, steps):
        # One log_batch (one store transaction) for up to 1000 values of any number of steps.
        now = int(time.time() * 1000)
        ms = [self.Metric(k, float(v), now, step) for step, metrics, _ in steps for k, v in metrics.items()]
        for i in range(0, len(ms), 1000):
            self.client.log_batch(self.run_id, metrics=ms[i:i + 1000])
        for step, _, texts in steps:
            for k, v in texts.items():
                self.client.log_text(self.run_id, v, f"samples/step_{step:06d}_{k.rsplit('/', 1)[-1]}.txt")

    def log_artifact(self, path, kind):
        self.client.log_artifacts(self.run_id, path, artifact_path=kind)

    def close(self, final):
        self.client.set_terminated(self.run_id, "FINISHED" if final else "KILLED")

    def where(self):
        return f"run {self.run_id} at {self.uri}"


# ---- following and replaying -----------------------------------------------------------------

class Follower:
    def __init__(self, run_dir, overrides, warn_fd=None):
        self.run_dir = run_dir
        self.settings = dict(DEFAULTS)
        cfg = read_config(os.path.join(run_dir, "config.cfg"))
        self.settings.update({k: v for k, v in cfg.items() if k in DEFAULTS})
        self.settings.update(overrides)
        # The run's config as text (MLflow params); W&B gets typed values.
        self.run_cfg = {k: v for k, v in cfg.items() if k.split(".", 1)[0] in RUN_SECTIONS}
        self.run_cfg.update(overrides)
        self.warn_stream = os.fdopen(warn_fd, "w", buffering=1) if warn_fd is not None else sys.stderr
        self.tracker = self.settings["output.tracker"]
        state_name = f"{self.tracker}.json"
        if self.tracker == "mlflow":
            # One state per MLflow store: replaying into another store (a server, later) is a new run there.
            default = "sqlite:///" + os.path.abspath(os.path.join(run_dir, "tracker", "mlflow.db"))
            uri = self.settings["tracker.uri"] or os.environ.get("MLFLOW_TRACKING_URI", "") or default
            self.settings["tracker.uri"] = uri
            if uri != default:
                state_name = f"mlflow-{hashlib.sha1(uri.encode()).hexdigest()[:8]}.json"
        self.state = State(os.path.join(run_dir, "tracker", state_name))
        self.sink = None

    def warn(self, msg):
        if self.warn_stream is sys.stderr:  # replay, in a terminal
            print(f"llamaft track: warning: {msg}", file=sys.stderr, flush=True)
            return
        print(f"llamaft track: warning: {msg}", flush=True)  # the follower's log
        try:
            print(f"llamaft train: tracker: warning: {msg}", file=self.warn_stream, flush=True)
        except OSError:
            pass

    def lock(self, wait):
        """One logger per run and tracker: a requeued job's follower waits for the previous job's follower
        (still draining after llamaft stopped waiting), a replay refuses to run beside a follower. Where the
        filesystem has no flock (some Lustre mounts), there is no lock."""
        os.makedirs(os.path.dirname(self.state.path), exist_ok=True)
        self.lock_file = open(self.state.path + ".lock", "a+")
        while True:
            try:
                fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait():
                    raise ClientError(f"another llamaft_track.py is logging {self.run_dir} to {self.tracker}; "
                                      "run this again when it has finished") from None
                time.sleep(0.5)
            except OSError:
                break
        self.state = State(self.state.path)  # as the previous holder left it

    def open(self):
        if self.tracker not in ("wandb", "mlflow"):
            raise ClientError(f"output.tracker is '{self.tracker}'; choose wandb or mlflow")
        info_path = os.path.join(self.run_dir, "run_info.json")
        run_info = json.load(open(info_path)) if os.path.exists(info_path) else {}
        sink = WandbSink if self.tracker == "wandb" else MlflowSink
        self.sink = sink(self.run_dir, self.settings, self.state, self.run_cfg, run_info)
        self.state.data["sessions"] += 1
        self.state.save()
        print(f"llamaft track: logging {self.run_dir} to {self.sink.where()}", flush=True)

    def log(self, records):
        """Logs the lines not logged before, one tracker step per training step."""
        steps = {}
        for rec in records:
            c = classify(rec)
            if c is None or not self.state.is_new(*c):
                continue
            kind, key = c
            metrics, texts, marks = steps.setdefault(key[0], ({}, {}, []))
            if kind == "sample":
                texts[f"samples/{key[1]}"] = (f"prompt {' '.join(map(str, rec.get('prompt_ids', [])))} -> "
                                              f"{' '.join(map(str, rec.get('sample_ids', [])))}")
            else:
                metrics.update(numbers(rec))
            marks.append(c)
        order = sorted(steps)
        for i in range(0, len(order), 200):  # the state is saved after each chunk: a failed replay resumes there
            chunk = order[i:i + 200]
            try:
                self.sink.log_steps([(step, steps[step][0], steps[step][1]) for step in chunk])
            except Exception as e:  # noqa: BLE001
                raise ClientError(f"logging steps {chunk[0]}-{chunk[-1]} failed ({type(e).__name__}: {e})") from e
            for step in chunk:
                for kind, key in steps[step][2]:
                    self.state.mark(kind, key)
            self.state.save()
        return len(steps)

    def close(self, final):
        """final: training completed (log the artifact if asked); else a stop that a resume continues."""
        if final and self.settings["tracker.log_artifact"] == "true" and not self.state.data["artifact_logged"]:
            for kind in ("adapter", "model"):
                path = os.path.join(self.run_dir, kind)
                if os.path.isdir(path):
                    try:
                        self.sink.log_artifact(path, kind)
                        self.state.data["artifact_logged"] = True
                        self.state.save()
                    except Exception as e:  # noqa: BLE001
                        self.warn(f"logging the {kind} folder as an artifact failed ({type(e).__name__}: {e})")
                    break
            else:
                self.warn("tracker.log_artifact: no adapter/ or model/ folder (output.export = false?)")
        try:
            self.sink.close(final)
        except Exception as e:  # noqa: BLE001
            raise ClientError(f"closing the run failed ({type(e).__name__}: {e})") from e
        print(f"llamaft track: {'finished' if final else 'stopped'}; {self.sink.where()}; "
              f"last steps {self.state.data['last']}", flush=True)


def follow(f, parent_pid, poll_s):
    try:
        os.nice(10)  # the ranks' cores come first: the client's start-up (imports, MLflow's schema) is seconds of CPU
    except OSError:
        pass
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def parent_gone():
        return os.getppid() != parent_pid

    def watchdog():
        # Once llamaft is gone, mpirun waits for every holder of the rank's stderr: hand back ours
        # (dup2 of /dev/null, so the fd number is never reused by another file meanwhile).
        while not parent_gone():
            time.sleep(0.2)
        if f.warn_stream is not sys.stderr:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, f.warn_stream.fileno())
            os.close(null)

    marker = os.path.join(f.run_dir, "tracker", "finish")
    threading.Thread(target=watchdog, daemon=True).start()
    f.lock(wait=lambda: not (stop.is_set() or parent_gone() or os.path.exists(marker)))
    f.open()
    tail = Tail(os.path.join(f.run_dir, "metrics.jsonl"))
    while True:
        how = open(marker).read().strip() if os.path.exists(marker) else None
        if how is None and (stop.is_set() or parent_gone()):
            how = "stop"
        f.log(tail.read())  # after reading the marker: every line written before it is in the file
        if how is not None:
            f.close(how == "final")
            return 0
        time.sleep(poll_s)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["follow", "replay"])
    p.add_argument("run_dir")
    p.add_argument("--parent-pid", type=int, default=0, help="follow: stop when this process is gone")
    p.add_argument("--warn-fd", type=int, default=None, help="follow: where warnings go (rank 0's stderr)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--poll-s", type=float, default=0.5)
    a = p.parse_args()
    for fd in range(4, 256):  # nothing of the MPI rank stays open here (posix_spawn may not close them)
        if fd != a.warn_fd:
            try:
                os.close(fd)
            except OSError:
                pass
    if a.warn_fd is not None:
        os.set_inheritable(a.warn_fd, False)  # not into wandb-core or other children
    overrides = dict(s.split("=", 1) for s in a.set)
    f = Follower(a.run_dir, overrides, a.warn_fd)
    try:
        if a.mode == "follow":
            return follow(f, a.parent_pid, a.poll_s)
        if not os.path.exists(os.path.join(a.run_dir, "metrics.jsonl")):
            raise ClientError(f"{a.run_dir}/metrics.jsonl does not exist: not a llamaft run folder")
        f.lock(wait=lambda: False)
        f.open()
        n = f.log(Tail(os.path.join(a.run_dir, "metrics.jsonl")).read())
        print(f"llamaft track: logged {n} new steps", flush=True)
        # summary.json is written when training completes; until then the run stays resumable.
        f.close(os.path.exists(os.path.join(a.run_dir, "summary.json")))
        return 0
    except Exception as e:  # noqa: BLE001  (a bug here must not cost more than a warning either)
        if not isinstance(e, ClientError):
            import traceback
            traceback.print_exc(file=sys.stdout)
            where = f"in {a.run_dir}/tracker/follower.log" if a.mode == "follow" else "above"
            e = f"internal error ({type(e).__name__}: {e}; traceback {where})"
        after = (f"replay it later with `llamaft track {a.run_dir}`" if a.mode == "follow" else
                 f"what was logged is recorded in {f.state.path}; running it again continues")
        f.warn(f"{e}; training goes on without {f.tracker}; {after}" if a.mode == "follow" else f"{e}; {after}")
        return EXIT_CLIENT


if __name__ == "__main__":
    sys.exit(main())
