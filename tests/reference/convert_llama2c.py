#!/usr/bin/env python3
"""Converts a llama2.c legacy (version 0) checkpoint, e.g. stories260K.bin,
into a Hugging Face Llama directory: config.json + model.safetensors (fp32),
and the tokenizer copied in as tokenizer.model when given.

The header is 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len); a positive vocab_size means the classifier is tied to
the token embedding, a negative one that wcls follows the RoPE tables. Meta's
layout rotates adjacent pairs (i, i+1), HF's rotate_half pairs (i, i + hd/2),
so the rows of wq and wk are permuted within each head as llama2.c's
export.py / HF's convert_llama_weights_to_hf.py do:
w.view(heads, hd/2, 2, dim).transpose(1, 2).

--verify REFERENCE_JSON checks the conversion with llama_ref.py: greedy
decoding from BOS must give reference.json's ids, and the chain must then
pick BOS (where llama2.c's run.c stops).

Usage: convert_llama2c.py CHECKPOINT.bin OUT_DIR [--tokenizer tok.model] [--verify reference.json]
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402


def permute(w, heads):
    """Meta's adjacent-pair rows of one projection -> HF's rotate_half rows."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def convert(path, out, tokenizer=None):
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", raw[:28])
    tied = vocab > 0
    vocab = abs(vocab)
    hd = dim // heads
    kv_dim = kv_heads * hd
    floats = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > floats.size:
            raise ValueError(f"{path}: ends inside the weights; not a version-0 llama2.c file for this header?")
        a = floats[pos:pos + n].reshape(shape).copy()
        pos += n
        return a

    emb = take(vocab, dim)  # (V, D)
    rms_att = take(layers, dim)
    wq, wk, wv = take(layers, dim, dim), take(layers, kv_dim, dim), take(layers, kv_dim, dim)
    wo = take(layers, dim, dim)
    rms_ffn = take(layers, dim)
    w1, w2, w3 = take(layers, hidden, dim), take(layers, dim, hidden), take(layers, hidden, dim)
    rms_final = take(dim)
    take(seq, hd // 2)  # freq_cis_real, unused: HF recomputes RoPE
    take(seq, hd // 2)  # freq_cis_imag
    lm_head = None if tied else take(vocab, dim)
    if pos != floats.size:
        raise ValueError(f"{path}: {floats.size - pos} floats left over; not a version-0 llama2.c file?")

    t = {"model.embed_tokens.weight": emb}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = rms_att[i]
        t[p + "self_attn.q_proj.weight"] = permute(wq[i], heads)
        t[p + "self_attn.k_proj.weight"] = permute(wk[i], kv_heads)
        t[p + "self_attn.v_proj.weight"] = wv[i]
        t[p + "self_attn.o_proj.weight"] = wo[i]
        t[p + "post_attention_layernorm.weight"] = rms_ffn[i]
        t[p + "mlp.gate_proj.weight"] = w1[i]
        t[p + "mlp.down_proj.weight"] = w2[i]
        t[p + "mlp.up_proj.weight"] = w3[i]
    t["model.norm.weight"] = rms_final
    if not tied:
        t["lm_head.weight"] = lm_head
    os.makedirs(out, exist_ok=True)
    llama_ref.write_safetensors(os.path.join(out, "model.safetensors"), t)
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": dim,
        "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hd, "max_position_embeddings": seq, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": tied, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if tokenizer:
        dst = os.path.join(out, "tokenizer.model")
        if os.path.exists(dst):
            os.remove(dst)
        shutil.copyfile(tokenizer, dst)  # contents only: the asset is read-only
    return cfg


def verify_greedy(model_dir, reference_json):
    """Problems (empty when none) of llama_ref's greedy chain from BOS against
    reference.json's greedy_from_bos ids."""
    import torch
    with open(reference_json) as f:
        ref = json.load(f)["greedy_from_bos"]
    cfg, params = llama_ref.load_hf(model_dir, dtype=torch.float64)
    first_diff, after, margin = llama_ref.greedy_check(cfg, params, ref["prompt_ids"], ref["ids"])
    print(f"llama_ref greedy chain: first difference {first_diff}, next argmax after {len(ref['ids'])} ids {after}, "
          f"smallest top-1/top-2 margin {margin:.3g}")
    problems = []
    if first_diff is not None:
        problems.append(f"llama_ref's greedy ids differ from reference.json at position {first_diff}")
    if after != 1:
        problems.append(f"llama_ref's chain continues with {after} after the reference ids, expected BOS 1")
    return problems


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--tokenizer")
    ap.add_argument("--verify", metavar="REFERENCE_JSON")
    a = ap.parse_args()
    print(json.dumps(convert(a.checkpoint, a.out, a.tokenizer)))
    if a.verify:
        bad = verify_greedy(a.out, a.verify)
        for b in bad:
            print("FAIL " + b)
        sys.exit(1 if bad else 0)
