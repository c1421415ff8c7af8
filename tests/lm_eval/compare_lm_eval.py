#!/usr/bin/env python3
"""Compares `llamaft eval --task` against lm-evaluation-harness's own run of the same task.

  compare_lm_eval.py LM_EVAL_OUTPUT_DIR TASK LLAMAFT_ITEMS.jsonl LLAMAFT_SUMMARY.json [--rel 1e-5]
                     [--fp64 LM_EVAL_FP64_OUTPUT_DIR]

LM_EVAL_OUTPUT_DIR is lm_eval's --output_path (searched for samples_TASK_*.jsonl and
results_*.json, as --log_samples writes them). Multiple choice: the same prediction on every
item, every choice's loglikelihood within --rel relative, acc and acc_norm equal (to the last
bit of the mean). Rolling: every doc's loglikelihood within --rel, and the perplexities.
With --fp64 (lm_eval's own run at dtype=float64, the arithmetic's exact value to ~1e-12),
llamaft's loglikelihoods must be within --rel of it, and against the float32 run within
--rel * |ll| + |lm_eval fp32 - lm_eval fp64|: the triangle inequality's bound, since two fp32
implementations each carry their own rounding (torch's fp32 logits are off the fp64 ones by up
to ~1e-4 relative on near-certain tokens, where ll is close to 0).
Exit 1 on any difference."""
import argparse
import glob
import json
import math
import os
import sys

p = argparse.ArgumentParser()
p.add_argument("lm_eval_dir")
p.add_argument("task")
p.add_argument("items")
p.add_argument("summary")
p.add_argument("--rel", type=float, default=1e-5)
p.add_argument("--fp64")
a = p.parse_args()


def newest(pattern, where=None):
    where = where or a.lm_eval_dir
    found = sorted(glob.glob(os.path.join(where, "**", pattern), recursive=True), key=os.path.getmtime)
    if not found:
        sys.exit(f"compare: no {pattern} under {where}")
    return found[-1]


def load_samples(where):
    out = {}
    for line in open(newest(f"samples_{a.task}_*.jsonl", where)):
        s = json.loads(line)
        out[s["doc_id"]] = s
    return out


def first_number(x):
    while isinstance(x, (list, tuple)):
        x = x[0]
    return float(x)


samples = load_samples(a.lm_eval_dir)
exact = load_samples(a.fp64) if a.fp64 else None
results = json.load(open(newest("results_*.json")))["results"][a.task]
ours = [json.loads(line) for line in open(a.items)]
summary = json.loads(open(a.summary).read().strip().splitlines()[-1])
if len(ours) != len(samples):
    sys.exit(f"compare: llamaft scored {len(ours)} items, lm_eval {len(samples)}")

failures, worst, worst_at, n_ll = [], 0.0, None, 0
worst64, worst_at64, theirs_vs_exact, within = 0.0, None, 0.0, 0
mc = "loglikelihoods" in ours[0]


def lls(s):
    return [first_number(r) for r in s["filtered_resps"]] if mc else [first_number(s["filtered_resps"])]


for item in ours:
    s = samples[item["doc_id"]]
    theirs = lls(s)
    truth = lls(exact[item["doc_id"]]) if exact else [None] * len(theirs)
    mine = item["loglikelihoods"] if mc else [item["loglikelihood"]]
    if len(theirs) != len(mine):
        failures.append(f"doc {item['doc_id']}: {len(mine)} loglikelihoods vs lm_eval's {len(theirs)}")
        continue
    for k, (x, y, z) in enumerate(zip(mine, theirs, truth)):
        rel = abs(x - y) / max(abs(y), 1e-30)
        n_ll += 1
        within += rel <= a.rel
        if rel > worst:
            worst, worst_at = rel, (item["doc_id"], k, x, y)
        bound = a.rel * abs(y) if z is None else a.rel * abs(z) + abs(y - z)
        if abs(x - y) > bound:
            failures.append(f"doc {item['doc_id']} part {k}: llamaft {x!r} vs lm_eval {y!r} (rel {rel:.2e})")
        if z is not None:
            rel64 = abs(x - z) / max(abs(z), 1e-30)
            theirs_vs_exact = max(theirs_vs_exact, abs(y - z) / max(abs(z), 1e-30))
            if rel64 > worst64:
                worst64, worst_at64 = rel64, (item["doc_id"], k, x, z)
            if rel64 > a.rel:
                failures.append(f"doc {item['doc_id']} part {k}: llamaft {x!r} vs lm_eval fp64 {z!r} (rel {rel64:.2e})")
    if mc:
        pred = max(range(len(theirs)), key=lambda i: (theirs[i], -i))
        if pred != item["pred"]:
            failures.append(f"doc {item['doc_id']}: llamaft picks {item['pred']}, lm_eval {pred}")
        for m in ("acc", "acc_norm"):
            if m in s and float(s[m]) != float(item[m]):
                failures.append(f"doc {item['doc_id']}: {m} llamaft {item[m]} vs lm_eval {s[m]}")

metrics = ["acc", "acc_norm"] if mc else ["word_perplexity", "byte_perplexity", "bits_per_byte"]
for m in metrics:
    theirs = results.get(f"{m},none")
    mine = summary.get(m)
    if theirs is None or mine is None:
        failures.append(f"{m}: missing (llamaft {mine}, lm_eval {theirs})")
        continue
    ok = (mine == theirs) if mc else abs(mine - theirs) <= a.rel * abs(theirs)
    print(f"compare: {a.task} {m}: llamaft {mine!r}, lm_eval {theirs!r}{'' if ok else '  <-- DIFFERENT'}")
    if not ok:
        failures.append(f"{m}: llamaft {mine!r} vs lm_eval {theirs!r}")
print(f"compare: {a.task}: {len(ours)} items, {n_ll} loglikelihoods; vs lm_eval fp32: largest relative difference "
      f"{worst:.3e}" + (f" (doc {worst_at[0]} part {worst_at[1]}: {worst_at[2]!r} vs {worst_at[3]!r})" if worst_at else "")
      + f", {within} of {n_ll} within {a.rel:g}")
if exact:
    print(f"compare: {a.task}: vs lm_eval fp64: llamaft's largest relative difference {worst64:.3e}"
          + (f" (doc {worst_at64[0]} part {worst_at64[1]}: {worst_at64[2]!r} vs {worst_at64[3]!r})" if worst_at64 else "")
          + f"; lm_eval fp32's own largest relative difference from fp64 {theirs_vs_exact:.3e}")
for f in failures[:20]:
    print("compare: FAIL", f)
print(f"compare: {a.task}: {'FAIL' if failures else 'OK'} ({len(failures)} differences)")
sys.exit(1 if failures else 0)
