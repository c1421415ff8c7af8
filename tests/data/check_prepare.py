#!/usr/bin/env python3
"""`llamaft prepare` and prepared-data training, against independent references:
  1. token layouts: Llama 3 chats equal the HF chat template rendered as one
     string and tokenized by tiktoken (specials allowed), and Meta's
     reference dialog ids; Llama 2 chats equal Meta's chat_completion format
     encoded by sentencepiece; Alpaca rows equal the Alpaca prompt + output
     encoded jointly; masks train exactly the assistant turns/completions and
     their end token;
  2. the loss of packed rows equals the loss of the same documents unpacked;
  3. bad rows are reported with file:line and counted, and too many fail;
  4. training on a prepared split with validation (eval_every), and a resume
     mid-epoch consumes exactly the rows an uninterrupted run does (bit-identical
     weights and the same losses).
Exits 77 when ../shared/assets or the oracles are missing.

Usage: check_prepare.py --llamaft BIN --workdir DIR [--assets DIR]
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import st_numpy  # noqa: E402
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
       r"\s*[\r\n]+|\s+(?!\S)|\s+")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def read_split(d):
    idx = np.fromfile(f"{d}/index.bin", dtype="<i8")
    toks = np.fromfile(f"{d}/tokens.bin", dtype="<i4")
    labs = np.fromfile(f"{d}/labels.bin", dtype="<i4")
    docs = np.fromfile(f"{d}/docs.bin", dtype="<i4")
    return [(toks[a:b].tolist(), labs[a:b].tolist(), docs[a:b].tolist()) for a, b in zip(idx[:-1], idx[1:])]


def prepare(a, tok, inp, fmt, tmpl, out, *extra, expect=0):
    r = subprocess.run([a.llamaft, "prepare", "--tokenizer", tok, "--input", inp, "--format", fmt, "--template", tmpl,
                        "--output", out] + list(extra), capture_output=True, text=True)
    if r.returncode != expect:
        print(r.stdout, r.stderr)
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    a = p.parse_args()
    l3 = os.path.join(a.assets, "llama3_tokenizer", "tokenizer.model")
    l2 = os.path.join(a.assets, "llama2_tokenizer", "tokenizer.model")
    if not (os.path.exists(l3) and os.path.exists(l2)):
        print("SKIP: ../shared/assets tokenizers absent")
        return 77
    try:
        import sentencepiece as spm
        import tiktoken
    except ImportError as e:
        print(f"SKIP: oracle missing ({e})")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    ranks = {base64.b64decode(t): int(r) for t, r in (l.split() for l in open(l3, "rb") if l.strip())}
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
             "<|eot_id|>", "<|python_tag|>"]
    enc = tiktoken.Encoding("llama3", pat_str=PAT, mergeable_ranks=ranks,
                            special_tokens={n: 128000 + i for i, n in enumerate(names)})
    sp = spm.SentencePieceProcessor(model_file=l2)

    chats = [
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
         {"role": "assistant", "content": "4."}],
        [{"role": "user", "content": "  Name a colour.\n"}, {"role": "assistant", "content": "Blue, or 青.\n"},
         {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "Red 🍎"}],
    ]
    with open(f"{w}/chats.jsonl", "w") as f:
        for c in chats:
            f.write(json.dumps({"messages": c}) + "\n")

    # ---- 1a. Llama 3 chat = HF's chat template rendered and tokenized by tiktoken ----
    prepare(a, l3, f"{w}/chats.jsonl", "chat", "llama3", f"{w}/l3chat", "--seq-len", "512")
    rows = read_split(f"{w}/l3chat/train")
    for c, (ids, labels, _) in zip(chats, rows):
        text = "<|begin_of_text|>" + "".join(
            f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in c)
        want = enc.encode(text, allowed_special="all")
        check(ids == want, f"llama3 chat layout equals HF's template ({len(want)} tokens)")
        trained = [t for t, l in zip(ids, labels) if l != -100]
        want_trained = []
        for m in c:
            if m["role"] == "assistant":
                want_trained += enc.encode(m["content"].strip()) + [128009]
        check(trained == want_trained, "llama3 chat trains exactly the assistant turns and their <|eot_id|>")
    ref = json.load(open(os.path.join(a.assets, "llama3_tokenizer", "reference_ids.json")))["chat_dialog_example"]
    with open(f"{w}/meta.jsonl", "w") as f:
        f.write(json.dumps({"messages": ref["messages"] + [{"role": "assistant", "content": "ok"}]}) + "\n")
    prepare(a, l3, f"{w}/meta.jsonl", "chat", "llama3", f"{w}/l3meta")
    ids = read_split(f"{w}/l3meta/train")[0][0]
    prefix = ref["ids"]  # Meta's encode_dialog_prompt: ends with an open assistant header
    check(ids[:len(prefix)] == prefix, "llama3 chat matches Meta's encode_dialog_prompt reference ids")

    # ---- 1b. Llama 2 chat = Meta's chat_completion format with sentencepiece ----
    prepare(a, l2, f"{w}/chats.jsonl", "chat", "llama2", f"{w}/l2chat", "--seq-len", "512")
    rows = read_split(f"{w}/l2chat/train")
    for c, (ids, labels, _) in zip(chats, rows):
        msgs = [dict(m) for m in c]
        if msgs[0]["role"] == "system":
            msgs[1]["content"] = f"<<SYS>>\n{msgs[0]['content']}\n<</SYS>>\n\n{msgs[1]['content']}"
            msgs = msgs[1:]
        want = []
        for u, asst in zip(msgs[::2], msgs[1::2]):
            want += [sp.bos_id()] + sp.encode(f"[INST] {u['content'].strip()} [/INST] {asst['content'].strip()} ") + [sp.eos_id()]
        check(ids == want, f"llama2 chat layout equals Meta's chat_completion ({len(want)} tokens)")
        check(labels[-1] == sp.eos_id(), "llama2 chat trains the closing </s>")

    # ---- 1c. Alpaca = prompt + output encoded jointly, prompt masked ----
    alpaca = json.load(open(os.path.join(a.assets, "alpaca", "alpaca_tiny.json")))[:20]
    with open(f"{w}/alpaca.json", "w") as f:
        json.dump(alpaca, f)
    prepare(a, l2, f"{w}/alpaca.json", "alpaca", "none", f"{w}/alp", "--seq-len", "1024")
    rows = read_split(f"{w}/alp/train")

    def alpaca_prompt(r):
        if r.get("input"):
            return ("Below is an instruction that describes a task, paired with an input that provides further context. "
                    "Write a response that appropriately completes the request.\n\n### Instruction:\n"
                    f"{r['instruction']}\n\n### Input:\n{r['input']}\n\n### Response:\n")
        return ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                f"request.\n\n### Instruction:\n{r['instruction']}\n\n### Response:\n")
    ok = all(ids == [sp.bos_id()] + sp.encode(alpaca_prompt(r) + r["output"]) + [sp.eos_id()]
             for r, (ids, _, _) in zip(alpaca, rows))
    check(ok and len(rows) == 20, "alpaca layout equals the Alpaca prompt + output encoded by sentencepiece")
    masked_ok = all(labels[:len(sp.encode(alpaca_prompt(r))) + 1] == [-100] * (len(sp.encode(alpaca_prompt(r))) + 1)
                    and labels[-1] == sp.eos_id() for r, (_, labels, _) in zip(alpaca, rows))
    check(masked_ok, "alpaca prompts are masked, the response and </s> trained")

    # ---- 2. packed loss == unpacked loss (tiny model, vocab 1024: token data) ----
    model = f"{w}/tiny"
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "5", "--output", model], check=True,
                   capture_output=True)
    rng = np.random.default_rng(1)
    with open(f"{w}/docs.jsonl", "w") as f:
        for i in range(30):
            n = int(rng.integers(4, 40))
            ids_ = rng.integers(3, 1024, size=n).tolist()
            f.write(json.dumps({"input_ids": ids_, "labels": [-100] * (n // 3) + ids_[n // 3:]}) + "\n")
    prepare(a, l2, f"{w}/docs.jsonl", "tokens", "none", f"{w}/unpacked", "--seq-len", "128")
    prepare(a, l2, f"{w}/docs.jsonl", "tokens", "none", f"{w}/packed", "--seq-len", "128", "--pack", "true")
    prows = read_split(f"{w}/packed/train")
    check(len(prows) < 30 and max(len(r[0]) for r in prows) <= 128 and len({d for r in prows for d in r[2]}) > 1,
          f"packing put 30 documents into {len(prows)} rows of <= 128 tokens with document boundaries")
    ev = {}
    for name in ("unpacked", "packed"):
        r = subprocess.run([a.llamaft, "eval", "--model", model, "--data", f"{w}/{name}/train", "--seq-len", "128"],
                           capture_output=True, text=True, check=True)
        ev[name] = json.loads(r.stdout.strip().splitlines()[-1])
    check(ev["packed"]["tokens"] == ev["unpacked"]["tokens"] and
          abs(ev["packed"]["loss"] - ev["unpacked"]["loss"]) < 1e-5 * ev["unpacked"]["loss"],
          f"packed loss {ev['packed']['loss']:.7f} equals unpacked {ev['unpacked']['loss']:.7f} "
          f"over {ev['packed']['tokens']} targets")

    # ---- 3. bad rows ----
    with open(f"{w}/bad.jsonl", "w") as f:
        f.write(json.dumps({"instruction": "ok", "output": "fine"}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"instruction": "no output"}) + "\n")
    r = prepare(a, l2, f"{w}/bad.jsonl", "alpaca", "none", f"{w}/bad", expect=2)
    check(r.returncode == 2 and "bad.jsonl:2: not a JSON object" in r.stderr and "bad.jsonl:3: missing 'output'" in r.stderr
          and "2 of 3 rows are bad" in r.stderr, "bad rows are named with file:line, counted, and fail over the limit")
    r = prepare(a, l2, f"{w}/bad.jsonl", "alpaca", "none", f"{w}/bad", "--prepare.max_bad_fraction", "0.9")
    check(r.returncode == 0 and json.loads(r.stdout)["bad_rows"] == 2, "under the limit they are counted in the summary")

    # ---- 4. prepared training with validation; resume mid-epoch ----
    prepare(a, l2, f"{w}/docs.jsonl", "tokens", "none", f"{w}/tv", "--seq-len", "64", "--pack", "true",
            "--val-fraction", "0.2")
    common = ["--model.path", model, "--data.path", f"{w}/tv/train", "--data.seq_len", "64", "--data.shuffle", "true",
              "--train.global_batch_size", "2", "--train.steps", "8", "--train.lr", "1e-3",
              "--train.eval_every", "4", "--output.progress", "false"]
    run = lambda out, *x: subprocess.run([*launcher.mpirun("2", []), a.llamaft, "train", "--output.dir",  # noqa: E731
                                          out] + common + list(x), env=ENV, capture_output=True, text=True)
    r = run(f"{w}/full")
    lines = [json.loads(x) for x in open(f"{w}/full/metrics.jsonl")]
    vals = [x for x in lines if "val_loss" in x]
    check(r.returncode == 0 and [v["step"] for v in vals] == [4, 8] and all(np.isfinite(v["val_loss"]) for v in vals),
          f"validation loss at steps 4 and 8: {[round(v['val_loss'], 4) for v in vals]}")
    # A validation split that does not divide over the ranks must not hang them.
    with open(f"{w}/val3.jsonl", "w") as fh:
        for i in range(3):
            fh.write(json.dumps({"input_ids": [5 + i, 6, 7, 8, 9]}) + "\n")
    try:
        r = subprocess.run([*launcher.mpirun("2", []), a.llamaft, "train", "--output.dir", f"{w}/odd"] +
                           common + ["--data.val_path", f"{w}/val3.jsonl", "--train.steps", "2",
                                     "--train.eval_every", "1"], env=ENV, capture_output=True, text=True, timeout=120)
        odd_ok = r.returncode == 0 and sum("val_loss" in x for x in open(f"{w}/odd/metrics.jsonl")) == 2
    except subprocess.TimeoutExpired:
        odd_ok = False
    check(odd_ok, "3 validation rows over 2 ranks: no hang, validation logged at every step")
    run(f"{w}/split", "--train.exit_after_steps", "3")
    run(f"{w}/split")
    la = [x["loss"] for x in lines if "loss" in x]
    lb = [json.loads(x)["loss"] for x in open(f"{w}/split/metrics.jsonl") if "\"loss\"" in x]
    wa = st_numpy.load(f"{w}/full/model/model.safetensors")
    wb = st_numpy.load(f"{w}/split/model/model.safetensors")
    check(la == lb and all(np.array_equal(wa[k], wb[k]) for k in wa),
          "resuming mid-epoch on prepared data gives the same losses and bit-identical weights")
    print("prepare:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
