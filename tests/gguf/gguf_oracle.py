"""What `llamaft export --format gguf` must write, stated independently of
its C++: the tensor list and per-tensor types (convert_hf_to_gguf.py's and
llama-quantize's rules for the llama architecture), the bytes of every
tensor (gguf-py's numpy quantizers, and ggml_kquants_ref for the K-quants),
and helpers that read GGUF files with gguf-py and HF folders with numpy.
Shared by check_gguf_export.py and check_gguf_smollm2.py."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ggml_kquants_ref  # noqa: E402
import st_numpy  # noqa: E402

OUTTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"]
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_k_m": 15}
BLOCK = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_0": 32, "Q5_0": 32, "Q5_1": 32,
         "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}

HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".", 3)  # model layers N rest
    return f"blk.{parts[2]}.{HF_TO_GGUF[parts[3]]}"


def load_hf(model_dir):
    """{hf name: fp32 array} and the parsed config.json."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    tensors = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            tensors.update(st_numpy.load(os.path.join(model_dir, f)))
    return tensors, cfg


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (HF -> GGUF row order)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def fallback(t, ne0):
    """llama-quantize's tensor_type_fallback."""
    if ne0 % BLOCK[t] == 0:
        return t
    to = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}.get(t, t)
    return to if ne0 % BLOCK[to] == 0 else "F16"


def expected_type(outtype, name, ne, cfg):
    """The ggml type of tensor `name` (ggml shape ne) in a GGUF of `outtype`."""
    if len(ne) < 2 or name.endswith("_norm.weight") or name == "rope_freqs.weight":
        return "F32"
    ne0 = ne[0]
    if outtype in ("f32", "f16", "bf16"):
        return outtype.upper()
    if outtype == "q8_0":
        return "Q8_0" if ne0 % 32 == 0 else "F16"
    default = "Q4_K" if outtype == "q4_k_m" else "Q4_0"
    tied = cfg.get("tie_word_embeddings", False)
    layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
    n_layer = cfg["num_hidden_layers"]
    t = default
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        t = "Q8_0" if ne0 % BLOCK[default] else "Q6_K"
    elif outtype == "q4_k_m" and name.endswith("attn_v.weight"):
        if use_more_bits(layer, n_layer):
            t = "Q6_K"
        elif n_layer == 80 and cfg["num_attention_heads"] != cfg["num_key_value_heads"]:
            t = "Q5_K"  # LLM_TYPE_70B
    elif outtype == "q4_k_m" and name.endswith("ffn_down.weight"):
        if use_more_bits(layer, n_layer):
            t = "Q6_K"
    return fallback(t, ne0)


def loader_order(names):
    """llama_model_loader's weight_name_comparer: non-block tensors first, then by layer, by name."""
    def key(n):
        layer = int(n.split(".")[1]) if n.startswith("blk.") else -1
        return (layer, n)
    return sorted(names, key=key)


def rope_factors_converter(cfg):
    """convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, run in torch."""
    import math
    import torch
    rs = cfg.get("rope_scaling") or {}
    base = cfg.get("rope_theta", 10000.0)
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = rs.get("factor", 8.0)
    low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    low_w, high_w = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_w:
            out.append(1)
        elif wavelen > low_w:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32).numpy()


def reference_bytes(values, type_name):
    """fp32 (rows, n) -> the bytes ggml's reference quantizer (or gguf-py) writes."""
    import gguf
    Q = gguf.GGMLQuantizationType
    if type_name in ("Q4_K", "Q5_K", "Q6_K"):
        return ggml_kquants_ref.quantize(values, type_name).reshape(-1).view(np.uint8)
    q = np.ascontiguousarray(gguf.quants.quantize(values.astype(np.float32), Q[type_name])).reshape(-1).view(np.uint8)
    if type_name in ("Q4_0", "Q5_0"):
        # One known difference between gguf-py and ggml: in a block whose values
        # are all zeros, some of them -0.0, gguf-py's argmax takes the first
        # (maybe -0.0) as `max`, ggml keeps its initial +0.0, so d = max / -8
        # (or -16) is +0.0 in one and -0.0 in the other. ggml is what llama.cpp
        # runs; the oracle follows it there (the dequantized values are 0 either way).
        bb = 18 if type_name == "Q4_0" else 22
        zero = ~np.abs(values.reshape(-1, 32)).any(axis=1)
        q = q.reshape(-1, bb).copy()
        q[zero, 0:2] = np.array([0, 0x80], np.uint8)  # fp16 -0.0 = 0x8000
        q = q.reshape(-1)
    return q


def dequantize(raw, type_name, ne):
    import gguf
    arr = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[type_name])
    return np.asarray(arr, dtype=np.float32).reshape(list(reversed(ne)))


class GgufFile:
    """gguf-py's reading of a file: metadata values and tensors."""

    def __init__(self, path):
        import gguf
        self.path = path
        self.reader = gguf.GGUFReader(path)
        self.kv = {}
        for k, f in self.reader.fields.items():
            if k.startswith("GGUF."):
                continue
            self.kv[k] = f.contents()
        self.types = {k: gguf.GGUFValueType(f.types[0]).name for k, f in self.reader.fields.items()}
        self.tensors = {}
        self.order = []
        for t in self.reader.tensors:
            ne = [int(d) for d in t.shape]
            self.tensors[t.name] = (t.tensor_type.name, ne, np.asarray(t.data))
            self.order.append(t.name)

    def raw(self, name):
        return np.ascontiguousarray(self.tensors[name][2]).reshape(-1).view(np.uint8)

    def values(self, name):
        type_name, ne, data = self.tensors[name]
        return dequantize(data, type_name, ne)


