"""An independent PyTorch implementation of Hugging Face LlamaForCausalLM's
math (transformers' modeling_llama), the oracle for llamaft's forward, loss
and gradients. It shares no code with llamaft and reads llamaft's files with
the `safetensors` package when importable (a small numpy parser otherwise).

What HF does, and so what this does:
- RMSNorm: weight * (x * rsqrt(mean(x^2) + eps)), the normalisation in at
  least fp32 (HF upcasts half types to fp32; float64 is kept as float64 here,
  where HF would round it to fp32 -- a 1e-7 difference).
- RoPE in the rotate_half layout; inv_freq and the angles in fp32 as HF keeps
  them, rope_scaling "llama3" exactly as _compute_llama3_parameters.
- Grouped-query attention (num_key_value_heads; head_dim from the config or
  hidden_size / num_attention_heads), causal softmax at 1/sqrt(head_dim).
- SwiGLU MLP down(silu(gate(x)) * up(x)); final norm; lm_head, or the token
  embedding when tie_word_embeddings.
- Loss: labels aligned with input_ids and shifted inside (logits[:, :-1]
  predict labels[:, 1:]), -100 ignored, mean over every non-ignored target
  of the whole batch.
Supported dtypes: float32 and float64.
"""
import json
import math
import os
import struct

import numpy as np
import torch

# --- safetensors ------------------------------------------------------------

_NP_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
              "U8": "u1", "BOOL": "?"}


def _read_safetensors_numpy(path):
    """A minimal reader (F64/F32/F16/BF16/ints) that validates the layout."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n])
    base, end, out = 8 + n, 0, {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0] if kv[0] != "__metadata__" else -1):
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        shape, dt = info["shape"], info["dtype"]
        if a != end or base + b > len(data):
            raise ValueError(f"{path}: tensor {name} has offsets {a}..{b}, expected to start at {end}")
        end = b
        raw = data[base + a:base + b]
        if dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt in _NP_DTYPES:
            arr = np.frombuffer(raw, dtype=_NP_DTYPES[dt])
        else:
            raise ValueError(f"{path}: unsupported dtype {dt} for {name}")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: {name} holds {arr.size} elements, shape {shape} needs {int(np.prod(shape))}")
        out[name] = arr.reshape(shape)
    if base + end != len(data):
        raise ValueError(f"{path}: {len(data) - base - end} trailing bytes after the last tensor")
    return out


def read_safetensors(path):
    """name -> numpy array (BF16 is widened to float32)."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        return _read_safetensors_numpy(path)
    try:
        return load_file(path)
    except TypeError:  # BF16 has no numpy dtype
        return _read_safetensors_numpy(path)


def write_safetensors(path, tensors):
    """tensors: name -> numpy array, written as F32 (F64 kept)."""
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64 if v.dtype == np.float64 else np.float32)
               for k, v in tensors.items()}
    try:
        from safetensors.numpy import save_file
    except ImportError:
        header, blobs, off = {}, [], 0
        for name, arr in tensors.items():
            b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            header[name] = {"dtype": "F64" if arr.dtype == np.float64 else "F32", "shape": list(arr.shape),
                            "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(header).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
        return
    save_file(tensors, path)


# --- configuration and weights ---------------------------------------------

def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def num_kv_heads(cfg):
    return cfg.get("num_key_value_heads") or cfg["num_attention_heads"]


def is_tied(cfg):
    return bool(cfg.get("tie_word_embeddings", False))


def parameter_names(cfg):
    """HF names of the trainable parameters, in HF's order (lm_head absent when tied)."""
    names = ["model.embed_tokens.weight"]
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        names += [pre + s for s in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                    "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                    "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                                    "mlp.up_proj.weight", "mlp.down_proj.weight")]
    names.append("model.norm.weight")
    if not is_tied(cfg):
        names.append("lm_head.weight")
    return names


def parameter_shapes(cfg):
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * head_dim(cfg), num_kv_heads(cfg) * head_dim(cfg)
    per = {"input_layernorm.weight": (D,), "self_attn.q_proj.weight": (q, D), "self_attn.k_proj.weight": (kv, D),
           "self_attn.v_proj.weight": (kv, D), "self_attn.o_proj.weight": (D, q),
           "post_attention_layernorm.weight": (D,), "mlp.gate_proj.weight": (I, D), "mlp.up_proj.weight": (I, D),
           "mlp.down_proj.weight": (D, I)}
    shapes = {}
    for name in parameter_names(cfg):
        if name.startswith("model.layers."):
            shapes[name] = per[name.split(".", 3)[3]]
        elif name == "model.norm.weight":
            shapes[name] = (D,)
        else:
            shapes[name] = (V, D)
    return shapes


