#!/usr/bin/env python3
"""Models whose config.json is exactly what transformers 5.24 writes
(tests/fixtures/hf_configs: `rope_parameters`, `dtype`, no `rope_theta` or
`rope_scaling`) are evaluated by llamaft with the RoPE they declare.

For each fixture, random weights are written next to the config (q/k scaled
up so attention is sharp and the positional encoding matters), `llamaft eval`
runs on 1024-token rows, and the loss is compared with transformers'
LlamaForCausalLM in float64 on the same files. The oracle's transformers
(4.49 in the CI venv) reads only the transformers 4 form, so this script
converts the fixture to it (rope_parameters -> rope_theta + rope_scaling, as
transformers 5's own backward compatibility maps them). Each loss must agree
to 1e-6 relative (fp32 against fp64 over a 2-layer model), and the
loss with the RoPE scaling dropped must differ by at least 10x that, so the
test would catch a reader that ignores `rope_parameters` (main did).

llamaft's exported config.json is also loaded by the oracle's transformers
and must give the same rope_theta and rope_scaling.

Usage: check_hf5_configs.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import st_numpy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "hf_configs")
# fp32 against fp64: unit roundoff 6e-8, grown by at most ~16x through two
# 64-wide layers and the log-softmax over 1024-token rows (seen: 1e-9..1e-8).
TOL = 1e-6
SEQ = 1024


def to_v4(cfg):
    """transformers 5's rope_parameters in the transformers 4 form."""
    out = dict(cfg)
    rp = dict(out.pop("rope_parameters"))
    out["rope_theta"] = rp.pop("rope_theta")
    out["rope_scaling"] = None if rp.get("rope_type") == "default" else rp
    out["torch_dtype"] = out.pop("dtype", "float32")
    return out


def random_weights(cfg, rng):
    d, L, V, ff = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    w = {"model.embed_tokens.weight": rng.normal(0, 1.0, (V, d)), "model.norm.weight": 1 + 0.1 * rng.normal(size=d)}
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = rng.normal(0, 0.05, (V, d))
    for i in range(L):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
        w[p + "self_attn.q_proj.weight"] = rng.normal(0, 1.0, (q, d))  # sharp attention: RoPE matters
        w[p + "self_attn.k_proj.weight"] = rng.normal(0, 1.0, (kv, d))
        w[p + "self_attn.v_proj.weight"] = rng.normal(0, 0.05, (kv, d))
        w[p + "self_attn.o_proj.weight"] = rng.normal(0, 0.05, (d, q))
        w[p + "mlp.gate_proj.weight"] = rng.normal(0, 0.05, (ff, d))
        w[p + "mlp.up_proj.weight"] = rng.normal(0, 0.05, (ff, d))
        w[p + "mlp.down_proj.weight"] = rng.normal(0, 0.05, (d, ff))
    return {k: v.astype(np.float32) for k, v in w.items()}


def oracle_loss(model_dir, v4_cfg, rows):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**{k: v for k, v in v4_cfg.items() if k not in ("architectures", "transformers_version")})
    model = LlamaForCausalLM(cfg).to(torch.float64)
    model.config._attn_implementation = "eager"
    w = st_numpy.load(os.path.join(model_dir, "model.safetensors"))
    state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    ids = torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    # Mean next-token NLL over every target, as llamaft eval reports it.
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    try:
        import transformers
        from transformers import LlamaConfig  # noqa: F401
    except Exception as e:  # the oracle's venv is missing
        print(f"skip: transformers not importable ({e})")
        return 77
    if tuple(int(x) for x in transformers.__version__.split(".")[:2]) < (4, 45):
        print(f"skip: transformers {transformers.__version__} predates llama3 rope and head_dim (4.45)")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    failures = []
    rng = np.random.default_rng(5)
    for name in ("llama3.1_llama3_rope", "llama3.2_tied", "llama2_default_rope"):
        cfg = json.load(open(os.path.join(FIXTURES, name + ".json")))
        assert "rope_parameters" in cfg and "rope_theta" not in cfg and "rope_scaling" not in cfg, name
        model = os.path.join(a.workdir, name)
        os.makedirs(model)
        shutil.copy(os.path.join(FIXTURES, name + ".json"), os.path.join(model, "config.json"))
        st_numpy.save(os.path.join(model, "model.safetensors"), random_weights(cfg, rng))
        rows = [rng.integers(0, cfg["vocab_size"], SEQ).tolist() for _ in range(2)]
        data = os.path.join(model, "rows.jsonl")
        with open(data, "w") as f:
            for r in rows:
                f.write(json.dumps({"input_ids": r}) + "\n")
        r = subprocess.run([a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", str(SEQ)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            failures.append(f"{name}: eval exit {r.returncode}")
            continue
        got = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])["loss"]
        v4 = to_v4(cfg)
        want = oracle_loss(model, v4, rows)
        rel = abs(got - want) / abs(want)
        ok = rel <= TOL
        line = f"{name}: llamaft {got:.8f} vs transformers {transformers.__version__} fp64 {want:.8f} (rel {rel:.1e})"
        if v4["rope_scaling"] is not None:
            wrong = dict(v4, rope_scaling=None)
            wrong_loss = oracle_loss(model, wrong, rows)
            sep = abs(wrong_loss - want) / abs(want)
            line += f"; without the scaling {wrong_loss:.8f} (rel {sep:.1e})"
            if sep < 10 * TOL:
                failures.append(f"{name}: the scaling barely changes the loss; the test could not catch its loss")
        print(("ok   " if ok else "FAIL ") + line, flush=True)
        if not ok:
            failures.append(name)
        # llamaft's own export (a zero-lr step), as this transformers reads it.
        out = os.path.join(a.workdir, name + "_run")
        r = subprocess.run([a.llamaft, "train", "--model.path", model, "--data.path", data, "--data.seq_len", str(SEQ),
                            "--train.steps", "1", "--train.global_batch_size", "2", "--train.lr", "0",
                            "--output.dir", out, "--checkpoint.at_end", "false", "--output.progress", "false"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            failures.append(f"{name}: train exit {r.returncode}")
            continue
        from transformers import LlamaForCausalLM
        exported = LlamaForCausalLM.from_pretrained(os.path.join(out, "model"), torch_dtype=torch.float64,
                                                    attn_implementation="eager")
        ids = torch.tensor(rows, dtype=torch.long)
        with torch.no_grad():
            logits = exported(input_ids=ids, use_cache=False).logits
        back = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 ids[:, 1:].reshape(-1)).item()
        rel_back = abs(back - want) / abs(want)
        print(("ok   " if rel_back <= 1e-12 else "FAIL ") + f"{name}: llamaft's exported config.json + weights in "
              f"transformers {transformers.__version__}: loss {back:.8f} (rel {rel_back:.1e} to the fixture's)")
        if rel_back > 1e-12:
            failures.append(f"{name}: exported model")
    print("transformers 5 configs:", "PASSED" if not failures else f"FAILED {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
