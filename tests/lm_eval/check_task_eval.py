#!/usr/bin/env python3
"""`llamaft eval --task` (lm-evaluation-harness tasks) against transformers on SmolLM2-135M-Instruct.

The reference is written here from lm_eval 0.4.13's definitions (api/model.py _encode_pair and
loglikelihood, models/huggingface.py _loglikelihood_tokens, utils.get_rolling_token_windows,
api/task.py process_results, api/metrics.py), run with transformers' LlamaForCausalLM in float64
(the arithmetic's exact value) and `tokenizers` on the model's tokenizer.json:

1. multiple choice (a TinyStories cloze, YAML task): every choice's loglikelihood, acc and
   acc_norm (normalised by the choice's length in characters, as lm_eval's completion_len)
   and acc_bytes; the per-item picks; the same task as JSONL gives the same lines;
2. loglikelihood_rolling at --max-length 48 (several disjoint windows per story): every
   doc's loglikelihood, word_perplexity, byte_perplexity, bits_per_byte;
3. under mpirun -np 2 (the model sharded, batches dealt to ranks): the same results;
4. refusals (exit 2, naming the key): `!function`, few-shot, generate_until, a Jinja
   statement, an unknown key.

Tolerance: llamaft computes in fp32. A token's log-probability x_t - logsumexp(x) moves by at
most 2 max_i |dx_i| when the logits move by dx, so a C-token continuation's loglikelihood by
2 C delta; delta = 1e-4 bounds fp32's logit error here (30 layers; measured ~1e-5). Picks
must agree wherever the reference's top two scores are further apart than twice that bound.
Exit 77 when the model cannot be fetched or the shared TinyStories text is missing.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

DELTA = 1e-4


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


def run(cmd, env=None, ok=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if ok and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


class Reference:
    """lm_eval's hf model, re-derived: tokenization, requests, float64 scoring."""

    def __init__(self, model_dir):
        import torch
        from tokenizers import Tokenizer
        from transformers import LlamaForCausalLM
        self.torch = torch
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        cfg = json.load(open(os.path.join(model_dir, "tokenizer_config.json")))
        self.prefix = self.tok.token_to_id(cfg["bos_token"])  # bos_token_id, else eos
        torch.set_num_threads(2)
        self.model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64).eval()

    def encode(self, s):  # the post-processor adds nothing for SmolLM2 (ByteLevel)
        return self.tok.encode(s).ids

    def pair(self, ctx, cont):
        n = len(ctx) - len(ctx.rstrip())
        if n:
            ctx, cont = ctx[:-n], ctx[-n:] + cont
        whole, c = self.encode(ctx + cont), self.encode(ctx)
        return c, whole[len(c):]

    def ll(self, ctx_enc, cont_enc, max_length):
        inp = (ctx_enc + cont_enc)[-(max_length + 1):][:-1]
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([inp])).logits[0]
        lp = self.torch.log_softmax(logits, -1)[len(inp) - len(cont_enc):]
        return float(lp.gather(1, self.torch.tensor(cont_enc)[:, None]).sum())

    def rolling(self, text, max_len):
        t = self.encode(text)
        first = min(max_len, len(t))
        wins = [([self.prefix] + t[:first - 1], t[:first])]
        predicted = first
        while predicted < len(t):
            n = min(len(t) - predicted, max_len)
            end = predicted + n
            wins.append((t[end - max_len - 1:end - 1], t[end - n:end]))
            predicted += n
        wins = [(a[:len(a) - (len(b) - 1)], b) for a, b in wins]
        return sum(self.ll(a, b, max_len) for a, b in wins), len(wins)


def check_close(what, ours, ref, cont_tokens, failures):
    bound = 2 * cont_tokens * DELTA
    if not abs(ours - ref) <= bound:
        failures.append(f"{what}: llamaft {ours!r} vs reference {ref!r} (|d| {abs(ours - ref):.2e} > {bound:.1e})")
    return abs(ours - ref) / max(abs(ref), 1e-30)


