#!/usr/bin/env python3
"""`llamaft convert` on the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched and
converted into the shared cache by scripts/fetch_smollm2.sh), against two
independent readers of the same file:

1. gguf-py (`gguf.quants.dequantize`): every tensor of the fp32 folder is
   bit-equal to its dequantization, after undoing llama.cpp's q/k row
   permutation here in numpy;
2. transformers' own GGUF loader (`from_pretrained(dir, gguf_file=...)`, or
   on torch 1.13 the pieces it runs, see gguf_reference_model): the converted
   folder gives the same config and the same logits, to the bit, on
   TinyStories text;
3. the tokenizer: llamaft's ids for TinyStories lines (and a few hard ones)
   equal `tokenizers` on the written tokenizer.json and transformers' GGUF
   tokenizer (built from the GGUF metadata, not from our file).

Exit 77 when the model cannot be fetched or gguf/transformers are missing.
"""
import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))

HARD_LINES = [
    "Hello world 12345 and 3.14! x=42, y = 7",
    "  multiple   spaces\there\tand tabs  ",
    "\u00e9t\u00e9 caf\u00e9 \u20ac100 \U0001F600 emoji \u4e2d\u6587 \u0661\u0662\u0663",
    "it's they're I'll we've she'd IT'S",
    "trailing spaces   ",
    "<|im_start|>user",
    "\x04 control \x07 bytes",
    "x \u00b2\u00b3 \u00bd and 1\u00bd cups",
]


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


