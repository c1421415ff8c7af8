#!/usr/bin/env python3
"""Side-by-side answers of a base model and a fine-tuned one (base + LoRA
adapter, or a merged folder) to held-out prompts, as text, with exact-match
accuracy before and after. Every answer comes from `llamaft generate --prompt`
(greedy, the model's own chat template), one process per answer, --jobs at a time.

Usage: demo_compare.py --llamaft BIN --base DIR [--adapter DIR [--quant nf4|int8] | --tuned DIR] --prompts FILE
                       [--limit N] [--show N] [--jobs J] [--dtype fp32|bf16] [--max-new-tokens N]
FILE: JSONL {"prompt", "answer"}. An answer counts when the generated text,
stripped of surrounding whitespace, equals "answer" and generation stopped at
the end of turn by itself. Prints the table and a final JSON line
{"base_accuracy", "tuned_accuracy", "n", "dtype"}; with neither --adapter nor
--tuned only the base is scored ("tuned_accuracy" is null). --quant runs the
fine-tuned side on the base as a quantized run (QLoRA: nf4) trained it; the
base side always runs the base as it is.
"""
import argparse
import concurrent.futures
import json
import subprocess


def generate(a, model, adapter, prompt):
    cmd = [a.llamaft, "generate", "--model", model, "--prompt", prompt, "--template", "auto", "--max-new-tokens",
           str(a.max_new_tokens), "--temperature", "0", "--json", "--threads", "1", "--dtype", a.dtype]
    if adapter:
        cmd += ["--adapter", adapter]
        if a.quant:
            cmd += ["--quant", a.quant]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"demo_compare: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def shown(g, width):
    text = g["text"].strip().replace("\n", "\\n")
    if not g["stopped_at_eos"]:
        text += "..."
    return text if len(text) <= width else text[: width - 3] + "..."


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", help="a LoRA adapter on top of --base")
    p.add_argument("--tuned", help="a fine-tuned (merged) model folder")
    p.add_argument("--quant", help="nf4|int8: the adapter's side runs on the base quantized as its run saw it")
    p.add_argument("--prompts", required=True)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--show", type=int, default=12)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--max-new-tokens", type=int, default=16)
    a = p.parse_args()
    rows = [json.loads(line) for line in open(a.prompts)][: a.limit]
    sides = [("base", a.base, None)]
    if a.adapter or a.tuned:
        sides.append(("tuned", a.tuned or a.base, a.adapter))
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        futures = {(name, i): pool.submit(generate, a, model, adapter, r["prompt"])
                   for name, model, adapter in sides for i, r in enumerate(rows)}
        outs = {k: f.result() for k, f in futures.items()}
    correct = {name: 0 for name, _, _ in sides}
    w = min(100, max([len("held-out prompt")] + [len(r["prompt"]) for r in rows[: a.show]]))
    print(f"{'held-out prompt':<{w}} | {'expected':<10} | {'base model':<34} | fine-tuned")
    print("-" * (w + 84))
    for i, r in enumerate(rows):
        for name, _, _ in sides:
            g = outs[(name, i)]
            g["ok"] = g["stopped_at_eos"] and g["text"].strip() == r["answer"]
            correct[name] += g["ok"]
        if i < a.show:
            mark = {name: "+" if outs[(name, i)]["ok"] else "-" for name, _, _ in sides}
            line = f"{r['prompt'][:w]:<{w}} | {r['answer']:<10} | {mark['base']} {shown(outs[('base', i)], 32):<32}"
            if "tuned" in correct:
                line += f" | {mark['tuned']} {shown(outs[('tuned', i)], 32)}"
            print(line)
    n = len(rows)
    base = correct["base"] / n
    tuned = correct["tuned"] / n if "tuned" in correct else None
    summary = f"\nexact match on {n} held-out prompts ({a.dtype}): base {100 * base:.0f}%"
    if tuned is not None:
        summary += f"  ->  fine-tuned {100 * tuned:.0f}%"
    print(summary)
    print(json.dumps({"base_accuracy": base, "tuned_accuracy": tuned, "n": n, "dtype": a.dtype}))


if __name__ == "__main__":
    main()
