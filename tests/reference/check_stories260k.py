#!/usr/bin/env python3
"""A real trained tiny Llama (karpathy's stories260K, GQA, tied embeddings)
through llamaft: converted from llama2.c format to HF (with the q/k RoPE
permutation), then
  (a) greedy `llamaft generate` from BOS reproduces the documented text and
      the reference ids (and the chain's next argmax is BOS after 345 ids);
  (b) `llamaft eval` on the first 200,000 characters of TinyStories, in
      windows of BOS + 511 tokens, equals the PyTorch oracle's loss (1e-4
      relative), and is in-distribution (SOURCE.md's indicative 1.50 nats used
      an unspecified windowing; whole-text encoding gives 1.91).
Exits 77 (skip) when ../shared/assets is absent.

Usage: check_stories260k.py --llamaft BIN --workdir DIR [--assets DIR]
"""
import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import convert_llama2c  # noqa: E402
import llama_ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    a = p.parse_args()
    st = os.path.join(a.assets, "stories260K")
    if not os.path.exists(os.path.join(st, "stories260K.bin")):
        print(f"SKIP: {st}/stories260K.bin not found (../shared/assets absent)")
        return 77
    try:
        import sentencepiece as spm
    except ImportError:
        print("SKIP: python sentencepiece not installed (Debian python3-sentencepiece)")
        return 77
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "stories260K_hf")
    convert_llama2c.convert(os.path.join(st, "stories260K.bin"), model, os.path.join(st, "tok512.model"))
    ref = json.load(open(os.path.join(st, "reference.json")))
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    # (a) greedy generation from BOS
    want_ids = ref["greedy_from_bos"]["ids"]
    r = subprocess.run([a.llamaft, "generate", "--model", model, "--prompt-ids", "1", "--max-new-tokens",
                        str(len(want_ids) + 1), "--temperature", "0", "--json"], capture_output=True, text=True)
    check(r.returncode == 0, f"generate exits 0 ({r.stderr.strip()[-200:]})")
    if r.returncode == 0:
        got = json.loads(r.stdout.strip().splitlines()[-1])
        ids = got["ids"]
        first_diff = next((i for i, (x, y) in enumerate(zip(ids, want_ids)) if x != y), None)
        check(ids[:len(want_ids)] == want_ids, f"greedy ids equal the reference's {len(want_ids)} "
              f"(first difference at {first_diff})")
        check(len(ids) > len(want_ids) and ids[len(want_ids)] == 1, "the chain's next argmax is BOS (1)")
        sp = spm.SentencePieceProcessor(model_file=os.path.join(st, "tok512.model"))
        text = sp.decode(ids[:256])
        check(text == ref["greedy_from_bos"]["expected_text_256_tokens"],
              "decode(ids[:256]) is the text documented in llama2.c doc/stories260K.md")
        r2 = subprocess.run([a.llamaft, "generate", "--model", model, "--prompt", "Once upon a time",
                             "--max-new-tokens", "8", "--temperature", "0", "--json"], capture_output=True, text=True)
        g2 = json.loads(r2.stdout.strip().splitlines()[-1])
        check(g2["prompt_ids"] == ref["tok512_encode"]["ids_with_bos"][:len(g2["prompt_ids"])] and
              g2["prompt_ids"][0] == 1, f"--prompt is tokenized like sentencepiece with BOS: {g2['prompt_ids']}")

    # (b) eval on real text vs the torch oracle
    sp = spm.SentencePieceProcessor(model_file=os.path.join(st, "tok512.model"))
    text = open(os.path.join(a.assets, "tinystories", "tiny_stories.txt"), encoding="utf-8").read()[:200000]
    toks = sp.encode(text)
    windows = [[1] + toks[i:i + 511] for i in range(0, len(toks), 511)]
    windows = [w for w in windows if len(w) > 1]
    data = os.path.join(a.workdir, "tinystories_windows.jsonl")
    with open(data, "w") as f:
        for w in windows:
            f.write(json.dumps({"input_ids": w}) + "\n")
    r = subprocess.run([a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", "512", "--batch-size", "8"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"eval exits 0 ({r.stderr.strip()[-200:]})")
    ours = json.loads(r.stdout.strip().splitlines()[-1])
    cfg, params = llama_ref.load_hf(model, dtype=torch.float32)
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w])
            logits = llama_ref.forward(cfg, params, ids, dtype=torch.float32)
            n = ids.shape[1] - 1
            total += llama_ref.hf_loss(logits.double(), ids).item() * n
            count += n
    want = total / count
    rel = abs(ours["loss"] - want) / want
    check(ours["tokens"] == count, f"eval counts {ours['tokens']} target tokens, the oracle {count}")
    check(rel < 1e-4, f"eval loss {ours['loss']:.6f} vs PyTorch {want:.6f} (rel {rel:.1e})")
    # SOURCE.md's 1.50 nats is "indicative only" and its windowing is not
    # specified; whole-text sentencepiece encoding gives 1.91 here (and the
    # oracle agrees to 1e-7). What must hold: in-distribution text scores far
    # below uniform (ln 512 = 6.24) and below the out-of-distribution 4.26.
    check(1.3 < ours["loss"] < 2.2, f"eval loss {ours['loss']:.4f} is in-distribution for TinyStories "
          "(documented indicative value 1.50 with unspecified windowing)")
    print("stories260K:", "PASSED" if not failures else f"FAILED ({len(failures)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
