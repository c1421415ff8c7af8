"""An independent PyTorch implementation of Hugging Face LlamaForCausalLM's
math (modeling_llama), used as the oracle for llamaft's forward, loss and
gradients. Written from HF's semantics, sharing no code with llamaft:
RMSNorm in fp32 (weight * x * rsqrt(mean(x^2) + eps)), rotate_half RoPE with
rope_theta and llama3 rope_scaling (_compute_llama3_parameters), grouped-query
attention with causal softmax at 1/sqrt(head_dim), the SwiGLU MLP, tied or
untied embeddings, and HF's shifted cross-entropy (-100 ignored, mean over
every non-ignored target of the batch).
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pyutil"))
import st_numpy  # noqa: E402


def load_hf(model_dir, dtype=torch.float64):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    tensors = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for f in files:
        for k, v in st_numpy.load(os.path.join(model_dir, f)).items():
            tensors[k] = torch.tensor(v, dtype=dtype)
    return cfg, tensors


def rope_inv_freq(cfg):
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg.get("rope_scaling")
    if rs and (rs.get("rope_type") or rs.get("type")) == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, inv_l)
    return inv  # float32, as HF keeps it


def rms_norm(x, w, eps):
    dtype = x.dtype
    xf = x.to(torch.float32) if dtype != torch.float64 else x
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, p, ids, dtype=torch.float64):
    """ids: (B, T) long. Returns logits (B, T, V)."""
    B, T = ids.shape
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    pos = torch.arange(T).float()
    freqs = torch.outer(pos, rope_inv_freq(cfg))  # fp32, as HF
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
    x = p["model.embed_tokens.weight"][ids]
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
        x = x + o @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        g = h @ p[pre + "mlp.gate_proj.weight"].T
        u = h @ p[pre + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else p["lm_head.weight"]
    return x @ head.T


def hf_loss(logits, labels):
    """HF's causal-LM loss: logits[:, :-1] predict labels[:, 1:], -100 ignored."""
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="mean")


def parameter_names(cfg):
    names = ["model.embed_tokens.weight"]
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        names += [pre + s for s in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                    "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                    "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                                    "mlp.up_proj.weight", "mlp.down_proj.weight")]
    names.append("model.norm.weight")
    if not cfg.get("tie_word_embeddings", False):
        names.append("lm_head.weight")
    return names


def transformers_model(model_dir):
    """HF transformers' own LlamaForCausalLM on the same files, or None when
    transformers (with llama3 rope_scaling) is not importable here."""
    try:
        from transformers import LlamaForCausalLM
    except Exception as e:  # noqa: BLE001
        print(f"note: transformers unavailable ({type(e).__name__}: {e}); using the own torch oracle only")
        return None
    m = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64, attn_implementation="eager")
    return m
