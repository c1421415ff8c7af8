#!/usr/bin/env python3
"""Checkpoints under faults, and asynchronous saves, at np = 2 unless stated:
  1. asynchronous and synchronous periodic saves give bit-identical
     checkpoints and final weights, and every 1 MiB block's CRC-32C in
     /checksums/ equals python-crc32c's over h5py's bytes (blocks split
     between ranks are joined with crc32c_combine);
  2. a disk that is too full for the next (asynchronous) save, on a small
     tmpfs, at np = 1 and 2: exit 4 within seconds, "No space left on device"
     printed once by one rank, the previous checkpoint intact and resumable,
     no temporary folder left; with checkpoint.on_error = warn the run goes on
     to the end and exits 0;
  3. ENOSPC in the middle of a rank's write (fault save_enospc, as on a
     filesystem without fallocate), asynchronous and synchronous: the same;
  4. SIGUSR1 while an asynchronous save is in flight (each writer slowed by
     fault save_piece_delay_ms): the save in flight is awaited, the signal's
     step is saved, exit 85, and the resumed run ends bit-identical to an
     uninterrupted one;
  5. kill -9 of a random rank at a random moment during asynchronous saves,
     CKPT_KILL_TRIALS times (default 6; scripts/checkpoint_kill_stress.sh
     runs more): the checkpoint `latest` names always verifies (python-crc32c
     over every block) and the next run resumes from it.
Usage: check_checkpoint_faults.py --llamaft BIN --workdir DIR
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

try:
    import crc32c
except ImportError:  # scripts/install-deps.sh --tests installs python3-crc32c
    crc32c = None

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
LOCK_FILE = ".llamaft.lock"  # the job's lock on the folder (RunLock): information only
BLOCK = 1 << 20


def cmd(a, np_, out, extra):
    return launcher.mpirun(np_, [a.llamaft, "train", "--config", a.cfg,
            "--output.dir", out] + list(extra))


def run(a, np_, out, extra=(), env=None, timeout=300):
    t0 = time.time()
    r = subprocess.run(cmd(a, np_, out, extra), env=env or ENV, capture_output=True, text=True, timeout=timeout)
    r.seconds = time.time() - t0
    return r


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tree_sha(folder):
    return {n: sha(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if n != LOCK_FILE}


def verify_checksums(h5_path):
    """(blocks checked, first mismatch or None): every dataset's blocks against /checksums/."""
    blocks, bad = 0, None
    with h5py.File(h5_path, "r") as h:
        if int(h.attrs["format_version"]) != 2 or h.attrs["checksum"].decode() != "crc32c":
            return 0, "not a format-2 crc32c checkpoint"
        names = []
        h["model"].visit(lambda n: names.append("model/" + n))
        h["optim"].visit(lambda n: names.append("optim/" + n))
        for name in names:
            ds = h[name]
            if not isinstance(ds, h5py.Dataset):
                continue
            raw = np.ascontiguousarray(ds[()], dtype="<f4").tobytes()
            table = h["checksums/" + name][()]
            want = [crc32c.crc32c(raw[i:i + BLOCK]) for i in range(0, len(raw), BLOCK)]
            blocks += len(want)
            if list(map(int, table)) != want and bad is None:
                bad = name
    return blocks, bad


def datasets(h5_path):
    out = {}
    with h5py.File(h5_path, "r") as h:
        def visit(n, obj):
            if isinstance(obj, h5py.Dataset):
                out[n] = obj[()]
        h.visititems(visit)
    return out


T0 = time.time()


def section(title):
    print(f"-- {title} (at {time.time() - T0:.0f} s)", flush=True)


