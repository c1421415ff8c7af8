#!/usr/bin/env python3
"""`llamaft export --format gguf` on the real SmolLM2-135M-Instruct (the
Hugging Face folder scripts/fetch_smollm2.sh makes), every outtype:

1. gguf-py reads the file; the llama.* hyper-parameters and every
   tokenizer key equal those of the GGUF the model was published in
   (llama.cpp's converter: gpt2 BPE, pre-tokenizer smollm, 49152 tokens,
   48900 merges, special ids, add_bos, the chat template);
2. every tensor has llama.cpp's name, order and type for the outtype and
   the bytes of the reference quantizers (K-quant blocks checked on layers
   0, 4 and 29: Q6_K and Q4_K of q4_k_m's ffn_down; the rest in full);
3. transformers (config from our GGUF, tensors by load_gguf_checkpoint)
   gives the source folder's logits on TinyStories text: f32 to 1e-6 of the
   largest logit, f16/bf16/q8_0 within the bound derived from each format's
   rounding; the next-token loss of every outtype is reported;
4. `llamaft convert` reads every file back: its tensors equal gguf-py's
   dequantization bit for bit, and for f32 the round trip HF -> GGUF -> HF
   gives the source weights, config and tokenizer files exactly.
Exit 77 when the model cannot be fetched or the Python packages are missing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))

import gguf_oracle as O  # noqa: E402
import st_numpy  # noqa: E402


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


def must(args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def next_token_loss(logits, ids):
    lg = logits[:-1]
    lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
    return float(np.mean(lse - lg[np.arange(len(ids) - 1), ids[1:]]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--fetch", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", required=True)
    a = ap.parse_args()
    try:
        import gguf  # noqa: F401
        import torch  # noqa: F401
        from transformers import AutoConfig, AutoTokenizer
    except ImportError as e:
        skip(f"needs gguf-py, transformers and torch (scripts/setup_python_env.sh): {e}")
    r = subprocess.run([a.fetch], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=dict(os.environ, LLAMAFT_BIN=a.llamaft))
    if r.returncode == 77:
        skip("SmolLM2 could not be fetched (no PyPI): " + r.stderr.strip()[-200:])
    assert r.returncode == 0, r.stderr
    model = r.stdout.strip().splitlines()[-1]
    original = os.path.join(os.path.dirname(model), "SmolLM2-135M-Instruct.Q4_1.gguf")
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    t_start = time.time()

    hf, cfg = O.load_hf(model)
    orig = O.GgufFile(original)
    tok = AutoTokenizer.from_pretrained(model)
    lines = [l.strip() for l in open(os.path.join(a.assets, "tinystories", "tinystories_sample.txt")) if l.strip()]
    ids = tok.encode(" ".join(lines))[:256]
    src_logits = O.logits_of(cfg, hf, ids)
    print(f"SmolLM2-135M-Instruct: {model}; source next-token loss {next_token_loss(src_logits, ids):.4f} "
          f"on {len(ids)} TinyStories tokens")
    k_layers = {f"blk.{l}.ffn_down.weight" for l in (0, 4, 29)}
    for outtype in O.OUTTYPES:
        out = os.path.join(a.workdir, f"smollm2-{outtype}.gguf")
        t0 = time.time()
        must([a.llamaft, "export", "--format", "gguf", "--outtype", outtype, "--model", model, "--output", out])
        secs = time.time() - t0
        gf = O.GgufFile(out)
        # 1. metadata as the published GGUF (from llama.cpp's converter)
        for k, v in orig.kv.items():
            if k.startswith("llama.") or (k.startswith("tokenizer.")):
                assert gf.kv.get(k) == v, f"{outtype}: {k} = {str(gf.kv.get(k))[:80]} but the published GGUF has {str(v)[:80]}"
        assert gf.kv["general.file_type"] == O.FILE_TYPE[outtype]
        extra = sorted(k for k in gf.kv if (k.startswith("tokenizer.") or k.startswith("llama.")) and k not in orig.kv)
        # 2. tensors
        counts = O.check_tensors(gf, hf, cfg, outtype, only=k_layers)
        # 3. logits through transformers' GGUF loader, with the config it reads from our file
        gcfg = AutoConfig.from_pretrained(a.workdir, gguf_file=os.path.basename(out))
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "max_position_embeddings", "rope_theta", "tie_word_embeddings"):
            assert getattr(gcfg, key) == cfg[key], f"{outtype}: transformers reads {key} = {getattr(gcfg, key)}"
        assert abs(gcfg.rms_norm_eps - cfg["rms_norm_eps"]) < 1e-12
        state = O.transformers_gguf_state(out, cfg)
        got = O.logits_of(cfg, state, ids)
        err = float(np.abs(got - src_logits).max())
        loss = next_token_loss(got, ids)
        scale = float(np.abs(src_logits).max())
        if outtype == "f32":
            assert err <= 1e-6 * scale, f"f32 logits differ by {err}"
            note = f"logits max |diff| {err:.3g} (bound 1e-6 x {scale:.3g})"
        elif outtype in ("f16", "bf16", "q8_0"):
            bound, eps = O.rounding_bound(hf, state, src_logits)
            assert err <= bound, f"{outtype}: logits differ by {err:.4g} > derived bound {bound:.4g}"
            note = f"logits max |diff| {err:.4g} <= bound {bound:.4g} (eps {eps:.3g}, ratio {err / bound:.2f})"
        else:
            note = f"logits max |diff| {err:.4g}"
        print(f"  {outtype}: {os.path.getsize(out) / 1e6:.1f} MB in {secs:.2f} s, {counts}; metadata = published GGUF"
              f"{' (+ ' + ', '.join(extra) + ')' if extra else ''}; {note}; loss {loss:.4f}")
        # 4. llamaft convert reads it back
        back = os.path.join(a.workdir, f"back-{outtype}")
        must([a.llamaft, "convert", "--gguf", out, "--output", back])
        back_t = st_numpy.load(os.path.join(back, "model.safetensors"))
        ours = O.hf_state_from_gguf(gf, cfg)
        for k, w in ours.items():
            assert np.array_equal(back_t[k], w), f"{outtype}: convert reads {k} differently from gguf-py"
        if outtype == "f32":
            for k, w in hf.items():
                if k in back_t:
                    assert np.array_equal(back_t[k].view(np.uint32), w.view(np.uint32)), f"round trip changed {k}"
            bcfg = json.load(open(os.path.join(back, "config.json")))
            for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                      "tie_word_embeddings", "bos_token_id", "eos_token_id"):
                assert bcfg[k] == cfg[k], f"round trip changed config {k}: {bcfg[k]} vs {cfg[k]}"
            for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
                assert open(os.path.join(back, f), "rb").read() == open(os.path.join(model, f), "rb").read(), \
                    f"round trip changed {f}"
            print("    round trip HF -> GGUF f32 -> HF (llamaft convert): every weight bit-equal, config and tokenizer "
                  "files identical")
        shutil.rmtree(back)
        os.remove(out)
    print(f"SmolLM2 GGUF export checks passed ({time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