def check_tensors(gf, hf_tensors, cfg, outtype, only=None):
    """Every tensor of the file: name, order, type, and bytes equal to the
    reference quantization of the source. Returns {type: count}."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    expected = {}
    for hf, w in hf_tensors.items():
        if hf == "lm_head.weight" and cfg.get("tie_word_embeddings", False):
            continue
        if hf.endswith("rotary_emb.inv_freq"):
            continue
        v = w
        if hf.endswith("q_proj.weight"):
            v = permute(w, n_head)
        elif hf.endswith("k_proj.weight"):
            v = permute(w, n_kv)
        expected[gguf_name(hf)] = v
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "llama3":
        expected["rope_freqs.weight"] = gf.values("rope_freqs.weight")  # checked by the caller (converter formula)
    assert sorted(gf.tensors) == sorted(expected), f"tensor names differ: {sorted(set(gf.tensors) ^ set(expected))}"
    assert gf.order == loader_order(expected), f"order {gf.order[:6]} is not the loader's"
    counts = {}
    for name, v in expected.items():
        type_name, ne, _ = gf.tensors[name]
        assert ne == list(reversed(v.shape)), f"{name}: ne {ne} vs {v.shape}"
        want = expected_type(outtype, name, ne, cfg)
        assert type_name == want, f"{outtype} {name}: type {type_name}, llama.cpp writes {want}"
        counts[type_name] = counts.get(type_name, 0) + 1
        if only is not None and name not in only and type_name in ("Q4_K", "Q5_K", "Q6_K"):
            continue
        ref = reference_bytes(v.reshape(-1, ne[0]), type_name)
        got = gf.raw(name)
        if not np.array_equal(ref, got):
            blk = {"F32": 4, "F16": 2, "BF16": 2}.get(type_name)
            diff = np.nonzero(ref != got)[0]
            raise AssertionError(f"{outtype} {name} ({type_name}): {diff.size} bytes differ from the reference "
                                 f"quantization, first at byte {diff[0]}" + (f" (element {diff[0] // blk})" if blk else ""))
    return counts


def hf_state_from_gguf(gf, cfg):
    """{hf name: fp32} from our GGUF by gguf-py (dequantize + unpermute)."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    inv = {gguf_name(h): h for h in hf_names(cfg)}
    out = {}
    for name in gf.tensors:
        if name == "rope_freqs.weight":
            continue
        hf = inv[name]
        w = gf.values(name)
        if hf.endswith("q_proj.weight"):
            w = unpermute(w, n_head)
        elif hf.endswith("k_proj.weight"):
            w = unpermute(w, n_kv)
        out[hf] = w
    return out


def hf_names(cfg):
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg.get("tie_word_embeddings", False):
        names.append("lm_head.weight")
    for l in range(cfg["num_hidden_layers"]):
        names += [f"model.layers.{l}.{k}" for k in HF_TO_GGUF]
    return names


def empty_model(cfg_dict):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_utils import no_init_weights
    keep = {k: v for k, v in cfg_dict.items() if k not in ("dtype",)}
    with no_init_weights():
        return LlamaForCausalLM(LlamaConfig(**keep))


def transformers_gguf_state(path, cfg_dict):
    """transformers' GGUF loader (load_gguf_checkpoint: llama.cpp's names,
    the q/k permutation undone, gguf-py dequantization) -> {hf name: fp32}.
    from_pretrained(gguf_file=) itself stops on torch 1.13 (tests/convert)."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    state = load_gguf_checkpoint(path, return_tensors=True, model_to_load=empty_model(cfg_dict))["tensors"]
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}


def logits_of(cfg_dict, state, ids):
    """transformers' LlamaForCausalLM (fp32) with these weights on these ids."""
    import torch
    model = empty_model(cfg_dict)
    missing, unexpected = model.load_state_dict({k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in state.items()},
                                                strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def rounding_bound(src, got, logits_src, k=8.0):
    """The derived bound on |logits(GGUF) - logits(source)|: each weight
    matrix W is stored as W + E by the format's rounding, which perturbs its
    output by a relative amount of about eps = ||E|| / ||W|| (rounding errors
    are independent of the activations). The perturbations of all matrices
    add in quadrature through the residual stream, so the logits move by
    about sqrt(sum eps^2) * rms(logits); k = 8 covers the largest of the
    logits (a 5-sigma tail over ~10^6 values) and a network gain of up to
    1.6. Returns (bound, sqrt(sum eps^2))."""
    s = 0.0
    for name, w in src.items():
        if w.ndim < 2 or name not in got:
            continue
        e = got[name].astype(np.float64) - w.astype(np.float64)
        s += float((e ** 2).sum() / max((w.astype(np.float64) ** 2).sum(), 1e-300))
    eps = s ** 0.5
    return k * eps * float(np.sqrt(np.mean(logits_src ** 2))), eps