def load_hf(model_dir, dtype=torch.float64):
    """(config dict, {hf_name: tensor}) from config.json and model.safetensors
    or a sharded model.safetensors.index.json."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"llama_ref supports float32 and float64, not {dtype}")
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    raw = {}
    for fname in files:
        raw.update(read_safetensors(os.path.join(model_dir, fname)))
    shapes = parameter_shapes(cfg)
    missing = [n for n in shapes if n not in raw]
    if missing:
        raise ValueError(f"{model_dir}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    params = {}
    for name, shape in shapes.items():
        if tuple(raw[name].shape) != shape:
            raise ValueError(f"{model_dir}: {name} has shape {tuple(raw[name].shape)}, the config implies {shape}")
        params[name] = torch.tensor(np.asarray(raw[name], dtype=np.float64), dtype=dtype)
    return cfg, params


# --- the model --------------------------------------------------------------

def rope_inv_freq(cfg):
    """inv_freq (head_dim/2,) in float32, as HF's rope init functions return it."""
    hd = head_dim(cfg)
    base = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg.get("rope_scaling")
    kind = (rs.get("rope_type") or rs.get("type")) if rs else None
    if kind in (None, "default"):
        return inv
    if kind != "llama3":
        raise NotImplementedError(f"llama_ref: rope_scaling type {kind!r} is not implemented")
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_context = rs["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / inv
    inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_llama)


def rms_norm(x, weight, eps):
    xf = x if x.dtype == torch.float64 else x.to(torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(cfg, T, dtype):
    pos = torch.arange(T, dtype=torch.float32)
    freqs = torch.outer(pos, rope_inv_freq(cfg))  # (T, hd/2), fp32 as HF
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def forward(cfg, p, ids, dtype=None):
    """ids: (B, T) long, positions 0..T-1, causal. Returns logits (B, T, V)
    in the parameters' dtype. Right padding does not change real positions."""
    dtype = dtype or p["model.embed_tokens.weight"].dtype
    B, T = ids.shape
    H, KV, hd = cfg["num_attention_heads"], num_kv_heads(cfg), head_dim(cfg)
    eps = cfg.get("rms_norm_eps", 1e-6)
    cos, sin = rope_cos_sin(cfg, T, dtype)
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)  # (T, T)
    x = p["model.embed_tokens.weight"][ids].to(dtype)  # (B, T, D)
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)  # (B, KV, T, hd)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)  # query head j reads kv head j // (H / KV), as HF's repeat_kv
        v = v.repeat_interleave(H // KV, dim=1)
        # scores / sqrt(hd) + mask in one pass (baddbmm scales the product, as HF divides it)
        scores = torch.baddbmm(mask, q.reshape(B * H, T, hd), k.reshape(B * H, T, hd).transpose(1, 2),
                               alpha=1.0 / math.sqrt(hd))  # (B*H, T, T)
        att = torch.softmax(scores, dim=-1)
        o = torch.bmm(att, v.reshape(B * H, T, hd)).view(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)
        x = x + o @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        g = h @ p[pre + "mlp.gate_proj.weight"].T  # (B, T, I)
        u = h @ p[pre + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if is_tied(cfg) else p["lm_head.weight"]
    return x @ head.T  # (B, T, V)


def bf16_round(x):
    """x rounded to bf16 (nearest even) and held in float32."""
    return x.to(torch.bfloat16).to(torch.float32)


def forward_bf16(cfg, p, ids, accumulate=torch.float32):
    """llamaft's bf16 compute (train.param_dtype = bf16, eval --dtype bf16),
    written independently in float32 torch: the weights rounded to bf16, every
    op computing in fp32, and each stored activation rounded to bf16 where
    llamaft's model stores it (the README's "bf16 on the CPU"): the norms'
    outputs, q|k|v, q and k after RoPE, the attention output, the residual
    stream after each of its two additions, gate|up, the SwiGLU output, the
    final norm and the logits. For head_dim 64 and 128 attention also rounds
    the unnormalised probabilities before P V and divides by their fp32 sum
    afterwards. Returns the bf16 logits (B, T, V) as float32.

    accumulate=torch.float64 computes every product (GEMMs, attention) in
    double and rounds it to fp32 once: the same rounding points with another
    accumulation order, the scale of what any two fp32 GEMM kernels differ by."""
    R = bf16_round

    def mm(a, b):
        return (a.to(accumulate) @ b.to(accumulate)).to(torch.float32)
    p = {name: R(t.to(torch.float32)) for name, t in p.items()}
    B, T = ids.shape
    H, KV, hd = cfg["num_attention_heads"], num_kv_heads(cfg), head_dim(cfg)
    eps = cfg.get("rms_norm_eps", 1e-6)
    cos, sin = rope_cos_sin(cfg, T, torch.float32)
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = p["model.embed_tokens.weight"][ids]
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        h = R(rms_norm(x, p[pre + "input_layernorm.weight"], eps))
        q = R(mm(h, p[pre + "self_attn.q_proj.weight"].T)).view(B, T, H, hd).transpose(1, 2)
        k = R(mm(h, p[pre + "self_attn.k_proj.weight"].T)).view(B, T, KV, hd).transpose(1, 2)
        v = R(mm(h, p[pre + "self_attn.v_proj.weight"].T)).view(B, T, KV, hd).transpose(1, 2)
        q = R(q * cos + rotate_half(q) * sin)
        k = R(k * cos + rotate_half(k) * sin)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = mask + mm(q.reshape(B * H, T, hd), k.reshape(B * H, T, hd).transpose(1, 2)) * (1.0 / math.sqrt(hd))
        if hd in (64, 128):
            e = torch.exp(scores - scores.max(-1, keepdim=True).values)
            o = mm(R(e), v.reshape(B * H, T, hd)) / e.sum(-1, keepdim=True)
        else:
            o = mm(torch.softmax(scores, dim=-1), v.reshape(B * H, T, hd))
        o = R(o).view(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)
        x = R(x + mm(o, p[pre + "self_attn.o_proj.weight"].T))
        h = R(rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps))
        g = R(mm(h, p[pre + "mlp.gate_proj.weight"].T))
        u = R(mm(h, p[pre + "mlp.up_proj.weight"].T))
        x = R(x + mm(R(torch.nn.functional.silu(g) * u), p[pre + "mlp.down_proj.weight"].T))
    x = R(rms_norm(x, p["model.norm.weight"], eps))
    head = p["model.embed_tokens.weight"] if is_tied(cfg) else p["lm_head.weight"]
    return R(mm(x, head.T))


def hf_loss(logits, labels):
    """HF's causal-LM loss: logits[:, :-1] predict labels[:, 1:], -100 ignored,
    mean over the batch's non-ignored targets."""
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="mean")


