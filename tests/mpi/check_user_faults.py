#!/usr/bin/env python3
"""What users get wrong with output folders, resumes and signals (issue 30
items 3, 4, 5, 9, 12 and the unusable checkpoint.dir of 13), each asserted on
the exit code, the message, and what is left on disk:

- a second job on an output.dir in use is refused at start-up naming the
  owner (host, pid), and the first job's in-flight save and checkpoints
  survive; a stale lock file from a finished job is taken over;
- an unusable checkpoint.dir (a file, or read-only) fails at start-up;
- resuming with other LoRA targets, alpha, rslora or r is refused naming the
  old and new values, and the checkpoint is left byte-identical;
  checkpoint.allow_lora_change accepts narrowed targets with a notice; a
  changed lora.dropout resumes;
- re-saving an existing step never loses it: a failed rename or a SIGKILL in
  the middle of the commit leaves the step usable (h5py reads it, and the
  next run resumes from it);
- SIGINT checkpoints and exits 130 with one line, a second SIGINT exits 130
  at once; SIGTERM checkpoints and exits 85; both write the code to
  LLAMAFT_EXIT_STATUS_FILE for the job scripts (mpirun exits 1 when it was
  itself sent SIGTERM or SIGINT, whatever the ranks did);
- data.seq_len defaults to the prepared folder's, and another value is
  refused.

Usage: check_user_faults.py --llamaft BIN --workdir DIR
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def run(cmd, env=None, timeout=240):
    r = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def tree_digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            if f == ".llamaft.lock":  # the owner file: rewritten by every job that takes the folder
                continue
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, folder).encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()


def h5_step(path):
    """The step h5py reads from a checkpoint's state.h5 (independent of llamaft)."""
    try:
        import h5py
    except ImportError:
        return None
    with h5py.File(os.path.join(path, "state.h5"), "r") as f:
        return int(f["state"].attrs["step"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    L = a.llamaft
    model = os.path.join(a.workdir, "base")
    subprocess.run([L, "init", "--preset", "tiny", "--output", model], check=True, capture_output=True)
    data = os.path.join(a.workdir, "data.jsonl")
    with open(data, "w") as f:
        for i in range(16):
            f.write(json.dumps({"input_ids": [(i * 7 + t) % 500 + 3 for t in range(12)]}) + "\n")
    cfg = os.path.join(a.workdir, "train.cfg")
    with open(cfg, "w") as f:
        f.write(f"[model]\npath = {model}\n[data]\npath = {data}\nseq_len = 16\n"
                f"[train]\nglobal_batch_size = 4\nsteps = 2\n[output]\nprogress = false\n")

    def train(out, extra, np_=1, env=None):
        return run(launcher.mpirun(np_, [L, "train", "--config", cfg,
                    "--output.dir", out] + extra), env=env)

    def start(out, extra, env=None):
        """A job launched directly (one rank, no mpirun), so signals reach it as sent."""
        return subprocess.Popen([L, "train", "--config", cfg, "--output.dir", out] + extra, env=env or ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_for_steps(out, n, proc, limit=60):
        path = os.path.join(out, "metrics.jsonl")
        t = time.time()
        while time.time() - t < limit and proc.poll() is None:
            if os.path.exists(path) and sum(1 for line in open(path) if '"loss"' in line) >= n:
                return True
            time.sleep(0.05)
        return False

    # ---- item 3: one job per output.dir
    out = os.path.join(a.workdir, "locked")
    first = start(out, ["--train.steps", "100000", "--checkpoint.every_steps", "5"])
    started = wait_for_steps(out, 12, first)
    check(started, "the first job is training")
    code, text = train(out, ["--train.steps", "4"], np_=2)
    host = socket.gethostname()
    check(code == 2 and "in use by another llamaft job" in text and f"pid {first.pid}" in text and host in text,
          f"a second job on the same output.dir is refused naming the owner's host and pid: exit {code} "
          f"{text.strip().splitlines()[-1][:300] if text.strip() else ''}")
    check(text.count("in use by another llamaft job") == 1, "the refusal is printed once across 2 ranks")
    second = start(os.path.join(a.workdir, "other_out"), ["--train.steps", "4", "--checkpoint.dir",
                                                            os.path.join(out, "checkpoints")])
    code2 = second.wait(60)
    check(code2 == 2 and "checkpoint.dir" in second.stdout.read(),
          f"a job whose checkpoint.dir is another job's is refused: exit {code2}")
    first.send_signal(signal.SIGUSR1)
    code = first.wait(60)
    log = first.stdout.read()
    check(code == 85 and "checkpointed at step" in log, f"the first job ends normally on SIGUSR1: exit {code}")
    latest = open(os.path.join(out, "checkpoints", "latest")).read().strip()
    step = h5_step(os.path.join(out, "checkpoints", latest))
    check(step is None or step >= 12, f"its checkpoint {latest} is intact (h5py reads step {step})")
    check(not any(".tmp." in n for n in os.listdir(os.path.join(out, "checkpoints"))), "no in-flight save was removed")
    check(os.path.exists(os.path.join(out, ".llamaft.lock")), "the lock file stays after the job (information only)")
    code, text = train(out, ["--train.steps", str(step + 1 if step else 14)])
    check(code == 0 and "resumed from" in text, f"a later job takes over the stale lock and resumes: exit {code}")

    # ---- item 13: an unusable checkpoint.dir is found at start-up
    afile = os.path.join(a.workdir, "a_file")
    open(afile, "w").write("x")
    code, text = train(os.path.join(a.workdir, "o1"), ["--checkpoint.dir", afile])
    check(code == 2 and "checkpoint.dir" in text and "not a folder" in text and '"loss"' not in text,
          f"checkpoint.dir that is a file: exit {code} before any step")
    ro = os.path.join(a.workdir, "ro_mount")
    os.makedirs(ro)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], capture_output=True).returncode == 0:
        try:
            code, text = train(os.path.join(a.workdir, "o2"), ["--checkpoint.dir", ro])
            check(code == 2 and "not writable" in text, f"read-only checkpoint.dir: exit {code} at start-up")
        finally:
            subprocess.run(["umount", "-l", ro])
    else:
        print("skip read-only checkpoint.dir (cannot mount here)")

    # ---- item 4: resume compares what changes LoRA's math
    lo = os.path.join(a.workdir, "lora")
    lora = ["--finetune.method", "lora", "--lora.r", "4", "--train.steps", "3"]
    code, text = train(lo, lora + ["--train.exit_after_steps", "1"])
    check(code == 0, f"LoRA run to step 1: exit {code}")
    ckdir = os.path.join(lo, "checkpoints")
    before = tree_digest(ckdir)
    for extra, key, old, new in [
            (["--lora.targets", "q_proj,v_proj"], "lora.targets", "q_proj,k_proj,v_proj,o_proj", "q_proj,v_proj"),
            (["--lora.alpha", "32"], "lora.alpha", "16", "32"),
            (["--lora.rslora", "true"], "lora.rslora", "false", "true"),
            (["--quant.base", "bf16"], "quant.base", "none", "bf16"),
            (None, "lora.r", "4", "8")]:
        args = lora + extra if extra else ["--finetune.method", "lora", "--lora.r", "8", "--train.steps", "3"]
        code, text = train(lo, args)
        check(code == 2 and key in text and old in text and new in text,
              f"resume with {key} {old} -> {new} refused naming both: exit {code}")
    check(tree_digest(ckdir) == before, "the refused resumes left the checkpoints byte-identical")
    code, text = train(lo, lora + ["--lora.dropout", "0.1", "--train.exit_after_steps", "2"])
    check(code == 0 and "resumed from" in text, f"a changed lora.dropout resumes: exit {code}")
    code, text = train(lo, lora + ["--lora.targets", "q_proj,v_proj", "--checkpoint.allow_lora_change", "true"])
    check(code == 0 and "allow_lora_change = true" in text and "resumed from" in text,
          f"narrowed targets with checkpoint.allow_lora_change resume with a notice: exit {code}")

    # ---- item 5: re-saving a step that exists never loses it
    fin = os.path.join(a.workdir, "finished")
    code, _ = train(fin, [])
    check(code == 0, f"a finished job: exit {code}")
    step2 = os.path.join(fin, "checkpoints", "step_000002")
    env = dict(ENV, LLAMAFT_FAULTS="commit_rename_fail=2")
    code, text = train(fin, [], env=env)
    check(code == 4, f"its re-run with the commit's rename failing: exit {code}")
    check(os.path.exists(os.path.join(step2, "manifest.json")) and h5_step(step2) in (None, 2),
          "step_000002 is still committed and readable after the failed rename")
    check(open(os.path.join(fin, "checkpoints", "latest")).read().strip() == "step_000002", "latest still names it")
    env = dict(ENV, LLAMAFT_FAULTS="kill_in_commit=2")
    job = start(fin, [], env=env)
    code = job.wait(120)
    left = sorted(os.listdir(os.path.join(fin, "checkpoints")))
    check(code == -signal.SIGKILL and any(".replaced." in n for n in left),
          f"a SIGKILL after the earlier copy was moved aside: exit {code}, folders {left}")
    code, text = train(fin, ["--train.steps", "3"])
    check(code == 0 and "restoring" in text and "resumed from" in text and "at step 2" in text,
          f"the next run restores step 2 and resumes from it: exit {code}")

    # ---- item 9: SIGINT and SIGTERM
    status = os.path.join(a.workdir, "exit_status")
    senv = dict(ENV, LLAMAFT_EXIT_STATUS_FILE=status)
    for sig, want in [(signal.SIGINT, 130), (signal.SIGTERM, 85)]:
        o = os.path.join(a.workdir, f"sig{int(sig)}")
        job = start(o, ["--train.steps", "100000"], env=senv)
        wait_for_steps(o, 3, job)
        job.send_signal(sig)
        code = job.wait(60)
        log = job.stdout.read()
        lines = [x for x in log.splitlines() if "checkpointed at step" in x]
        check(code == want and len(lines) == 1, f"{sig.name}: checkpointed and exit {want} with one line "
              f"(got exit {code}, {len(lines)} lines)")
        check(os.path.exists(status) and open(status).read().strip() == str(want),
              f"{sig.name}: LLAMAFT_EXIT_STATUS_FILE says {want}")
        check(os.path.exists(os.path.join(o, "checkpoints", "latest")), f"{sig.name}: a checkpoint is committed")
    o = os.path.join(a.workdir, "sigint2")
    job = start(o, ["--train.steps", "100000"], env=dict(senv, LLAMAFT_FAULTS="save_piece_delay_ms=3000"))
    wait_for_steps(o, 3, job)
    job.send_signal(signal.SIGINT)
    time.sleep(1.0)
    job.send_signal(signal.SIGINT)
    code = job.wait(60)
    check(code == 130 and "interrupted again" in job.stdout.read(), f"a second SIGINT exits 130 at once: exit {code}")

    # ---- item 12: data.seq_len from the prepared folder
    prep = os.path.join(a.workdir, "prepared")
    code, text = run([L, "prepare", "--format", "tokens", "--input", data, "--output", prep, "--seq-len", "12"])
    check(code == 0, f"prepare --seq-len 12: exit {code} {text[-200:]}")
    pcfg = os.path.join(a.workdir, "prep.cfg")
    with open(pcfg, "w") as f:
        f.write(f"[model]\npath = {model}\n[data]\npath = {prep}\n"
                f"[train]\nglobal_batch_size = 4\nsteps = 1\n[output]\nprogress = false\n")
    code, text = run([L, "train", "--config", pcfg, "--output.dir", os.path.join(a.workdir, "p1")])
    check(code == 0 and "truncated" not in text, f"train on a prepared folder takes its seq_len: exit {code}")
    code, text = run([L, "train", "--config", pcfg, "--output.dir", os.path.join(a.workdir, "p2"),
                      "--data.seq_len", "8"])
    check(code == 2 and "prepared with --seq-len 12" in text, f"data.seq_len = 8 on a 12-token folder refused: exit {code}")
    code, text = run([L, "eval", "--model", model, "--data", prep])
    check(code == 0 and "truncated" not in text, f"eval on the prepared folder takes its seq_len: exit {code}")

    print("user faults:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)}): " + "; ".join(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
