#!/usr/bin/env python3
"""Converts a llama2.c legacy (version 0) checkpoint, e.g. stories260K.bin,
into a Hugging Face Llama directory (config.json + model.safetensors, fp32).
Meta's layout rotates adjacent pairs (i, i+1); HF's rotate_half pairs (i,
i + hd/2), so q and k rows are permuted within each head as llama2.c's
export.py does: w.view(heads, hd/2, 2, dim).transpose(1, 2).

Usage: convert_llama2c.py CHECKPOINT.bin OUT_DIR [--tokenizer tokenizer.model]
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pyutil"))
import st_numpy  # noqa: E402


def permute(w, heads):
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def convert(path, out, tokenizer=None):
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", raw[:28])
    tied = vocab > 0
    vocab = abs(vocab)
    hd = dim // heads
    kvd = kv_heads * hd
    f = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = f[pos:pos + n].reshape(shape).copy()
        pos += n
        return a

    emb = take(vocab, dim)
    rms_att = take(layers, dim)
    wq, wk, wv = take(layers, dim, dim), take(layers, kvd, dim), take(layers, kvd, dim)
    wo = take(layers, dim, dim)
    rms_ffn = take(layers, dim)
    w1, w2, w3 = take(layers, hidden, dim), take(layers, dim, hidden), take(layers, hidden, dim)
    rms_final = take(dim)
    pos += seq * hd // 2 * 2  # freq_cis_real, freq_cis_imag (unused: HF recomputes RoPE)
    if not tied:
        lm_head = take(vocab, dim)
    assert pos == f.size, f"{path}: {f.size - pos} floats left over; not a version-0 llama2.c file?"

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
    st_numpy.save(os.path.join(out, "model.safetensors"), t)
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": dim,
        "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hd, "max_position_embeddings": seq, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": tied, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32",
    }
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    if tokenizer:
        shutil.copy(tokenizer, os.path.join(out, "tokenizer.model"))
    return cfg


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--tokenizer")
    a = ap.parse_args()
    print(json.dumps(convert(a.checkpoint, a.out, a.tokenizer)))