def unpermute(w, n_head):
    # convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2); inverse:
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_reference_model(cache, gguf_name, gguf_path):
    """transformers' GGUF loader. `from_pretrained(dir, gguf_file=...)` itself
    stops on torch 1.13 (transformers 4.49 enters `with torch.device("meta")`,
    a torch 2 API), so this runs the pieces it calls: the config from the GGUF
    (AutoConfig with gguf_file) and load_gguf_checkpoint, which maps the names,
    reverses the q/k permutation and dequantizes with gguf-py."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    try:
        return AutoModelForCausalLM.from_pretrained(cache, gguf_file=gguf_name, torch_dtype=torch.float32)
    except TypeError as e:
        if "context manager" not in str(e):
            raise
    from transformers.modeling_utils import no_init_weights
    cfg = AutoConfig.from_pretrained(cache, gguf_file=gguf_name)
    with no_init_weights():  # every weight is loaded below; random init of 135M parameters takes ~20 s
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    tensors = load_gguf_checkpoint(gguf_path, return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--fetch", required=True, help="scripts/fetch_smollm2.sh")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", required=True)
    ap.add_argument("--lines", type=int, default=2000)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    try:
        import gguf  # noqa: F401
        from gguf.quants import dequantize
        import torch
        import tokenizers
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        skip(f"needs gguf, torch, tokenizers and transformers (scripts/setup_python_env.sh): {e}")

    env = dict(os.environ, LLAMAFT_BIN=a.llamaft)
    t0 = time.time()
    r = subprocess.run(["bash", a.fetch], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode == 77:
        skip(f"the model could not be fetched: {r.stderr.strip()[-400:]}")
    if r.returncode != 0:
        print(r.stderr)
        raise SystemExit(f"fetch_smollm2.sh failed with {r.returncode}")
    model_dir = r.stdout.strip().splitlines()[-1]
    cache = os.path.dirname(model_dir)
    gguf_name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf_path = os.path.join(cache, gguf_name)
    print(f"model: {model_dir} (fetch: {time.time() - t0:.1f} s)")

    # A fresh conversion into the workdir, timed, in both dtypes; the fp32 one
    # must be byte-identical to the cached folder's weights.
    fresh = os.path.join(a.workdir, "fresh")
    t0 = time.time()
    subprocess.run([a.llamaft, "convert", "--gguf", gguf_path, "--output", fresh, "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    conv_s = time.time() - t0
    for f in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        with open(os.path.join(fresh, f), "rb") as x, open(os.path.join(model_dir, f), "rb") as y:
            assert x.read() == y.read(), f"{f}: a fresh conversion differs from the cached one"
    print(f"convert fp32: {conv_s:.2f} s, identical to the cache")
    bf16_dir = os.path.join(a.workdir, "bf16")
    t0 = time.time()
    subprocess.run([a.llamaft, "convert", "--gguf", gguf_path, "--output", bf16_dir, "--dtype", "bf16", "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"convert bf16: {time.time() - t0:.2f} s")

    # 1. every tensor against gguf-py's dequantization
    from st_numpy import load as load_safetensors
    ours = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    reader = gguf.GGUFReader(gguf_path)
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    block = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    seen = set()
    types = {}
    for t in reader.tensors:
        if t.name in names:
            hf = names[t.name]
        else:
            _, layer, kind, _ = t.name.split(".")
            hf = f"model.layers.{layer}.{block[kind]}.weight"
        ref = dequantize(t.data, t.tensor_type).astype(np.float32)
        ref = ref.reshape([int(d) for d in reversed(t.shape)])
        if hf.endswith("q_proj.weight"):
            ref = unpermute(ref, cfg["num_attention_heads"])
        elif hf.endswith("k_proj.weight"):
            ref = unpermute(ref, cfg["num_key_value_heads"])
        got = ours[hf]
        assert got.shape == ref.shape, (hf, got.shape, ref.shape)
        diff = int(np.count_nonzero(got.view(np.uint32) != ref.view(np.uint32)))
        assert diff == 0, f"{hf} ({t.tensor_type.name}): {diff} of {ref.size} values differ from gguf-py"
        seen.add(hf)
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    assert seen == set(ours), f"tensors not in the GGUF: {set(ours) - seen}"
    bf = load_safetensors(os.path.join(bf16_dir, "model.safetensors"))
    for hf, w in ours.items():
        b = bf[hf]
        ref = (torch.from_numpy(w).to(torch.bfloat16)).to(torch.float32).numpy()
        assert np.array_equal(np.asarray(b, dtype=np.float32), ref), f"{hf}: bf16 output is not the fp32 rounded"
    print(f"dequantization: {len(seen)} tensors bit-equal to gguf-py {importlib.metadata.version('gguf')} ({types}); bf16 = rne(fp32)")

    # 2. logits: the converted folder vs transformers' GGUF loader
    torch.manual_seed(0)
    torch.set_num_threads(2)
    lines = [l.strip() for l in open(os.path.join(a.assets, "tinystories", "tiny_stories.txt"), encoding="utf-8")]
    lines = [l for l in lines if l][: a.lines]
    hf_tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    text = " ".join(lines[:12])
    ids = torch.tensor([hf_tok.encode(text).ids[:256]])
    t0 = time.time()
    ours_m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    ref_m = gguf_reference_model(cache, gguf_name, gguf_path)
    ref_cfg = ref_m.config
    for key in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rope_theta", "tie_word_embeddings", "bos_token_id",
                "eos_token_id", "rope_scaling"]:
        assert getattr(ours_m.config, key) == getattr(ref_cfg, key), (key, getattr(ours_m.config, key),
                                                                       getattr(ref_cfg, key))
    # GGUF stores eps as float32 (9.99999974738e-06); convert writes the
    # shortest decimal of that float32 (1e-05), which is the same float32.
    assert np.float32(ours_m.config.rms_norm_eps) == np.float32(ref_cfg.rms_norm_eps)
    with torch.no_grad():
        lo = ours_m(ids).logits
        lr = ref_m(ids).logits
    maxdiff = (lo - lr).abs().max().item()
    print(f"logits ({ids.shape[1]} tokens, transformers {transformers.__version__}): max |ours - gguf loader| = "
          f"{maxdiff:.3g} (scale {lr.abs().max().item():.3g}) ({time.time() - t0:.1f} s)")
    assert maxdiff == 0.0, "the converted folder's logits differ from transformers' GGUF loader"
    assert torch.isfinite(lo).all() and lo.abs().max() > 1, "degenerate logits"
    # A trained model, not noise: the next-token loss on real text is low.
    loss = torch.nn.functional.cross_entropy(lo[0, :-1], ids[0, 1:]).item()
    print(f"next-token loss on TinyStories: {loss:.3f}")
    assert loss < 3.5, "the converted model does not model English text"
    del ours_m, ref_m

    # 3. tokenizer ids
    inp = os.path.join(a.workdir, "lines.jsonl")
    sample = lines + HARD_LINES
    with open(inp, "w", encoding="utf-8") as f:
        for l in sample:
            f.write(json.dumps(l) + "\n")
    t0 = time.time()
    r = subprocess.run([a.llamaft, "tokenize", "--tokenizer", os.path.join(model_dir, "tokenizer.json"),
                        "--input", inp, "--json-lines"], check=True, stdout=subprocess.PIPE, text=True)
    tok_s = time.time() - t0
    got = [json.loads(l)["ids"] for l in r.stdout.splitlines()]
    assert len(got) == len(sample)
    gguf_tok = AutoTokenizer.from_pretrained(cache, gguf_file=gguf_name)
    n_tokens = skipped_gguf = 0
    for line, g in zip(sample, got):
        want = hf_tok.encode(line, add_special_tokens=False).ids
        # tokenizers matches added tokens inside the text; llamaft's tokenize
        # encodes text as text. Compare special-free lines only.
        if "<|" in line:
            continue
        assert g == want, f"llamaft vs tokenizers on {line[:80]!r}: {g[:16]} vs {want[:16]}"
        n_tokens += len(g)
        # transformers' GGUF tokenizer has no Digits(individual_digits) step
        # (llama.cpp's smollm pre-tokenizer splits \p{N} first), so " ١"
        # or " ²" pieces differ there; it is compared on lines without
        # non-ASCII numerals.
        if any(c.isnumeric() and not c.isascii() for c in line):
            skipped_gguf += 1
            continue
        want_gguf = gguf_tok(line, add_special_tokens=False)["input_ids"]
        assert g == want_gguf, f"llamaft vs transformers' GGUF tokenizer on {line[:80]!r}"
    print(f"tokenizer: {len(sample)} lines, {n_tokens} tokens equal to tokenizers {tokenizers.__version__} and "
          f"(but {skipped_gguf} lines with non-ASCII numerals) to transformers' GGUF tokenizer "
          f"(llamaft tokenize: {tok_s:.2f} s)")
    print("PASS")


if __name__ == "__main__":
    main()
