#!/usr/bin/env python3
"""The real trained model: SmolLM2-135M-Instruct (30 layers, 9 heads over 3 KV
heads, tied embeddings, RoPE theta 1e5, vocabulary 49,152), converted from
its GGUF by `llamaft convert` into the shared cache (scripts/fetch_smollm2.sh).

1. fp32 `llamaft eval` on real text (the first rows of the shared TinyStories
   file, tokenized by HF `tokenizers` from the converted tokenizer.json)
   within 1e-5 relative of transformers in float64, over the whole model.
   transformers in fp32 is 3.6e-8 off; before the log-sum-exp and the
   attention and RMSNorm row sums were accumulated in double, llamaft was
   4.0e-5 off, every row biased the same way (the sequential fp32 sum of
   49,152 exp terms drops the tail once the running sum is near 1).
2. Greedy `llamaft generate` (fp32) equals transformers' float64 greedy
   chain for 40 tokens, checked teacher-forced where the reference's top-1
   margin exceeds what fp32 can flip (1e-3 nats); a narrower margin ends
   the comparison (reported).
3. bf16 `eval` against llama_ref.forward_bf16 (the same rounding points, in
   torch) within 5 sigma of accumulation-order noise, sigma measured by
   running that oracle in two accumulation orders (fp32 and fp64 products),
   as in check_stories260k.py.

Exit 77 when the model cannot be fetched or transformers is missing.
Usage: check_smollm2_exact.py --llamaft BIN --fetch scripts/fetch_smollm2.sh --workdir DIR --assets DIR
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
SKIP = 77
ROWS, ROW_TOKENS = 4, 256
FP32_RTOL = 1e-5
GREEDY_TOKENS = 40
MARGIN = 1e-3
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
from checks import FAILURES, check  # noqa: E402


def llamaft_json(cmd):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if not check(r.returncode == 0, f"{cmd[1]} exits 0 (got {r.returncode}) {r.stderr.strip()[-400:]}"):
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--fetch", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    try:
        import torch
        from tokenizers import Tokenizer
        from transformers import LlamaForCausalLM
        import llama_ref
    except ImportError as e:
        print(f"SKIP: needs torch, tokenizers and transformers (scripts/setup_python_env.sh): {e}")
        return SKIP
    stories = os.path.join(a.assets, "tinystories", "tiny_stories.txt")
    if not os.path.exists(stories):
        print(f"SKIP: {stories} is absent")
        return SKIP
    r = subprocess.run(["bash", a.fetch], env=dict(os.environ, LLAMAFT_BIN=a.llamaft), capture_output=True, text=True)
    if r.returncode == 77:
        print(f"SKIP: the model could not be fetched: {r.stderr.strip()[-300:]}")
        return SKIP
    if r.returncode != 0:
        print(r.stderr)
        return 1
    model = r.stdout.strip().splitlines()[-1]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    # Real text: the first ROWS x ROW_TOKENS tokens of TinyStories, BOS first.
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    text = open(stories, encoding="utf-8").read()[:20000]
    ids = tok.encode(text, add_special_tokens=False).ids
    cfg = json.load(open(os.path.join(model, "config.json")))
    rows = [[cfg["bos_token_id"]] + ids[i * (ROW_TOKENS - 1):(i + 1) * (ROW_TOKENS - 1)] for i in range(ROWS)]
    data = os.path.join(a.workdir, "tinystories_rows.jsonl")
    with open(data, "w") as f:
        for row in rows:
            f.write(json.dumps({"input_ids": row}) + "\n")
    batch = torch.tensor(rows)

    # 1. fp32 eval against transformers float64.
    ours = llamaft_json([a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", str(ROW_TOKENS),
                         "--batch-size", str(ROWS)])
    t0 = time.time()
    hf = LlamaForCausalLM.from_pretrained(model, torch_dtype=torch.float64, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = hf(batch).logits  # (B, T, V) float64
    want = llama_ref.hf_loss(logits, batch).item()
    print(f"transformers: fp64 loss {want:.9f} ({time.time() - t0:.0f} s; transformers in fp32 measured 3.6e-8 "
          "relative from it on 2026-12-07)")
    if ours:
        rel = abs(ours["loss"] - want) / want
        check(ours["tokens"] == ROWS * (ROW_TOKENS - 1), f"eval counts {ours['tokens']} target tokens")
        check(rel <= FP32_RTOL, f"fp32 eval loss {ours['loss']:.9f} vs transformers fp64 {want:.9f}: "
              f"{rel:.1e} relative <= {FP32_RTOL:g}")

    # 2. Greedy generation: teacher-forced reference chain in float64.
    prompt = rows[0][:24]
    got = llamaft_json([a.llamaft, "generate", "--model", model, "--prompt-ids", ",".join(map(str, prompt)),
                        "--max-new-tokens", str(GREEDY_TOKENS), "--temperature", "0", "--generate.stop_at_eos", "false",
                        "--json"])
    if got:
        chain = got["ids"]
        check(len(chain) == GREEDY_TOKENS, f"generate gives {GREEDY_TOKENS} tokens (got {len(chain)})")
        with torch.no_grad():
            lg = hf(torch.tensor([prompt + chain])).logits[0]
        compared = 0
        for i, tok_id in enumerate(chain):
            top2 = torch.topk(lg[len(prompt) - 1 + i], 2)
            if (top2.values[0] - top2.values[1]).item() < MARGIN:
                print(f"greedy: reference margin {top2.values[0] - top2.values[1]:.1e} at token {i}: "
                      "comparison ends there")
                break
            if not check(tok_id == top2.indices[0].item(),
                         f"greedy token {i}: llamaft {tok_id}, transformers fp64 {top2.indices[0].item()}"):
                break
            compared += 1
        check(compared >= 32, f"greedy chain equal to transformers fp64 for {compared} tokens (>= 32)")
        print("generated:", repr(tok.decode(chain)))

    # 3. bf16 eval against the bf16 oracle.
    ours16 = llamaft_json([a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", str(ROW_TOKENS),
                           "--batch-size", str(ROWS), "--dtype", "bf16"])
    params = {k: v.detach().to(torch.float32) for k, v in hf.state_dict().items()}
    if "lm_head.weight" in params and cfg.get("tie_word_embeddings"):
        del params["lm_head.weight"]
    del hf
    with torch.no_grad():
        sq, total16 = 0.0, 0.0
        n = ROW_TOKENS - 1
        for r_ in range(ROWS):  # one row at a time: D_b per row
            row = batch[r_:r_ + 1]
            l32 = llama_ref.hf_loss(llama_ref.forward_bf16(cfg, params, row).double(), row).item() * n
            l64 = llama_ref.hf_loss(llama_ref.forward_bf16(cfg, params, row, torch.float64).double(), row).item() * n
            total16 += l32
            sq += (l64 - l32) ** 2
    count = ROWS * n
    want16, sigma = total16 / count, sq ** 0.5 / count
    if ours16:
        twin = abs(ours16["loss"] - want16)
        print(f"bf16: llamaft {ours16['loss']:.6f}, bf16 oracle {want16:.6f}, fp64 {want:.6f}; accumulation-order "
              f"sigma {sigma:.2e}, |llamaft - oracle| = {twin:.2e} ({twin / sigma:.1f} sigma)")
        check(twin <= 5 * sigma, f"bf16 eval within 5 sigma of the bf16 oracle ({twin:.2e} <= {5 * sigma:.2e})")
        check(ours16["loss"] != ours["loss"] if ours else True, "the bf16 loss is not the fp32 loss")

    print("smollm2 exact:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)}): " + "; ".join(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