def greedy_check(cfg, p, prompt, continuation):
    """Whether greedy decoding from `prompt` produces `continuation`, checked
    teacher-forced in one causal forward (equivalent, and O(1) forwards).
    Returns (first position where argmax differs or None, the argmax after the
    whole sequence, the smallest top-1/top-2 logit margin along the chain)."""
    seq = list(prompt) + list(continuation)
    with torch.no_grad():
        logits = forward(cfg, p, torch.tensor([seq]))[0]  # (T, V)
    start = len(prompt) - 1
    pred = logits[start:].argmax(-1).tolist()  # predictions for continuation[0..] and one more
    first_diff = next((i for i, (a, b) in enumerate(zip(pred, continuation)) if a != b), None)
    top2 = logits[start:start + len(continuation)].topk(2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    return first_diff, pred[len(continuation)], margin


# --- transformers' own LlamaForCausalLM, the better oracle when available -----

def _version_tuple(v):
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def transformers_support(cfg):
    """(True, version) when transformers can run this config faithfully, else
    (False, reason)."""
    try:
        import transformers
        from transformers import LlamaForCausalLM  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- any import failure means "not available"
        return False, f"transformers not importable ({type(e).__name__}: {e})"
    ver = _version_tuple(transformers.__version__)
    rs = cfg.get("rope_scaling")
    if rs and (rs.get("rope_type") or rs.get("type")) == "llama3" and ver < (4, 43):
        return False, f"transformers {transformers.__version__} predates rope_scaling llama3 (4.43)"
    hd = cfg.get("head_dim")
    if hd and hd != cfg["hidden_size"] // cfg["num_attention_heads"] and ver < (4, 45):
        return False, f"transformers {transformers.__version__} ignores config head_dim (read since 4.45)"
    return True, transformers.__version__


def transformers_model(model_dir, dtype=torch.float64):
    """transformers' LlamaForCausalLM on the same files (eager attention), or
    None with a printed note when transformers cannot run this config."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    ok, why = transformers_support(cfg)
    if not ok:
        print(f"note: {why}; using the own torch oracle only")
        return None
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, attn_implementation="eager")