def check_choices(ref, task_rows, items, max_length, failures):
    worst = 0.0
    accs = {"acc": [], "acc_norm": [], "acc_bytes": []}
    for row, item in zip(task_rows, items):
        lls, conts = [], []
        for k, ch in enumerate(row["choices"]):
            c, cont = ref.pair(row["context"], " " + ch)
            lls.append(ref.ll(c, cont, max_length))
            conts.append(len(cont))
            worst = max(worst, check_close(f"doc {item['doc_id']} choice {k}", item["loglikelihoods"][k], lls[-1],
                                           len(cont), failures))
        lls = np.array(lls)
        preds = {"acc": np.argmax(lls),
                 "acc_norm": np.argmax(lls / np.array([float(len(c)) for c in row["choices"]])),
                 "acc_bytes": np.argmax(lls / np.array([float(len(c.encode())) for c in row["choices"]]))}
        top = np.sort(lls)[-2:]
        decided = top[1] - top[0] > 4 * max(conts) * DELTA
        for m, p in preds.items():
            score = 1.0 if p == row["gold"] else 0.0
            accs[m].append(score)
            if m in item and item[m] != score and decided:
                failures.append(f"doc {item['doc_id']}: {m} llamaft {item[m]} vs reference {score}")
        if decided and item["pred"] != preds["acc"]:
            failures.append(f"doc {item['doc_id']}: llamaft picks {item['pred']}, the reference {preds['acc']}")
        norm = np.sort(lls / np.array([float(len(c)) for c in row["choices"]]))[-2:]
        if norm[1] - norm[0] > 4 * max(conts) * DELTA and item["pred_norm"] != preds["acc_norm"]:
            failures.append(f"doc {item['doc_id']}: llamaft's acc_norm pick {item['pred_norm']}, the reference "
                            f"{preds['acc_norm']}")
    return worst, {m: float(np.mean(v)) for m, v in accs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--fetch", required=True)
    ap.add_argument("--assets", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--items", type=int, default=8)
    a = ap.parse_args()
    text = os.path.join(a.assets, "tinystories", "tiny_stories.txt")
    if not os.path.exists(text):
        skip(f"{text} is missing")
    r = run(["bash", a.fetch], ok=False)
    if r.returncode == 77:
        skip("SmolLM2-135M-Instruct could not be fetched")
    if r.returncode != 0:
        raise SystemExit(f"fetch_smollm2.sh failed ({r.returncode}): {r.stderr[-2000:]}")
    model = r.stdout.strip().splitlines()[-1]
    os.makedirs(a.workdir, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    run([sys.executable, os.path.join(here, "make_tinystories_tasks.py"), text, a.workdir, "--stories", "3"])
    cloze_yaml = os.path.join(a.workdir, "tinystories_cloze.yaml")
    ppl_yaml = os.path.join(a.workdir, "tinystories_ppl.yaml")
    base = [a.llamaft, "eval", "--model", model, "--threads", "2"]
    failures = []

    def ours(task, items_path, extra=(), launcher=()):
        out = run(list(launcher) + base + ["--task", task, "--output-items", items_path] + list(extra))
        return json.loads(out.stdout.strip().splitlines()[-1]), [json.loads(l) for l in open(items_path)]

    summary, items = ours(cloze_yaml, os.path.join(a.workdir, "cloze.jsonl"), ["--limit", str(a.items)])
    print("llamaft:", json.dumps(summary))
    rows = [json.loads(l) for l in open(os.path.join(a.workdir, "tinystories_cloze.jsonl"))][:a.items]
    ref = Reference(model)
    worst, accs = check_choices(ref, rows, items, 8192, failures)
    print(f"multiple choice: {len(items)} items, {sum(len(i['choices']) for i in items)} loglikelihoods, largest "
          f"relative difference to transformers fp64 {worst:.2e}; reference acc {accs['acc']}, acc_norm "
          f"{accs['acc_norm']}, acc_bytes {accs['acc_bytes']}")
    for m in ("acc", "acc_norm"):
        if summary[m] != accs[m]:
            failures.append(f"{m}: llamaft {summary[m]} vs reference {accs[m]}")
    differ = sum(i["pred"] != i["pred_norm"] for i in items)
    print(f"items where acc_norm's pick differs from acc's: {differ}")
    if not differ:
        failures.append("no item of the sample has acc_norm pick differently from acc: the check cannot fail on it")

    # The same task as JSONL rows {context, choices, gold}.
    jsonl = os.path.join(a.workdir, "cloze_rows.jsonl")
    with open(jsonl, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    s2, items2 = ours(jsonl, os.path.join(a.workdir, "cloze2.jsonl"))
    if [i["loglikelihoods"] for i in items2] != [i["loglikelihoods"] for i in items] or s2["acc"] != summary["acc"]:
        failures.append("the JSONL form of the task scores differently from its YAML form")

    # Rolling windows at max_length 48.
    ps, pitems = ours(ppl_yaml, os.path.join(a.workdir, "ppl.jsonl"), ["--max-length", "48"])
    stories = [json.loads(l)["text"] for l in open(os.path.join(a.workdir, "tinystories_ppl.jsonl"))]
    sum_ll = words = nbytes = 0
    for s, item in zip(stories, pitems):
        ll, windows = ref.rolling(s, 48)
        check_close(f"story {item['doc_id']}", item["loglikelihood"], ll, item["tokens"], failures)
        if windows != item["windows"]:
            failures.append(f"story {item['doc_id']}: {item['windows']} windows, reference {windows}")
        sum_ll += ll
        words += len(re.split(r"\s+", s))
        nbytes += len(s.encode("utf-8"))
    if max(i["windows"] for i in pitems) < 2:
        failures.append("no story spans two rolling windows at max_length 48")
    expect = {"word_perplexity": math.exp(-sum_ll / words), "byte_perplexity": math.exp(-sum_ll / nbytes),
              "bits_per_byte": -sum_ll / nbytes / math.log(2)}
    tokens = sum(i["tokens"] for i in pitems)
    for m, v in expect.items():
        # d exp(-L/N) = exp(-L/N) dL / N, with |dL| <= 2 * tokens * DELTA
        tol = (v if "perplexity" in m else 1 / math.log(2)) * 2 * tokens * DELTA / (words if m == "word_perplexity" else nbytes)
        print(f"rolling {m}: llamaft {ps[m]!r}, reference {v!r}")
        if abs(ps[m] - v) > tol:
            failures.append(f"{m}: llamaft {ps[m]!r} vs reference {v!r}")

    # Sharded over two ranks: the same scores.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    mpi = [*launcher.mpirun("2", [], quiet=True)]
    out = run(mpi + base + ["--threads", "1", "--task", cloze_yaml, "--limit", str(a.items), "--output-items",
                            os.path.join(a.workdir, "cloze_np2.jsonl")], env=env)
    s_np2 = json.loads(out.stdout.strip().splitlines()[-1])
    items_np2 = [json.loads(l) for l in open(os.path.join(a.workdir, "cloze_np2.jsonl"))]
    d = max(abs(x - y) / abs(y) for i, j in zip(items_np2, items) for x, y in zip(i["loglikelihoods"], j["loglikelihoods"]))
    print(f"np=2 (world_size {s_np2['world_size']}): acc {s_np2['acc']}, acc_norm {s_np2['acc_norm']}, largest "
          f"relative difference to np=1 {d:.2e}")
    if s_np2["world_size"] != 2 or s_np2["acc"] != summary["acc"] or s_np2["acc_norm"] != summary["acc_norm"] or d > 1e-6:
        failures.append(f"np=2 differs from np=1 (rel {d:.2e}, acc {s_np2['acc']} vs {summary['acc']})")

    # Refusals.
    cfg = open(cloze_yaml).read()
    for name, body, word in [
        ("function", cfg.replace("doc_to_choice: choices", "doc_to_choice: !function utils.choices"), "!function"),
        ("fewshot", cfg + "num_fewshot: 5\n", "num_fewshot"),
        ("generate", cfg.replace("multiple_choice", "generate_until"), "generate_until"),
        ("jinja", cfg.replace('"{{context}}"', '"{% if x %}{{context}}{% endif %}"'), "statement"),
        ("unknown", cfg + "process_results: !function utils.process\n", "!function"),
        ("filter", cfg + "filter_list: []\n", "filter_list"),
    ]:
        path = os.path.join(a.workdir, f"refuse_{name}.yaml")
        open(path, "w").write(body)
        r = run(base + ["--task", path], ok=False)
        if r.returncode != 2 or word not in r.stderr:
            failures.append(f"refusal '{name}': exit {r.returncode}, stderr {r.stderr.strip()[-300:]!r}")
        else:
            print(f"refused ({name}): {r.stderr.strip().splitlines()[-1][:160]}")

    for f in failures:
        print("FAIL:", f)
    print(f"{'FAIL' if failures else 'PASS'}: {len(failures)} problem(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
