#!/usr/bin/env python3
"""Issue 31 item 2: epochs and the names users already know.
  1. train.epochs: steps = ceil(epochs x rows / global batch), computed here
     from the dataset's line count; the banner says "1 epoch = N steps";
     metrics.jsonl has that many steps and its last `epoch` is consumed rows
     / rows; at np 2 the same steps and losses as at np 1; train.steps and
     train.epochs together are refused (exit 2);
  2. names from Hugging Face TrainingArguments, torchtune, PEFT and Axolotl
     (the table in the README) get our key, or our key and what differs;
     a suggestion never names a key of another meaning (train.epochs is not
     train.eps, save_steps is not train.steps);
  3. `train --help` lists every key that --print-config prints, each with
     its description.
Usage: check_names.py --llamaft BIN --workdir DIR"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")

# name typed -> (the key we must suggest, a phrase the note must hold or None)
NAMES = {
    "num_train_epochs": ("train.epochs", None), "train.num_train_epochs": ("train.epochs", None),
    "epochs": ("train.epochs", None),
    "save_steps": ("checkpoint.every_steps", None), "train.save_steps": ("checkpoint.every_steps", None),
    "logging_steps": ("output.log_every_steps", "train.log_every"),
    "gradient_accumulation_steps": ("train.global_batch_size", "derives the accumulation"),
    "per_device_train_batch_size": ("train.micro_batch_size", None),
    "warmup_ratio": ("train.warmup_steps", "not a fraction"),
    "lora_target_modules": ("lora.targets", None), "max_steps": ("train.steps", None),
    "learning_rate": ("train.lr", None), "train.learnig_rate": ("train.lr", None),
    "weight_decay": ("train.weight_decay", None), "eval_steps": ("train.eval_every", None),
    "save_total_limit": ("checkpoint.keep_last", None), "sequence_len": ("data.seq_len", None),
    "gradient_checkpointing": ("fsdp.activation_checkpointing", None),
    "train.step": ("train.steps", None), "eval.batchsize": ("eval.batch_size", None),
    "data.sequence_len": ("data.seq_len", None),
}
# Typed names whose closest spelling is another meaning: no suggestion of these keys.
NEVER = {"train.epoch_count": "train.eps", "train.saves": "train.steps", "train.min_steps": "train.steps"}


def run(args):
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    L = a.llamaft

    # 2. Names.
    for typed, (key, note) in NAMES.items():
        r = run([L, "train", "--" + typed, "3"])
        m = re.search(r"did you mean '--([\w.]+)'\?(?: \(([^)]*)\))?", r.stderr)
        got = m.group(1) if m else None
        ok = r.returncode == 2 and got == key and (note is None or (m.group(2) or "").find(note) >= 0)
        check(ok, f"--{typed}: exit {r.returncode}, suggests {got!r}" + (f" with a note on {note!r}" if note else "")
              + (f" (want {key})" if got != key else ""))
    for typed, wrong in NEVER.items():
        r = run([L, "train", "--" + typed, "3"])
        check(r.returncode == 2 and f"'--{wrong}'" not in r.stderr,
              f"--{typed} is not taken for --{wrong}: {r.stderr.strip().splitlines()[-1][-120:]}")

    # 3. train --help lists every key.
    keys = []
    section = None
    for line in run([L, "train", "--print-config"]).stdout.splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
        elif "=" in line and section and not line.lstrip().startswith("#"):
            keys.append((section, line.split("=")[0].strip()))
    helptext = run([L, "train", "--help"]).stdout
    missing = []
    for sec, name in keys:
        block = helptext.split(f"\n[{sec}]\n", 1)
        if len(block) != 2 or not re.search(rf"^  {re.escape(name)} = .*\n      \S", block[1].split("\n[")[0], re.M):
            missing.append(f"{sec}.{name}")
    check(len(keys) > 90 and not missing, f"train --help lists all {len(keys)} keys with a description"
          + (f"; missing {missing[:5]}" if missing else ""))

    # 1. Epochs.
    tiny = f"{w}/tiny"
    r = run([L, "init", "--preset", "tiny", "--seed", "0", "--output", tiny])
    check(r.returncode == 0, f"init: {r.stderr[-200:]}")
    rows = 10
    with open(f"{w}/d.jsonl", "w") as f:
        for i in range(rows):
            f.write(json.dumps({"input_ids": [1] + [(i * 7 + j) % 200 + 3 for j in range(15)]}) + "\n")
    base = ["train", "--model", tiny, "--data", f"{w}/d.jsonl", "--data.seq_len", "16",
            "--train.global_batch_size", "4", "--checkpoint.at_end", "false", "--output.export", "false"]
    losses = {}
    for np_, epochs in ((1, 2), (2, 2), (1, 0.5)):
        out = f"{w}/run_np{np_}_e{epochs}"
        r = subprocess.run(launcher.mpirun(np_, [L] + base + ["--train.epochs", str(epochs), "--output.dir", out]),
                           env=ENV, capture_output=True, text=True, timeout=300)
        want = math.ceil(epochs * rows / 4)
        per_epoch = math.ceil(rows / 4)
        check(r.returncode == 0 and f"1 epoch = {per_epoch} steps" in r.stderr and f"running {want} steps" in r.stderr,
              f"np {np_} train.epochs {epochs}: the banner says 1 epoch = {per_epoch} steps, running {want}"
              + ("" if r.returncode == 0 else f" (exit {r.returncode}: {r.stderr[-300:]})"))
        if r.returncode != 0:
            continue
        m = [json.loads(x) for x in open(f"{out}/metrics.jsonl") if '"loss"' in x and '"step"' in x]
        steps = [x["step"] for x in m if "lr" in x]
        last = [x for x in m if "epoch" in x][-1]
        check(steps == list(range(1, want + 1)) and abs(last["epoch"] - want * 4 / rows) < 1e-12,
              f"np {np_} epochs {epochs}: {len(steps)} steps (want {want}), last epoch {last['epoch']} "
              f"(= {want * 4} rows / {rows})")
        losses[(np_, epochs)] = [x["loss"] for x in m if "lr" in x]
    if (1, 2) in losses and (2, 2) in losses:
        worst = max(abs(x - y) / abs(y) for x, y in zip(losses[(2, 2)], losses[(1, 2)]))
        check(worst < 1e-5, f"epochs at np 2 give np 1's losses ({worst:.1e} relative)")
    r = run([L] + base + ["--train.epochs", "2", "--train.steps", "5", "--output.dir", f"{w}/both"])
    check(r.returncode == 2 and "set one of them" in r.stderr, f"train.steps with train.epochs: exit {r.returncode}")

    print("names and epochs:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
