#!/usr/bin/env python3
"""LoRA and QLoRA on the real trained model (SmolLM2-135M-Instruct, converted
from its GGUF into the shared cache by scripts/fetch_smollm2.sh), trained at
np 2 by `mpirun -np 2 llamaft train`, against PEFT:

1. LoRA (r 8, every projection): PEFT's PeftModel.from_pretrained loads the
   adapter llamaft wrote onto transformers' LlamaForCausalLM in float64, and
   its loss on held-out TinyStories rows equals `llamaft eval --adapter`'s
   (fp32) within 1e-5 relative; the adapter really moved the loss (more than
   1e-4 relative from the base), so an ignored adapter fails;
2. `llamaft merge` of that adapter: the merged folder's fp32 eval equals
   PEFT's loss within 1e-5 relative (the merged weights are W + s B A
   rounded once to fp32: a relative perturbation of 2^-24 per weight);
3. QLoRA (NF4 base, double quantization): PEFT on the base dequantized by
   tests/reference/quant_ref.py (bitsandbytes' algorithm written from the
   paper and its kernels) plus llamaft's adapter, in float64, equals
   `llamaft eval --quant nf4 --adapter` within 1e-5 relative.

The 1e-5 is the fp32 eval's bound (realmodel_smollm2_exact measures the base
at 3.1e-8 relative from float64): an adapter adds rank-8 products whose
rounding is of the same order.
Exit 77 when the model cannot be fetched or peft/transformers is missing.
Usage: check_smollm2_lora.py --llamaft BIN --fetch scripts/fetch_smollm2.sh --workdir DIR --assets DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402
SKIP = 77
TRAIN_ROWS, EVAL_ROWS, ROW_TOKENS = 8, 4, 64
RTOL = 1e-5
MOVED = 1e-4
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise SystemExit(f"FAIL {cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exit {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--fetch", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", required=True)
    a = ap.parse_args()
    try:
        import torch
        from peft import PeftModel
        from tokenizers import Tokenizer
        from transformers import LlamaForCausalLM
        import llama_ref
        import quant_ref as Q
        import st_numpy
    except ImportError as e:
        print(f"SKIP: needs torch, peft, tokenizers and transformers (scripts/setup_python_env.sh): {e}")
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
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    # Real text, tokenized by HF tokenizers: training rows, then held-out rows.
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    ids = tok.encode(open(stories, encoding="utf-8").read()[:40000], add_special_tokens=False).ids
    cfg = json.load(open(os.path.join(model, "config.json")))
    n = ROW_TOKENS - 1
    rows = [[cfg["bos_token_id"]] + ids[i * n:(i + 1) * n] for i in range(TRAIN_ROWS + EVAL_ROWS)]
    for name, part in (("train", rows[:TRAIN_ROWS]), ("heldout", rows[TRAIN_ROWS:])):
        with open(f"{w}/{name}.jsonl", "w") as f:
            for row in part:
                f.write(json.dumps({"input_ids": row}) + "\n")
    held = torch.tensor(rows[TRAIN_ROWS:])

    def train(out, method_args):
        run([*launcher.mpirun("2", [], quiet=True), a.llamaft, "train", "--model.path", model,
             "--data.path", f"{w}/train.jsonl", "--data.seq_len", str(ROW_TOKENS), "--train.steps", "4",
             "--train.global_batch_size", "4", "--train.micro_batch_size", "2", "--train.lr", "2e-3",
             "--train.warmup_steps", "0", "--lora.r", "8", "--lora.alpha", "16", "--output.progress", "false",
             "--checkpoint.at_end", "false", "--output.dir", out, *method_args])
        return f"{out}/adapter"

    def ours(*extra):
        out = run([a.llamaft, "eval", "--model", model, "--data", f"{w}/heldout.jsonl", "--seq-len", str(ROW_TOKENS),
                   "--batch-size", str(EVAL_ROWS), *extra])
        return json.loads(out.strip().splitlines()[-1])["loss"]

    def peft_loss(base_tensors, adapter):
        m = LlamaForCausalLM.from_pretrained(model, torch_dtype=torch.float64, attn_implementation="eager").eval()
        if base_tensors is not None:
            sd = m.state_dict()
            with torch.no_grad():
                for k, v in base_tensors.items():
                    sd[k].copy_(torch.from_numpy(v).to(torch.float64))
        with torch.no_grad():
            base = llama_ref.hf_loss(m(held).logits, held).item()
            pm = PeftModel.from_pretrained(m, adapter).eval()
            tuned = llama_ref.hf_loss(pm(held).logits, held).item()
        return base, tuned

    # 1. LoRA at np 2, read back by PEFT.
    t0 = time.time()
    adapter = train(f"{w}/lora", ["--finetune.method", "lora"])
    print(f"LoRA trained at np 2 in {time.time() - t0:.0f} s")
    base, want = peft_loss(None, adapter)
    got = ours("--adapter", adapter)
    rel = abs(got - want) / want
    check(abs(want - base) > MOVED * base, f"the trained adapter moves PEFT's held-out loss {base:.6f} -> {want:.6f}")
    check(rel <= RTOL, f"LoRA: llamaft eval --adapter {got:.9f} vs PEFT float64 {want:.9f}: {rel:.1e} <= {RTOL:g}")

    # 2. merge agrees with PEFT.
    merged = f"{w}/merged"
    run([a.llamaft, "merge", "--model", model, "--adapter", adapter, "--output", merged])
    got_m = json.loads(run([a.llamaft, "eval", "--model", merged, "--data", f"{w}/heldout.jsonl", "--seq-len",
                            str(ROW_TOKENS), "--batch-size", str(EVAL_ROWS)]).strip().splitlines()[-1])["loss"]
    rel = abs(got_m - want) / want
    check(rel <= RTOL, f"merge: the merged model's eval {got_m:.9f} vs PEFT {want:.9f}: {rel:.1e} <= {RTOL:g}")

    # 3. QLoRA at np 2: PEFT over the reference-dequantized NF4 base.
    t0 = time.time()
    qadapter = train(f"{w}/qlora", ["--finetune.method", "qlora"])
    print(f"QLoRA trained at np 2 in {time.time() - t0:.0f} s")
    t0 = time.time()
    tensors = st_numpy.load(os.path.join(model, "model.safetensors"))
    deq = {k: Q.dequantize_nf4(Q.quantize_nf4(v), v.size).reshape(v.shape)
           for k, v in tensors.items() if k.endswith("_proj.weight")}
    print(f"reference NF4 round trip of {len(deq)} projections in {time.time() - t0:.0f} s")
    qbase, qwant = peft_loss(deq, qadapter)
    qgot = ours("--quant", "nf4", "--adapter", qadapter)
    rel = abs(qgot - qwant) / qwant
    check(abs(qbase - base) > MOVED * base, f"the NF4 base differs from the fp32 base ({qbase:.6f} vs {base:.6f})")
    check(abs(qwant - qbase) > MOVED * qbase, f"the QLoRA adapter moves PEFT's loss {qbase:.6f} -> {qwant:.6f}")
    check(rel <= RTOL, f"QLoRA: llamaft eval --quant nf4 --adapter {qgot:.9f} vs PEFT float64 over the reference "
          f"NF4 base {qwant:.9f}: {rel:.1e} <= {RTOL:g}")

    print("smollm2 lora:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)}): " + "; ".join(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
