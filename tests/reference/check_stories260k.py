#!/usr/bin/env python3
"""A real trained tiny Llama through llamaft: karpathy's stories260K (GQA,
tied embeddings, 512-token SentencePiece vocabulary), converted from llama2.c
format to HF with convert_llama2c.py.

0. The oracle first: llama_ref (and transformers, when available) must
   reproduce reference.json's greedy chain from BOS on the converted model,
   so a wrong conversion is never blamed on llamaft.
1. `llamaft generate --prompt-ids 1 --temperature 0 --json` must produce
   reference.json's 345 greedy ids (none is EOS 2, so generate cannot stop
   early) and then BOS 1, where llama2.c's run.c stops; reference.json's ids
   exclude the BOS prompt. Its "text" must be SentencePiece's decode of its
   ids and begin with llama2.c's documented 256-token text. `--prompt TEXT`
   must tokenize like SentencePiece with BOS.
2. `llamaft eval` on the first 200,000 characters of TinyStories, encoded
   with tok512.model as one text and cut into windows of BOS + 511 tokens,
   must equal the PyTorch oracle's mean next-token loss to 1e-4 relative,
   with the same token count.
3. `llamaft eval --dtype bf16` on the same windows against
   llama_ref.forward_bf16, an independent torch emulation of llamaft's bf16
   rounding points: the two may differ only where an fp32 value computed in
   another accumulation order flips a bf16 rounding, so llamaft's bf16 loss
   must sit within 5 sigma of that noise, measured by running the oracle in
   two accumulation orders (see the comment at the check), and must not be
   the fp32 loss.
Exits 77 (skip) when the assets or python sentencepiece are absent.

Usage: check_stories260k.py --llamaft BIN --workdir DIR [--assets DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_llama2c  # noqa: E402
import llama_ref  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
from checks import FAILURES, check  # noqa: E402

SKIP = 77
EVAL_CHARS = 200_000
WINDOW = 511  # tokens after the BOS of each eval window
LOSS_RTOL = 1e-4
# SOURCE.md's indicative 1.50 nats (an unpublished NumPy forward, "windows of
# 511 tokens + BOS") is not reproducible: this windowing gives 1.907 in both
# llama_ref and llamaft, llama2.c-style per-story BOS streams 1.82, per-line
# 1.86-1.93, and its Shakespeare figure (4.26) comes out as 4.76 the same way,
# while greedy decoding reproduces the documented text exactly. So the
# absolute value is only held to an in-distribution band: far below uniform
# (ln 512 = 6.24) and the out-of-distribution Shakespeare figure.
IN_DISTRIBUTION = (1.2, 2.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", default=os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "assets")))
    a = ap.parse_args()
    st = os.path.join(a.assets, "stories260K")
    needed = [os.path.join(st, f) for f in ("stories260K.bin", "tok512.model", "reference.json")]
    needed.append(os.path.join(a.assets, "tinystories", "tiny_stories.txt"))
    absent = [p for p in needed if not os.path.exists(p)]
    if absent:
        print(f"SKIP: assets absent: {', '.join(absent)}")
        return SKIP
    try:
        import sentencepiece as spm
    except ImportError:
        print("SKIP: python sentencepiece is not installed (Debian python3-sentencepiece)")
        return SKIP
    torch.set_num_threads(min(2, torch.get_num_threads()))

    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "stories260K_hf")
    if os.path.isdir(model):
        shutil.rmtree(model)
    convert_llama2c.convert(os.path.join(st, "stories260K.bin"), model, os.path.join(st, "tok512.model"))
    with open(os.path.join(st, "reference.json")) as f:
        ref = json.load(f)
    greedy = ref["greedy_from_bos"]
    want_ids = greedy["ids"]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(st, "tok512.model"))

    # 0. The oracle on the converted model.
    problems = convert_llama2c.verify_greedy(model, os.path.join(st, "reference.json"))
    check(not problems, "llama_ref reproduces reference.json's greedy chain from BOS (conversion and oracle)"
          + (": " + "; ".join(problems) if problems else ""))
    check(sp.decode(want_ids[:256]) == greedy["expected_text_256_tokens"],
          "sentencepiece decode(reference ids[:256]) is llama2.c's documented text")
    hf = llama_ref.transformers_model(model, dtype=torch.float64)
    if hf is not None:
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([greedy["prompt_ids"] + want_ids]), use_cache=False).logits[0]
        pred = logits.argmax(-1).tolist()
        check(pred[:-1] == want_ids and pred[-1] == 1,
              "transformers' LlamaForCausalLM reproduces the greedy chain (and then BOS) on the converted model")
    if FAILURES:
        print("stories260K: FAILED before running llamaft: the conversion or the oracle is wrong")
        return 1

    # 1. Greedy generation.
    cmd = [a.llamaft, "generate", "--model", model, "--prompt-ids", "1", "--max-new-tokens", str(len(want_ids) + 1),
           "--temperature", "0", "--json"]
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check(r.returncode == 0, f"llamaft generate exits 0 (got {r.returncode}) {r.stderr.strip()[-300:]}"):
        got = json.loads(r.stdout.strip().splitlines()[-1])
        ids = got["ids"]
        check(got["prompt_ids"] == [1], f"prompt_ids is [1] (got {got['prompt_ids']})")
        first_diff = next((i for i, (x, y) in enumerate(zip(ids, want_ids)) if x != y), None)
        check(len(ids) >= len(want_ids) and first_diff is None,
              f"the generated ids are reference.json's {len(want_ids)} greedy ids "
              f"(got {len(ids)} ids, first difference at {first_diff})")
        if len(ids) > len(want_ids):
            check(ids[len(want_ids)] == 1, f"then the chain picks BOS 1, where run.c stops (got {ids[len(want_ids)]})")
        check(got["text"] == sp.decode(ids), "llamaft's text is sentencepiece's decode of its ids")
        check(got["text"].startswith(greedy["expected_text_256_tokens"]),
              "llamaft's text begins with llama2.c's documented 256-token greedy text")
    enc = ref["tok512_encode"]
    cmd = [a.llamaft, "generate", "--model", model, "--prompt", enc["text"], "--max-new-tokens", "1",
           "--temperature", "0", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check(r.returncode == 0, f"llamaft generate --prompt exits 0 (got {r.returncode}) {r.stderr.strip()[-300:]}"):
        got = json.loads(r.stdout.strip().splitlines()[-1])
        check(got["prompt_ids"] == enc["ids_with_bos"],
              f"--prompt is tokenized as sentencepiece with BOS (got {got['prompt_ids']})")

    # 2. Eval on real text against the oracle.
    with open(os.path.join(a.assets, "tinystories", "tiny_stories.txt"), encoding="utf-8") as f:
        text = f.read()[:EVAL_CHARS]
    tokens = sp.encode(text)
    windows = [[1] + tokens[i:i + WINDOW] for i in range(0, len(tokens), WINDOW)]
    data = os.path.join(a.workdir, "tinystories_windows.jsonl")
    with open(data, "w") as f:
        for w in windows:
            f.write(json.dumps({"input_ids": w}) + "\n")
    cmd = [a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", str(WINDOW + 1), "--batch-size", "8"]
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if not check(r.returncode == 0, f"llamaft eval exits 0 (got {r.returncode}) {r.stderr.strip()[-300:]}"):
        print(f"stories260K: FAILED ({len(FAILURES)})")
        return 1
    ours = json.loads(r.stdout.strip().splitlines()[-1])

    cfg, params = llama_ref.load_hf(model, dtype=torch.float32)
    total, count = 0.0, 0
    with torch.no_grad():
        full = [w for w in windows if len(w) == WINDOW + 1]
        rest = [w for w in windows if len(w) != WINDOW + 1]
        batches = [full[i:i + 8] for i in range(0, len(full), 8)] + [[w] for w in rest]
        for batch in batches:
            ids = torch.tensor(batch)
            logits = llama_ref.forward(cfg, params, ids).double()  # (B, T, V)
            n = ids.shape[0] * (ids.shape[1] - 1)
            total += llama_ref.hf_loss(logits, ids).item() * n
            count += n
    want = total / count
    rel = abs(ours["loss"] - want) / want
    print(f"eval: {len(windows)} windows of BOS + up to {WINDOW} tokens from {len(text)} characters")
    check(ours["tokens"] == count, f"llamaft eval counts {ours['tokens']} target tokens, the oracle {count}")
    check(rel <= LOSS_RTOL, f"llamaft eval loss {ours['loss']:.6f} vs PyTorch {want:.6f} (rel {rel:.1e} <= {LOSS_RTOL:g})")
    lo, hi = IN_DISTRIBUTION
    check(lo < ours["loss"] < hi, f"the loss is in-distribution for TinyStories ({lo} < {ours['loss']:.4f} < {hi}; "
          "SOURCE.md's indicative 1.50 is not reproducible, see the comment in this script)")
    # 3. bf16 compute against the bf16 oracle.
    cmd = [a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", str(WINDOW + 1), "--batch-size", "8",
           "--dtype", "bf16"]
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check(r.returncode == 0, f"llamaft eval --dtype bf16 exits 0 (got {r.returncode}) {r.stderr.strip()[-300:]}"):
        ours16 = json.loads(r.stdout.strip().splitlines()[-1])
        check(ours16.get("dtype") == "bf16" and "computing in bf16" in r.stderr,
              "eval --dtype bf16 says it computes in bf16 (JSON dtype and stderr)")
        # The bound, from the oracle itself: two implementations with the same
        # rounding points that differ only in the fp32 accumulation order
        # (OpenBLAS or oneDNN's AVX512-BF16/AMX kernels in llamaft, torch here)
        # differ where a value lands on the other side of a bf16 rounding
        # boundary, and each such flip perturbs everything after it by a bf16
        # ulp, which flips more roundings downstream: the difference is a sum
        # of cascades, not the first-order sum of independent flips (that
        # model, sum min(1, d/ulp) (g ulp)^2, predicts 1.5e-5 where two torch
        # accumulation orders differ by 6e-5, and single batches by 10-15 of
        # its sigmas). So its scale is measured where it arises: the oracle is
        # run again with every product accumulated in double (another valid
        # order), the per-batch differences D_b of the summed losses give the
        # variance of one order against another, sum_b D_b^2, and llamaft's
        # order may differ from the oracle's by 5 sigma = 5 sqrt(sum D_b^2) / N.
        # A rounding point missing or added moves the loss by about as much as
        # this noise on a 5-layer model, so the rounding points themselves are
        # checked op by op (tests/unit/test_cpu_bf16.cpp); here it is the
        # whole model, on any CPU.
        # (sum D_b^2 is estimated from every other batch, scaled by 2: the
        # second oracle pass costs as much as the first.)
        total16, sq, sampled = 0.0, 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(batches):
                ids = torch.tensor(batch)
                n = ids.shape[0] * (ids.shape[1] - 1)
                l32 = llama_ref.hf_loss(llama_ref.forward_bf16(cfg, params, ids).double(), ids).item() * n
                total16 += l32
                if i % 2 == 0:
                    l64 = llama_ref.hf_loss(llama_ref.forward_bf16(cfg, params, ids, torch.float64).double(),
                                            ids).item() * n
                    sq += (l64 - l32) ** 2
                    sampled += 1
        want16 = total16 / count
        sigma = (sq * len(batches) / sampled) ** 0.5 / count
        twin = abs(ours16["loss"] - want16)
        spread = abs(want16 - want)
        print(f"eval bf16: llamaft {ours16['loss']:.6f}, bf16 oracle {want16:.6f}, fp32 oracle {want:.6f}: "
              f"|llamaft - bf16 oracle| = {twin:.2e} ({twin / sigma:.1f} sigma), |bf16 oracle - fp32 oracle| = "
              f"{spread:.2e}; accumulation-order sigma {sigma:.2e}")
        check(ours16["tokens"] == count, "eval --dtype bf16 counts the same target tokens")
        check(twin <= 5 * sigma, f"llamaft's bf16 loss is within 5 sigma of accumulation-order noise of the bf16 "
              f"oracle ({twin:.2e} <= {5 * sigma:.2e})")
        check(ours16["loss"] != ours["loss"], "the bf16 loss is not the fp32 loss (bf16 really ran)")
    cmd = [a.llamaft, "generate", "--model", model, "--prompt-ids", "1", "--max-new-tokens", "32", "--temperature",
           "0", "--json", "--dtype", "bf16"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check(r.returncode == 0, f"llamaft generate --dtype bf16 exits 0 (got {r.returncode}) {r.stderr.strip()[-300:]}"):
        got = json.loads(r.stdout.strip().splitlines()[-1])
        check(len(got["ids"]) == 32 and got["text"] == sp.decode(got["ids"]),
              "generate --dtype bf16 gives 32 ids and their sentencepiece decode")

    print("stories260K:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)}): " + "; ".join(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
