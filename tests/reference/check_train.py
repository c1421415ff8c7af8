#!/usr/bin/env python3
"""Training against PyTorch: the weights after 3 AdamW steps with gradient
clipping, weight decay and a warmup + cosine schedule must match the
reference trajectory of torch.optim.AdamW + clip_grad_norm_ + LambdaLR on the
same data order, at np = 1 and np = 2 (mpirun), and so must every step's loss.

Usage: check_train.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pyutil"))
import llama_ref  # noqa: E402
import st_numpy  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
G, MB, STEPS, LR, WARMUP, MIN_LR, CLIP, WD = 4, 1, 3, 1e-2, 1, 1e-3, 0.5, 0.1


def torch_trajectory(model_dir, rows):
    cfg, params = llama_ref.load_hf(model_dir, dtype=torch.float64)
    names = llama_ref.parameter_names(cfg)
    plist = [params[n].requires_grad_(True) for n in names]
    opt = torch.optim.AdamW(plist, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)

    def lr_lambda(step):  # HF get_cosine_schedule_with_warmup, decaying to MIN_LR
        if step < WARMUP:
            return step / max(1, WARMUP)
        progress = (step - WARMUP) / max(1, STEPS - WARMUP)
        return (MIN_LR + (LR - MIN_LR) * 0.5 * (1 + math.cos(math.pi * progress))) / LR

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    losses = []
    for step in range(STEPS):
        batch = [rows[(step * G + j) % len(rows)] for j in range(G)]
        T = max(len(r["input_ids"]) for r in batch)
        ids = torch.zeros(G, T, dtype=torch.long)
        labels = torch.full((G, T), -100, dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r.get("labels", r["input_ids"]))
        opt.zero_grad()
        loss = llama_ref.hf_loss(llama_ref.forward(cfg, params, ids), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plist, CLIP)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses, {n: params[n].detach().numpy() for n in names}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "base")
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "11", "--output", model], check=True,
                   capture_output=True)
    rng = np.random.default_rng(2)
    rows = []
    for i in range(12):
        n = int(rng.integers(6, 24))
        ids = rng.integers(0, 1024, size=n).tolist()
        r = {"input_ids": ids}
        if i % 2:
            r["labels"] = [-100] * 3 + ids[3:]
        rows.append(r)
    data = os.path.join(a.workdir, "data.jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    want_losses, want = torch_trajectory(model, rows)
    init = st_numpy.load(os.path.join(model, "model.safetensors"))
    moved = max(float(np.max(np.abs(want[n] - init[n]))) for n in want)
    failures = []
    for np_ in (1, 2):
        out = os.path.join(a.workdir, f"np{np_}")
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["mpirun", "--oversubscribe", "-np", str(np_), a.llamaft, "train", "--model.path", model,
               "--data.path", data, "--data.seq_len", "32", "--train.global_batch_size", str(G),
               "--train.micro_batch_size", str(MB), "--train.steps", str(STEPS), "--train.lr", str(LR),
               "--train.warmup_steps", str(WARMUP), "--train.lr_schedule", "cosine", "--train.min_lr", str(MIN_LR),
               "--train.max_grad_norm", str(CLIP), "--train.weight_decay", str(WD), "--output.dir", out,
               "--output.progress", "false"]
        subprocess.run(cmd, env=ENV, check=True, capture_output=True)
        got_losses = [json.loads(line)["loss"] for line in open(os.path.join(out, "metrics.jsonl"))]
        norms = [json.loads(line)["grad_norm"] for line in open(os.path.join(out, "metrics.jsonl"))]
        got = st_numpy.load(os.path.join(out, "model", "model.safetensors"))
        lerr = max(abs(x - y) / abs(y) for x, y in zip(got_losses, want_losses))
        ok = lerr < 1e-5
        print(f"{'ok  ' if ok else 'FAIL'} np={np_} losses {np.round(got_losses, 6).tolist()} vs torch "
              f"{np.round(want_losses, 6).tolist()} (rel {lerr:.1e}); grad norms {np.round(norms, 4).tolist()}")
        if not ok:
            failures.append(f"np{np_} losses")
        worst, worst_name = 0.0, ""
        for n, w in want.items():
            d = float(np.max(np.abs(got[n] - w)))
            if d > worst:
                worst, worst_name = d, n
        # AdamW moves each weight by up to lr per step; fp32 vs the fp64 oracle
        # may differ by a small fraction of one step (Adam divides by sqrt(v)).
        ok = worst < 2e-3 * LR
        print(f"{'ok  ' if ok else 'FAIL'} np={np_} weights after {STEPS} steps: max |llamaft - torch| {worst:.2e} "
              f"({worst_name}); weights moved up to {moved:.2e} from init")
        if not ok:
            failures.append(f"np{np_} weights")
    if not max(norms) > CLIP:
        failures.append("clipping never engaged; the test would not cover it")
        print("FAIL clipping never engaged")
    print("train vs torch:", "PASSED" if not failures else f"FAILED {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
