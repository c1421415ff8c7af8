#!/usr/bin/env python3
"""No silent wrong results, end to end, as a user runs llamaft:

- train.eps = 0 and warmup_steps > steps are refused (exit 2);
- AdamW that makes a weight non-finite stops the run with exit 3 and exports
  nothing (an unused embedding row of 3e38 with lr * weight_decay = 3: the
  decoupled decay multiplies it by -2, which overflows to -inf, while the loss
  and the gradients stay finite);
- eval of a model whose loss is not finite exits 3 instead of printing null;
- merge refuses a result that overflows (exit 3) and leaves no file behind;
- a disk that fills during export (a small tmpfs) exits non-zero, names the
  cause, and leaves the previous export byte for byte intact with no partial
  file, at np = 1 and np = 2;
- a checkpoint that does not fit on the disk (a small tmpfs) exits 4 within
  seconds at np = 1 and 2, naming the cause, with the previous checkpoint
  intact and resumable (it used to deadlock at np = 2 inside HDF5);
- resuming on other data (other contents, even at the same data.path) or
  another data.seq_len is refused unless checkpoint.allow_data_change =
  true, and then the banner says so; the same contents under another
  spelling of the path resume;
- eval and train accept the folder `llamaft prepare --output DIR` wrote.

Usage: check_no_silent_results.py --llamaft BIN --workdir DIR
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
import st_numpy  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
LOCK_FILE = ".llamaft.lock"  # the job's lock on the folder (RunLock): information only


def run(cmd, timeout=180):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def train(a, np_, extra):
    return run(launcher.mpirun(np_, [a.llamaft, "train", "--config", a.cfg] + extra))


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    model = os.path.join(a.workdir, "base")
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--output", model], check=True, capture_output=True)
    data = os.path.join(a.workdir, "data.jsonl")
    with open(data, "w") as f:
        for i in range(16):
            f.write(json.dumps({"input_ids": [(i * 7 + t) % 500 + 3 for t in range(12)]}) + "\n")
    a.cfg = os.path.join(a.workdir, "train.cfg")
    out = os.path.join(a.workdir, "out")
    with open(a.cfg, "w") as f:
        f.write(f"[model]\npath = {model}\n[data]\npath = {data}\nseq_len = 16\n"
                f"[train]\nglobal_batch_size = 4\nsteps = 2\n[output]\ndir = {out}\nprogress = false\n")

    # ---- refused settings
    code, text = train(a, 1, ["--train.eps", "0"])
    check(code == 2 and "train.eps = 0" in text and "NaN" in text, f"train.eps = 0 refused: exit {code}")
    code, text = train(a, 1, ["--train.warmup_steps", "5"])
    check(code == 2 and "warmup_steps = 5 is more than train.steps = 2" in text,
          f"warmup_steps > steps refused: exit {code}")

    # ---- AdamW producing a non-finite weight: exit 3, nothing exported
    huge = os.path.join(a.workdir, "huge_row")
    shutil.copytree(model, huge)
    w = st_numpy.load(os.path.join(huge, "model.safetensors"))
    w["model.embed_tokens.weight"][900, :] = 3e38  # never looked up: the data uses ids < 503
    st_numpy.save(os.path.join(huge, "model.safetensors"), w)
    nan_out = os.path.join(a.workdir, "nan_out")
    code, text = train(a, 2, ["--model.path", huge, "--output.dir", nan_out, "--train.lr", "1",
                              "--train.weight_decay", "3", "--checkpoint.resume", "none"])
    check(code == 3 and "non-finite weights" in text, f"AdamW overflow to -inf stops the run: exit {code}")
    check(not os.path.exists(os.path.join(nan_out, "model")), "nothing exported after the non-finite update")

    # ---- eval whose loss is not finite
    bad = os.path.join(a.workdir, "bad_norm")
    shutil.copytree(model, bad)
    w = st_numpy.load(os.path.join(bad, "model.safetensors"))
    w["model.norm.weight"][:] = 3e38  # finite weights, overflowing activations
    st_numpy.save(os.path.join(bad, "model.safetensors"), w)
    code, text = run([a.llamaft, "eval", "--model", bad, "--data", data, "--seq-len", "16"])
    check(code == 3 and "non-finite" in text and "null" not in text, f"eval with an infinite loss: exit {code}")

    # ---- merge whose result overflows: exit 3, no file
    adapter = os.path.join(a.workdir, "adapter_overflow")
    os.makedirs(adapter)
    cfg = json.load(open(os.path.join(model, "config.json")))
    d, r = cfg["hidden_size"], 2
    qa = np.zeros((r, d), np.float32)
    qb = np.zeros((cfg["num_attention_heads"] * cfg["head_dim"], r), np.float32)
    qa[0, 0], qb[0, 0] = 3e19, 3e19  # scale * B @ A = 9e38 > float32 max
    tensors = {}
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        tensors[pre + ".lora_A.weight"], tensors[pre + ".lora_B.weight"] = qa, qb
    st_numpy.save(os.path.join(adapter, "adapter_model.safetensors"), tensors)
    json.dump({"peft_type": "LORA", "r": r, "lora_alpha": r, "target_modules": ["q_proj"], "bias": "none"},
              open(os.path.join(adapter, "adapter_config.json"), "w"))
    merged = os.path.join(a.workdir, "merged")
    code, text = run([a.llamaft, "merge", "--model", model, "--adapter", adapter, "--output", merged])
    left = os.listdir(merged) if os.path.isdir(merged) else []
    check(code == 3 and "non-finite" in text and not left, f"merge overflowing to inf: exit {code}, left {left}")

    # ---- a full disk during export: the previous export stays intact
    tfs = os.path.join(a.workdir, "tmpfs")
    os.makedirs(tfs)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", tfs], capture_output=True).returncode == 0
    if not mounted:
        print("skip full-disk export: cannot mount a tmpfs here (needs root)")
    else:
        try:
            for np_ in (1, 2):
                run_dir = os.path.join(tfs, f"np{np_}")
                ck = os.path.join(a.workdir, f"ck_full{np_}")
                code, text = train(a, np_, ["--output.dir", run_dir, "--checkpoint.dir", ck])
                target = os.path.join(run_dir, "model", "model.safetensors")
                check(code == 0 and os.path.exists(target), f"np={np_}: first export on the tmpfs: exit {code}")
                if code != 0:
                    print(text[-2000:])
                    continue
                before = sha(target)
                st = os.statvfs(tfs)
                free = st.f_bavail * st.f_frsize
                with open(os.path.join(tfs, f"filler{np_}"), "wb") as f:  # leave 1 MB: less than the 4 MB model
                    f.write(b"\0" * max(0, free - (1 << 20)))
                code, text = train(a, np_, ["--output.dir", run_dir, "--checkpoint.dir", ck + "b",
                                            "--train.lr", "1e-2"])
                partial = [n for n in os.listdir(os.path.join(run_dir, "model")) if "partial" in n]
                print("  " + "\n  ".join(ln for ln in text.splitlines() if "error" in ln))
                check(code != 0 and "No space left on device" in text,
                      f"np={np_}: export onto a full disk fails, naming the cause: exit {code}")
                check(sha(target) == before and not partial,
                      f"np={np_}: the previous export is intact and no partial file is left ({partial})")
                os.remove(os.path.join(tfs, f"filler{np_}"))
                shutil.rmtree(run_dir)
        finally:
            subprocess.run(["umount", "-l", tfs])

    # ---- a disk too full for the next checkpoint: exit 4 at once, the previous one intact
    ck_fs = os.path.join(a.workdir, "ck_tmpfs")
    os.makedirs(ck_fs)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", ck_fs],
                             capture_output=True).returncode == 0
    if not mounted:
        print("skip full-disk checkpoint: cannot mount a tmpfs here (needs root)")
    else:
        try:
            for np_ in (1, 2):
                ck = os.path.join(ck_fs, f"np{np_}")
                run_dir = os.path.join(a.workdir, f"ckfull_out{np_}")
                base = ["--output.dir", run_dir, "--checkpoint.dir", ck, "--train.steps", "4"]
                code, _ = train(a, np_, base + ["--train.exit_after_steps", "2"])
                check(code == 0 and os.path.isdir(os.path.join(ck, "step_000002")),
                      f"np={np_}: checkpoint of step 2 on a 40 MB tmpfs: exit {code}")
                st = os.statvfs(ck_fs)
                filler = os.path.join(ck_fs, "filler")
                with open(filler, "wb") as f:  # 4 MB left: less than the ~17 MB a checkpoint needs
                    f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (4 << 20)))
                t0 = time.time()
                code, text = train(a, np_, base)
                secs = time.time() - t0
                check(code == 4 and "No space left on device" in text and "rank 0" in text and secs < 60,
                      f"np={np_}: the step-4 checkpoint on a full disk exits 4 in {secs:.1f} s, naming host, "
                      f"rank, path and the cause")
                left = sorted(n for n in os.listdir(ck) if n != LOCK_FILE)
                os.remove(filler)
                code, text = train(a, np_, base)
                check(code == 0 and "resumed from" in text and "step_000002 at step 2" in text and
                      not any(".tmp." in n for n in left),
                      f"np={np_}: the previous checkpoint is intact and resumes (folders then: {left}): exit {code}")
                shutil.rmtree(ck)
        finally:
            subprocess.run(["umount", "-l", ck_fs])

    # ---- resume with other data: identified by content, not by the path's spelling
    res = os.path.join(a.workdir, "resume")
    datap = os.path.join(a.workdir, "data_resume.jsonl")
    shutil.copy(data, datap)
    code, _ = train(a, 1, ["--output.dir", res, "--train.steps", "4", "--train.exit_after_steps", "2",
                           "--data.path", datap])
    check(code == 0, f"first half of a run to resume: exit {code}")
    with open(data) as f:
        rows = f.read().splitlines()
    with open(datap, "w") as f:  # same path, other contents
        f.write("\n".join(rows[1:] + rows[:1]) + "\n")
    code, text = train(a, 1, ["--output.dir", res, "--train.steps", "4", "--data.path", datap])
    check(code == 2 and "allow_data_change" in text and "content" in text,
          f"resume on other contents at the same data.path refused: exit {code}")
    shutil.copy(data, datap)
    code, text = train(a, 1, ["--output.dir", res, "--train.steps", "4", "--data.seq_len", "8",
                              "--data.path", datap])
    check(code == 2 and "data.seq_len = 16" in text, f"resume with another data.seq_len refused: exit {code}")
    spelled = os.path.join(a.workdir, ".", "..", os.path.basename(a.workdir), "data_resume.jsonl")
    code, text = train(a, 1, ["--output.dir", res, "--train.steps", "4", "--train.exit_after_steps", "3",
                              "--data.path", spelled])
    check(code == 0 and "resumed from" in text,
          f"the same contents under another spelling of the path ({spelled}) resume: exit {code}")
    data2 = os.path.join(a.workdir, "data2.jsonl")
    with open(data2, "w") as f:
        f.write("\n".join(rows[1:] + rows[:1]) + "\n")
    code, text = train(a, 1, ["--output.dir", res, "--train.steps", "4", "--data.path", data2,
                              "--checkpoint.allow_data_change", "true"])
    check(code == 0 and "allow_data_change = true: resuming on data.path" in text,
          f"resume on other data with allow_data_change: exit {code}, said in the banner")

    # ---- the folder `prepare` wrote
    prep = os.path.join(a.workdir, "prepared")
    code, text = run([a.llamaft, "prepare", "--format", "tokens", "--input", data, "--output", prep,
                      "--seq-len", "16", "--val-fraction", "0.25"])
    check(code == 0, f"prepare tokens with a val split: exit {code}")
    code, text = run([a.llamaft, "eval", "--model", model, "--data", prep, "--seq-len", "16"])
    check(code == 0 and "evaluating its val split" in text, f"eval --data PREPARED_DIR uses DIR/val: exit {code}")
    code_v, text_v = run([a.llamaft, "eval", "--model", model, "--data", os.path.join(prep, "val"), "--seq-len", "16"])
    # The result line without its timings (seconds, tokens_per_s differ from run to run).
    result = lambda t: [{k: v for k, v in json.loads(ln).items() if k not in ("seconds", "tokens_per_s")}  # noqa: E731
                        for ln in t.splitlines() if ln.startswith("{")]
    check(code_v == 0 and result(text) == result(text_v) and len(result(text)) == 1,
          f"eval on DIR equals eval on DIR/val: {result(text)} vs {result(text_v)}")
    code, text = train(a, 1, ["--data.path", prep, "--output.dir", os.path.join(a.workdir, "prep_out")])
    check(code == 0 and "training on its train split" in text, f"train --data.path PREPARED_DIR: exit {code}")

    print("no silent results:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)}): {FAILURES}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
