#!/usr/bin/env python3
"""Errors under mpirun: bad input gets a clear message and the documented exit
code, an error on one rank brings every rank down (no hang), and NaN losses are
skipped then stop the run with exit 3.

Fault injection (the named fault points of src/core/fault_points.hpp):
  LLAMAFT_FAULTS=fail_rank=r      rank r raises a user error at start-up
  LLAMAFT_FAULTS=nan_loss_from=s  from step s on, the last rank's loss is NaN
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

BASE_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def mpirun(args, np_, extra, env=None, timeout=120):
    cmd = launcher.mpirun(np_, [args.llamaft, "train", "--config", args.cfg] + extra)
    t0 = time.time()
    r = subprocess.run(cmd, env=env or BASE_ENV, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr, time.time() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    model = os.path.join(args.workdir, "base")
    subprocess.run([args.llamaft, "init", "--preset", "tiny", "--output", model, "--force"], check=True,
                   capture_output=True)
    data = os.path.join(args.workdir, "data.jsonl")
    with open(data, "w") as f:
        for i in range(16):
            f.write(json.dumps({"input_ids": [(i * 7 + t) % 1000 + 3 for t in range(12)]}) + "\n")
    args.cfg = os.path.join(args.workdir, "train.cfg")
    out = os.path.join(args.workdir, "out")
    with open(args.cfg, "w") as f:
        f.write(f"[model]\npath = {model}\n[data]\npath = {data}\nseq_len = 16\n"
                f"[train]\nglobal_batch_size = 4\nsteps = 3\n[output]\ndir = {out}\nprogress = false\n")

    code, text, _ = mpirun(args, 3, [])
    check(code == 2 and "global_batch_size = 4 is not a multiple" in text and "use global_batch_size in {3, 6" in text,
          f"indivisible global batch at np 3: exit {code}, message lists valid values")

    code, text, _ = mpirun(args, 2, ["--train.lr_schedul", "cosine"])
    check(code == 2 and "did you mean '--train.lr_schedule'" in text, f"option typo under mpirun: exit {code}")

    code, text, _ = mpirun(args, 2, ["--quant.base", "int8"])
    check(code == 2 and "quant.base = int8 needs a frozen base" in text,
          f"quant.base = int8 with full fine-tuning: exit {code}, says what to set")
    code, text, _ = mpirun(args, 2, ["--finetune.method", "qlora", "--quant.base", "int8"])
    check(code == 2 and "qlora quantizes the base to nf4" in text, f"qlora with quant.base = int8: exit {code}")
    code, text, _ = mpirun(args, 2, ["--finetune.method", "lora", "--lora.dropout", "1"])
    check(code == 2 and "lora.dropout = 1 must be below 1" in text, f"lora.dropout = 1: exit {code}")

    # A bitsandbytes-style 4-bit export (uint8 codes + absmax) as the base: a clear error, not a shape mismatch.
    pre = os.path.join(args.workdir, "prequantized")
    shutil.rmtree(pre, ignore_errors=True)
    shutil.copytree(model, pre)
    raw = open(os.path.join(pre, "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    tensors = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        blob, dtype, shape = data[v["data_offsets"][0]:v["data_offsets"][1]], v["dtype"], v["shape"]
        if k == "model.layers.0.self_attn.q_proj.weight":
            numel = shape[0] * shape[1]
            blob, dtype, shape = bytes(numel // 2), "U8", [numel // 2, 1]
            tensors[k + ".absmax"] = ("F32", [numel // 64], bytes(4 * (numel // 64)))
        tensors[k] = (dtype, shape, blob)
    out_header, blobs, off = {}, [], 0
    for k, (dtype, shape, blob) in tensors.items():
        out_header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    hb = json.dumps(out_header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(os.path.join(pre, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    code, text, _ = mpirun(args, 2, ["--finetune.method", "qlora", "--model.path", pre])
    check(code == 2 and "is stored pre-quantized (U8" in text and "give the bf16/fp32 base model" in text,
          f"a pre-quantized (bitsandbytes-style) base: exit {code}, says to give the bf16/fp32 model")

    env = dict(BASE_ENV, LLAMAFT_FAULTS="fail_rank=1")
    code, text, secs = mpirun(args, 2, [], env=env, timeout=60)
    check(code == 2 and "[rank 1/2" in text and "injected failure" in text and secs < 30,
          f"error on rank 1 of 2 brings all ranks down: exit {code} in {secs:.1f}s")

    env = dict(BASE_ENV, LLAMAFT_FAULTS="nan_loss_from=2")
    code, text, _ = mpirun(args, 2, ["--train.steps", "10", "--train.max_nonfinite_skips", "2"], env=env)
    skipped = text.count("update skipped")
    check(code == 3 and "training diverged" in text and skipped == 3,
          f"NaN loss: {skipped} skipped updates then exit {code} (expect 3 skips, exit 3)")

    code, text, _ = mpirun(args, 2, ["--model.path", "/nonexistent/model"])
    check(code == 2 and "does not exist" in text, f"missing model directory: exit {code}")

    print("train errors:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