def one_message(text, needle):
    return sum(line.count(needle) for line in text.splitlines()) == 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--only-kill-trials", action="store_true", help="run section 5 alone (the stress script)")
    a = p.parse_args()
    if crc32c is None:
        print("skip: python3-crc32c is not installed (scripts/install-deps.sh --tests)")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "5", "--output", f"{w}/base"], check=True,
                   capture_output=True)
    rng = np.random.default_rng(1)
    with open(f"{w}/data.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"input_ids": rng.integers(3, 1024, size=int(rng.integers(8, 33))).tolist()}) + "\n")
    a.cfg = f"{w}/train.cfg"
    with open(a.cfg, "w") as f:
        f.write(f"[model]\npath = {w}/base\n[data]\npath = {w}/data.jsonl\nseq_len = 32\nshuffle = true\n"
                "[train]\nglobal_batch_size = 4\nsteps = 12\nlr = 2e-3\nwarmup_steps = 2\nlr_schedule = cosine\n"
                "max_grad_norm = 1.0\nweight_decay = 0.01\n[checkpoint]\nevery_steps = 3\n"
                "[output]\nprogress = false\n")

    if not a.only_kill_trials:
        # 1. async == sync, and the stored CRC-32Cs are python-crc32c's
        section("async and sync saves")
        ra = run(a, 2, f"{w}/async")
        rs = run(a, 2, f"{w}/sync", ["--checkpoint.async", "false"])
        check(ra.returncode == 0 and rs.returncode == 0 and "written in the background" in ra.stderr and
              "written in the background" not in rs.stderr, f"async and sync runs: exit {ra.returncode}, {rs.returncode}")
        same = True
        for step in ("step_000009", "step_000012"):
            da, ds = (datasets(f"{w}/{k}/checkpoints/{step}/state.h5") for k in ("async", "sync"))
            same &= da.keys() == ds.keys() and all(np.array_equal(da[k], ds[k]) for k in da)
        check(same, "checkpoint.async on and off: the step-9 and step-12 checkpoints hold the same bits in every dataset")
        check(tree_sha(f"{w}/async/model") == tree_sha(f"{w}/sync/model"),
              "checkpoint.async on and off: bit-identical exported models")
        blocks, bad = verify_checksums(f"{w}/async/checkpoints/step_000012/state.h5")
        check(bad is None and blocks > 0, f"np=2 async: {blocks} block CRC-32Cs equal python-crc32c's (mismatch: {bad})")
        r1 = run(a, 1, f"{w}/np1", ["--train.steps", "3"])
        blocks1, bad1 = verify_checksums(f"{w}/np1/checkpoints/step_000003/state.h5")
        check(r1.returncode == 0 and bad1 is None and blocks1 > 0, f"np=1: {blocks1} block CRC-32Cs verified")

        # 2. a disk too full for the next save: exit 4 (or warn and go on), the previous one intact
        section("a full disk")
        tfs = f"{w}/tmpfs"
        os.makedirs(tfs)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", tfs], capture_output=True).returncode:
            print("skip full-disk saves: cannot mount a tmpfs here (needs root)")
        else:
            try:
                for np_ in (1, 2):
                    ck = f"{tfs}/np{np_}"
                    out = f"{w}/full{np_}"
                    base = ["--checkpoint.dir", ck]
                    r = run(a, np_, out, base + ["--train.exit_after_steps", "3"])
                    check(r.returncode == 0 and os.path.isdir(f"{ck}/step_000003"), f"np={np_}: step 3 saved on a tmpfs")
                    before = sha(f"{ck}/step_000003/state.h5")
                    st = os.statvfs(tfs)
                    with open(f"{tfs}/filler", "wb") as f:  # 4 MB left: a save needs ~13 MB
                        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (4 << 20)))
                    r = run(a, np_, out, base)
                    left = sorted(n for n in os.listdir(ck) if n != LOCK_FILE)
                    check(r.returncode == 4 and r.seconds < 60 and one_message(r.stderr, "No space left on device") and
                          "rank" in r.stderr and ck in r.stderr,
                          f"np={np_}: the asynchronous step-6 save on a full disk: exit {r.returncode} in "
                          f"{r.seconds:.1f} s, the cause printed once")
                    check(sha(f"{ck}/step_000003/state.h5") == before and not any(".tmp." in n for n in left) and
                          open(f"{ck}/latest").read().strip() == "step_000003",
                          f"np={np_}: step_000003 byte for byte intact and still latest, no temporary folder ({left})")
                    r = run(a, np_, f"{w}/warn{np_}", ["--checkpoint.dir", f"{tfs}/warn{np_}", "--checkpoint.on_error",
                                                       "warn", "--checkpoint.at_end", "false"])
                    steps = sum(1 for _ in open(f"{w}/warn{np_}/metrics.jsonl")) if os.path.exists(
                        f"{w}/warn{np_}/metrics.jsonl") else 0
                    check(r.returncode == 0 and steps == 12 and "checkpoint.on_error = warn" in r.stderr,
                          f"np={np_}: on_error = warn: the failed saves are reported and training ends: exit "
                          f"{r.returncode}, {steps} steps")
                    os.remove(f"{tfs}/filler")
                    r = run(a, np_, out, base)
                    check(r.returncode == 0 and "step_000003 at step 3" in r.stderr,
                          f"np={np_}: with room again, the run resumes from step 3: exit {r.returncode}")
                    shutil.rmtree(ck)
                    shutil.rmtree(f"{tfs}/warn{np_}", ignore_errors=True)
            finally:
                subprocess.run(["umount", "-l", tfs])

        # 3. ENOSPC in the middle of rank 1's write, asynchronous and synchronous
        section("ENOSPC mid-write")
        for mode in ("true", "false"):
            out = f"{w}/enospc_{mode}"
            run(a, 2, out, ["--train.exit_after_steps", "6"])
            before = sha(f"{out}/checkpoints/step_000006/state.h5")
            r = run(a, 2, out, ["--checkpoint.async", mode], env=dict(ENV, LLAMAFT_FAULTS="save_enospc=9"))
            left = sorted(n for n in os.listdir(f"{out}/checkpoints") if n != LOCK_FILE)
            good = (r.returncode == 4 and r.seconds < 60 and one_message(r.stderr, "No space left on device") and
                    "rank 1" in r.stderr and "previous checkpoint is intact" in r.stderr)
            check(good, f"async={mode}: ENOSPC in rank 1's write of step 9: exit {r.returncode} in {r.seconds:.1f} s, "
                  f"printed once by rank 1" + ("" if good else f"; stderr:\n{r.stderr[-1500:]}"))
            check(sha(f"{out}/checkpoints/step_000006/state.h5") == before and
                  left == ["latest", "step_000003", "step_000006"] and
                  open(f"{out}/checkpoints/latest").read().strip() == "step_000006",
                  f"async={mode}: step_000006 intact and latest, nothing else left ({left})")

        # 4. SIGUSR1 while an asynchronous save is in flight
        section("a signal during an asynchronous save")
        long_ = ["--train.steps", "40", "--checkpoint.every_steps", "4"]
        ref = run(a, 2, f"{w}/long_ref", long_)
        status = f"{w}/sig_exit_status"
        slow = dict(ENV, LLAMAFT_FAULTS="save_piece_delay_ms=40", LLAMAFT_EXIT_STATUS_FILE=status)
        proc = subprocess.Popen(cmd(a, 2, f"{w}/sig", long_), env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        metrics = f"{w}/sig/metrics.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:  # the step-4 save has begun: it takes seconds
            if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=180)
        latest = open(f"{w}/sig/checkpoints/latest").read().strip() if os.path.exists(f"{w}/sig/checkpoints/latest") else ""
        said = open(status).read().strip() if os.path.exists(status) else ""
        check(launcher.signalled_exit_ok(proc.returncode, 85) and said == "85" and "waited" in err and "for the save in flight" in err and
              latest > "step_000004",
              f"SIGUSR1 during an asynchronous save: exit {proc.returncode} ({launcher.name()}), "
              f"LLAMAFT_EXIT_STATUS_FILE says {said or 'nothing'}, the save in flight awaited, latest {latest}")
        r = run(a, 2, f"{w}/sig", long_)
        check(ref.returncode == 0 and r.returncode == 0 and
              tree_sha(f"{w}/sig/model") == tree_sha(f"{w}/long_ref/model"),
              "after that preemption and a resume, the final weights are bit-identical to an uninterrupted run")

    # 5. kill -9 of a random rank at random moments during asynchronous saves
    section("kill -9 trials")
    trials = int(os.environ.get("CKPT_KILL_TRIALS", "6"))
    t_kill = time.time()
    rnd = random.Random(int(os.environ.get("CKPT_KILL_SEED", "20261201")))
    kill_cfg = ["--train.steps", "100000", "--checkpoint.every_steps", "1"]
    slowish = dict(ENV, LLAMAFT_FAULTS="save_piece_delay_ms=2")
    usable = 0
    for t in range(trials):
        out = f"{w}/kill{t}"
        proc = subprocess.Popen(cmd(a, 2, out, kill_cfg), env=slowish, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        def ranks():
            return list(launcher.ranks(proc.pid).values())
        deadline = time.time() + 30
        while not ranks() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rnd.uniform(0.5, 2.5))  # start-up takes ~0.4 s, then a save every step
        pids = ranks()
        if pids:
            os.kill(int(rnd.choice(pids)), signal.SIGKILL)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pids = []
        if not pids:
            print(f"     trial {t}: no rank to kill", flush=True)
            continue
        ck = f"{out}/checkpoints"
        latest = open(f"{ck}/latest").read().strip() if os.path.exists(f"{ck}/latest") else None
        ok = True
        if latest:
            blocks, bad = verify_checksums(f"{ck}/{latest}/state.h5")
            ok = bad is None and blocks > 0
        # One more step than the checkpoint holds (and at least warmup_steps = 2).
        r = run(a, 2, out, ["--train.steps", str(max(3, int(latest[5:]) + 1) if latest else 3)])
        ok = ok and r.returncode == 0 and (latest is None or f"{latest} at step" in r.stderr)
        usable += ok
        if not ok:
            print("     " + "\n     ".join(r.stderr.splitlines()[-6:]) + f"\n     left: {sorted(n for n in os.listdir(ck) if n != LOCK_FILE)}")
        print(f"     trial {t}: killed at latest={latest}, exit {proc.returncode}: "
              f"{'verified and resumed' if ok else 'FAILED'}", flush=True)
        if ok:
            shutil.rmtree(out, ignore_errors=True)
    check(usable == trials, f"kill -9 at random moments: {usable}/{trials} trials left a verified, resumable latest "
          f"({time.time() - t_kill:.0f} s)")

    print("checkpoint faults:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
