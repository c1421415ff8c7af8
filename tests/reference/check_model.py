#!/usr/bin/env python3
"""llamaft's logits, loss and every parameter gradient against PyTorch.

`llamaft init --preset tiny|tiny-tied` writes a random model (GQA, llama3
rope_scaling); `ref_dump` runs llamaft's forward and backward over a padded
batch of three rows (one with -100 labels) and writes float32 "logits"
(B, T, V), "loss" (1,) and "grad.<hf name>" for every parameter. The same
batch goes through llama_ref.py in float64 and, when it can run the config,
transformers' LlamaForCausalLM in float64 (the better oracle; the own oracle
is also checked against it). Every tensor must agree to
max|a - b| / max|b| <= 1e-4, every parameter must have a gradient in the
dump, none may be all zero, and no unexpected gradient may appear.

Usage: check_model.py --llamaft BIN --dump REF_DUMP_BIN --workdir DIR [--tied]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

TOL = 1e-4
SEQ_LEN = 32
ROW_LENGTHS = (17, 32, 9)


class Failure(Exception):
    pass


def run(cmd, what):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-2000:] + r.stderr[-4000:])
        raise Failure(f"{what} exited with code {r.returncode}")
    return r


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def write_data(path, vocab):
    rng = np.random.default_rng(20240607)
    rows = [{"input_ids": rng.integers(0, vocab, size=n).tolist()} for n in ROW_LENGTHS]
    labels = list(rows[0]["input_ids"])
    for t in (0, 1, 2, 3, 10):  # a masked prefix and a hole in the middle
        labels[t] = -100
    rows[0]["labels"] = labels
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def padded_batch(rows):
    """Right-padded (B, SEQ_LEN) ids (pad id 0) and labels (-100 on padding)."""
    ids = torch.zeros(len(rows), SEQ_LEN, dtype=torch.long)
    labels = torch.full((len(rows), SEQ_LEN), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r.get("labels", r["input_ids"]))
    return ids, labels


def check_config(cfg, tied):
    """The preset must exercise what this test is for."""
    H, KV = cfg["num_attention_heads"], llama_ref.num_kv_heads(cfg)
    rs = cfg.get("rope_scaling") or {}
    print(f"config: hidden {cfg['hidden_size']}, layers {cfg['num_hidden_layers']}, heads {H}, kv heads {KV}, "
          f"head_dim {llama_ref.head_dim(cfg)}, intermediate {cfg['intermediate_size']}, vocab {cfg['vocab_size']}, "
          f"rope_theta {cfg.get('rope_theta')}, rope_scaling {rs or None}, tied {llama_ref.is_tied(cfg)}")
    problems = []
    if not KV < H:
        problems.append("the preset has no grouped-query attention (num_key_value_heads == num_attention_heads)")
    if (rs.get("rope_type") or rs.get("type")) != "llama3":
        problems.append("the preset has no llama3 rope_scaling")
    if llama_ref.is_tied(cfg) != tied:
        problems.append(f"tie_word_embeddings is {llama_ref.is_tied(cfg)}, expected {tied}")
    if problems:
        raise Failure("; ".join(problems))
    inv = llama_ref.rope_inv_freq(cfg).double().numpy()
    hd = llama_ref.head_dim(cfg)
    base = 1.0 / (float(cfg["rope_theta"]) ** (np.arange(0, hd, 2) / hd))
    changed = int(np.sum(np.abs(inv - base) / base > 1e-3))
    print(f"llama3 rope_scaling changes {changed} of {len(inv)} frequencies")
    if changed == 0:
        raise Failure("rope_scaling does not change any frequency of this config; the test would not exercise it")


class Table:
    def __init__(self, has_hf):
        self.has_hf = has_hf
        self.failures = []
        cols = ["llamaft~torch"] + (["llamaft~HF", "torch~HF"] if has_hf else [])
        print(f"\n{'tensor':52s} {'shape':>14s} {'max|ref|':>9s} " + " ".join(f"{c:>13s}" for c in cols) + "  verdict")

    def row(self, name, got, want, want_hf=None):
        got = np.asarray(got, np.float64)
        errs = [rel_err(got, want)]
        if self.has_hf and want_hf is not None:
            errs += [rel_err(got, want_hf), rel_err(want, want_hf)]
        problems = []
        if not np.all(np.isfinite(got)):
            problems.append("non-finite")
        if got.size and float(np.max(np.abs(got))) == 0.0:
            problems.append("all zero")
        if any(not (e <= TOL) for e in errs):
            problems.append(f"> {TOL:g}")
        verdict = "ok" if not problems else "FAIL (" + ", ".join(problems) + ")"
        shape = "x".join(map(str, got.shape)) or "1"
        print(f"{name:52s} {shape:>14s} {float(np.max(np.abs(want))):9.3g} "
              + " ".join(f"{e:13.2e}" for e in errs) + f"  {verdict}")
        if problems:
            self.failures.append(name)

    def fail(self, name, why):
        print(f"{name:52s} FAIL ({why})")
        self.failures.append(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--dump", required=True, help="the ref_dump binary")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--tied", action="store_true", help="use preset tiny-tied")
    ap.add_argument("--max-shard-size", default="",
                    help="have init write sharded safetensors with an index (read by transformers and by llamaft)")
    a = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "model")
    data = os.path.join(a.workdir, "data.jsonl")
    dump = os.path.join(a.workdir, "dump.safetensors")
    for stale in (model, dump):
        if os.path.isdir(stale):
            shutil.rmtree(stale)
        elif os.path.exists(stale):
            os.remove(stale)

    run([a.llamaft, "init", "--preset", "tiny-tied" if a.tied else "tiny", "--seed", "7", "--output", model]
        + (["--max-shard-size", a.max_shard_size] if a.max_shard_size else []), "llamaft init")
    if a.max_shard_size:
        with open(os.path.join(model, "model.safetensors.index.json")) as f:
            shard_files = sorted(set(json.load(f)["weight_map"].values()))
        if len(shard_files) < 2 or os.path.exists(os.path.join(model, "model.safetensors")):
            raise Failure(f"init --max-shard-size {a.max_shard_size} wrote {shard_files}, want several shards only")
        print(f"init wrote {len(shard_files)} shards: {shard_files[0]} .. {shard_files[-1]}")
    cfg, params = llama_ref.load_hf(model, dtype=torch.float64)
    check_config(cfg, a.tied)
    rows = write_data(data, cfg["vocab_size"])
    run([a.dump, "--model", model, "--data", data, "--seq-len", str(SEQ_LEN), "--output", dump], "ref_dump")
    if not os.path.exists(dump):
        raise Failure(f"ref_dump exited 0 but wrote no {dump}")
    ours = llama_ref.read_safetensors(dump)

    # The own float64 oracle.
    ids, labels = padded_batch(rows)
    names = llama_ref.parameter_names(cfg)
    for n in names:
        params[n].requires_grad_(True)
    logits = llama_ref.forward(cfg, params, ids)  # (B, T, V)
    loss = llama_ref.hf_loss(logits, labels)
    loss.backward()
    print(f"oracle loss {loss.item():.8f} over {int((labels[:, 1:] != -100).sum())} targets")

    # transformers, when it can run this config.
    hf = llama_ref.transformers_model(model, dtype=torch.float64)
    hf_logits = hf_loss = hf_grads = None
    if hf is not None:
        import transformers
        print(f"transformers {transformers.__version__}: LlamaForCausalLM in float64, eager attention")
        out = hf(input_ids=ids, labels=labels, use_cache=False)
        out.loss.backward()
        hf_logits, hf_loss = out.logits.detach().double().numpy(), np.array([out.loss.item()])
        hf_params = dict(hf.named_parameters())
        hf_grads = {n: hf_params[n].grad.double().numpy() for n in names}
    else:
        print("NOTE: compared against the own torch oracle only (see the note above)")

    t = Table(hf is not None)
    B, V = len(rows), cfg["vocab_size"]
    if tuple(ours.get("logits", np.empty(0)).shape) != (B, SEQ_LEN, V):
        t.fail("logits", f"shape {ours['logits'].shape if 'logits' in ours else 'missing'}, want {(B, SEQ_LEN, V)}")
    else:
        for i, r in enumerate(rows):  # real-token positions only
            n = len(r["input_ids"])
            want = logits[i, :n].detach().numpy()
            t.row(f"logits row {i} (t < {n})", ours["logits"][i, :n], want,
                  hf_logits[i, :n] if hf is not None else None)
    if "loss" not in ours or ours["loss"].size != 1:
        t.fail("loss", "missing or not of shape (1,)")
    else:
        t.row("loss", ours["loss"].reshape(1), np.array([loss.item()]), hf_loss)
    for n in names:
        key = "grad." + n
        if key not in ours:
            t.fail(key, "missing from the dump")
            continue
        want = params[n].grad.numpy()
        t.row(key, ours[key], want, hf_grads[n] if hf is not None else None)
    unexpected = sorted(k for k in ours if k.startswith("grad.") and k[5:] not in names)
    for k in unexpected:
        t.fail(k, "in the dump but not a parameter of this config")
    hf_inv_freq = getattr(getattr(hf.model, "rotary_emb", None), "inv_freq", None) if hf is not None else None
    if "rope_inv_freq" in ours:  # llamaft's extra: its RoPE frequencies after llama3 scaling
        t.row("rope_inv_freq (llamaft extra)", ours["rope_inv_freq"], llama_ref.rope_inv_freq(cfg).double().numpy(),
              hf_inv_freq.double().numpy() if hf_inv_freq is not None else None)

    print()
    if t.failures:
        print(f"model vs PyTorch: FAILED, {len(t.failures)} of the checks above: {', '.join(t.failures[:6])}"
              + (" ..." if len(t.failures) > 6 else ""))
        return 1
    print(f"model vs PyTorch: PASSED ({'own torch oracle and transformers' if hf is not None else 'own torch oracle'}"
          f", tolerance {TOL:g})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"model vs PyTorch: FAILED: {e}")
        sys.exit(1)
