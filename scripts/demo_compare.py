#!/usr/bin/env python3
"""Side-by-side answers of a base and a fine-tuned model on held-out prompts,
with exact-match accuracy before and after (the way Meta's fine-tuning guide
compares a base and a fine-tuned model). Uses `llamaft generate` for both.

Usage: demo_compare.py --llamaft BIN --base DIR (--tuned DIR | --adapter DIR) --prompts FILE [--show 8] [--limit N]
Prints the table and a final JSON line {"base_accuracy", "tuned_accuracy", "n"}.
"""
import argparse
import json
import subprocess

BOS, EOS, SEP, DIGIT0 = 1, 2, 20, 10


def render(ids):
    out = []
    for t in ids:
        if DIGIT0 <= t < DIGIT0 + 10:
            out.append(str(t - DIGIT0))
        elif t == SEP:
            out.append(" => ")
        elif t == EOS:
            out.append("</s>")
        elif t != BOS:
            out.append(f"<{t}>")
    return "".join(out)


def generate(llamaft, model, prompt, n, adapter=None, quant=None):
    cmd = [llamaft, "generate", "--model", model, "--prompt-ids", ",".join(map(str, prompt)),
           "--max-new-tokens", str(n), "--temperature", "0", "--json", "--threads", "1"]
    if adapter:
        cmd += ["--adapter", adapter]
    if quant:
        cmd += ["--quant", quant]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--tuned", help="a fine-tuned model folder")
    p.add_argument("--adapter", help="a LoRA adapter on top of --base")
    p.add_argument("--quant", help="nf4|int8: the fine-tuned side runs on the base as a quantized run saw it")
    p.add_argument("--prompts", required=True)
    p.add_argument("--show", type=int, default=8)
    p.add_argument("--limit", type=int, default=50)
    a = p.parse_args()
    rows = [json.loads(line) for line in open(a.prompts)][: a.limit]
    correct = {"base": 0, "tuned": 0}
    print(f"{'prompt':>12} | {'expected':<10} | {'base model':<22} | {'fine-tuned':<22}")
    print("-" * 76)
    for i, r in enumerate(rows):
        want = r["answer_ids"][:-1]  # the digits; EOS ends the answer
        outs = {}
        for name, model, adapter in (("base", a.base, None), ("tuned", a.tuned or a.base, a.adapter)):
            g = generate(a.llamaft, model, r["prompt_ids"], len(r["answer_ids"]) + 2, adapter,
                         a.quant if name == "tuned" else None)
            outs[name] = g["ids"] + ([EOS] if g["stopped_at_eos"] else [])
            correct[name] += g["ids"] == want and g["stopped_at_eos"]
        if i < a.show:
            print(f"{render(r['prompt_ids']):>12} | {render(want):<10} | {render(outs['base'])[:22]:<22} | "
                  f"{render(outs['tuned'])[:22]:<22}")
    n = len(rows)
    print(f"\nexact-match accuracy on {n} held-out prompts: base {100 * correct['base'] / n:.1f}%  ->  "
          f"fine-tuned {100 * correct['tuned'] / n:.1f}%")
    print(json.dumps({"base_accuracy": correct["base"] / n, "tuned_accuracy": correct["tuned"] / n, "n": n}))


if __name__ == "__main__":
    main()
