#!/usr/bin/env python3
"""llamaft's logits, loss and every parameter gradient against the PyTorch
oracle (llama_ref.py, float64; and transformers' LlamaForCausalLM when it can
be imported), on the tiny preset (GQA, llama3 rope_scaling, untied) or its
tied variant, read from the same safetensors file.

Usage: check_model.py --llamaft BIN --dump REF_DUMP_BIN --workdir DIR [--tied]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pyutil"))
import llama_ref  # noqa: E402
import st_numpy  # noqa: E402

TOL = 1e-4


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--tied", action="store_true")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "model")
    subprocess.run([a.llamaft, "init", "--preset", "tiny-tied" if a.tied else "tiny", "--seed", "7",
                    "--output", model], check=True)
    cfg, params = llama_ref.load_hf(model)
    V, T = cfg["vocab_size"], 32
    rng = np.random.default_rng(1)
    rows = []
    for n in (17, 32, 9):
        ids = rng.integers(0, V, size=n).tolist()
        rows.append({"input_ids": ids})
    rows[1]["labels"] = [-100] * 10 + rows[1]["input_ids"][10:]
    data = os.path.join(a.workdir, "data.jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    dump = os.path.join(a.workdir, "dump.safetensors")
    subprocess.run([a.dump, "--model", model, "--data", data, "--seq-len", str(T), "--output", dump], check=True)
    ours = st_numpy.load(dump)

    # The reference batch: right-padded to T, padding ignored in the loss.
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r.get("labels", r["input_ids"]))
    for t in params.values():
        t.requires_grad_(True)
    logits = llama_ref.forward(cfg, params, ids)
    loss = llama_ref.hf_loss(logits, labels)
    loss.backward()

    failures = []

    def check(name, got, want):
        e = rel_err(got, want)
        nonzero = float(np.max(np.abs(got))) > 0
        ok = e <= TOL and np.all(np.isfinite(got)) and nonzero
        print(f"{'ok  ' if ok else 'FAIL'} {name:55s} rel err {e:.2e}")
        if not ok:
            failures.append(name)

    for i, r in enumerate(rows):  # real-token positions only
        n = len(r["input_ids"])
        check(f"logits row {i}", ours["logits"][i, :n], logits[i, :n].detach().numpy())
    check("loss", ours["loss"], np.array([loss.item()]))
    # llama3 rope_scaling: half of the tiny preset's frequencies are scaled or smoothed.
    want_inv = llama_ref.rope_inv_freq(cfg).numpy()
    check("rope inv_freq (llama3 scaling)", ours["rope_inv_freq"], want_inv)
    if cfg.get("rope_scaling"):
        base_inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, len(want_inv) * 2, 2) / (len(want_inv) * 2)))
        scaled = int(np.sum(np.abs(want_inv - base_inv) / base_inv > 1e-3))
        print(f"{'ok  ' if scaled > 0 else 'FAIL'} rope_scaling changes {scaled} of {len(want_inv)} frequencies")
        if scaled == 0:
            failures.append("rope scaling not exercised")
    names = llama_ref.parameter_names(cfg)
    for name in names:
        key = "grad." + name
        if key not in ours:
            print(f"FAIL {key} missing from the dump")
            failures.append(key)
            continue
        check(key, ours[key], params[name].grad.numpy())

    hf = llama_ref.transformers_model(model)
    if hf is not None:
        out = hf(input_ids=ids, labels=labels)
        out.loss.backward()
        check("transformers loss vs llamaft", ours["loss"], np.array([out.loss.item()]))
        check("transformers loss vs own oracle", np.array([loss.item()]), np.array([out.loss.item()]))
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            check(f"transformers logits row {i} vs llamaft", ours["logits"][i, :n], out.logits[i, :n].detach().numpy())
        hf_params = dict(hf.named_parameters())
        for name in names:
            check(f"transformers grad {name}", ours["grad." + name], hf_params[name].grad.numpy())
    print("model vs PyTorch:", "PASSED" if not failures else f"FAILED ({len(failures)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
