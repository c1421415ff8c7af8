#!/usr/bin/env python3
"""Issue 31 item 1: progress where users look.
  1. `train` at np=2 with stderr to a file (no terminal, as in a Slurm .out):
     rank 0 prints one progress line at the first step, then every
     output.log_every_steps steps and at the last; each line's loss and lr
     equal metrics.jsonl's, and it carries tok/s, MFU, elapsed, ETA, peak mem;
  2. metrics.jsonl's time (unix, within the run's wall-clock window),
     elapsed_s (increasing), epoch (consumed rows / dataset rows) and mfu
     (flops_per_token x tokens_per_s / peak, with flops_per_token computed
     here from config.json by PaLM's formula);
  3. the GEMM peak against torch's own SGEMM on this machine (within 3x);
  4. the banner's trainable and total parameters, full and LoRA, against the
     safetensors' tensor sizes plus r x (in + out) per adapted module;
  5. train.sample_prompts as text (sentencepiece's own ids after BOS, '\\;'
     kept) and as ids (unchanged).
Usage: check_progress.py --llamaft BIN --workdir DIR [--assets DIR]"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import launcher  # noqa: E402
import st_numpy  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
LINE = re.compile(r"^llamaft train: step (\d+)/(\d+) \(([\d.]+)%\) loss ([\d.]+) lr ([\d.e+-]+) ([\d.]+[kM]?) tok/s "
                  r"MFU ([\d.]+)% elapsed ([\d:]+) ETA ([\d:?]+) peak mem (\d+) MiB \(rss (\d+) MiB\)$")


def train(a, np_, out, extra, stderr_path):
    cmd = launcher.mpirun(np_, [a.llamaft, "train", "--config", a.cfg, "--output.dir", out] + extra)
    with open(stderr_path, "w") as err:
        r = subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err, timeout=300)
    return r.returncode, open(stderr_path).read()


def palm_flops_per_token(c, seq, lora_params=None):
    d, L = c["hidden_size"], c["num_hidden_layers"]
    hd = c.get("head_dim", d // c["num_attention_heads"])
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    n = L * (2 * d * q + 2 * d * kv + 3 * d * c["intermediate_size"]) + c["vocab_size"] * d
    attn = 12 * L * seq * q
    return 6 * n + attn if lora_params is None else 4 * n + 6 * lora_params + attn


def check_progress_and_metrics(a, w, cfg_json):
    out = f"{w}/full"
    t0 = time.time()
    rc, err = train(a, 2, out, ["--train.steps", "25", "--output.log_every_steps", "10"], f"{w}/full.err")
    t1 = time.time()
    check(rc == 0, f"train np=2 exits 0 ({rc})")
    lines = [l for l in err.splitlines() if l.startswith("llamaft train: step ") and " tok/s " in l]
    steps = [int(LINE.match(l).group(1)) if LINE.match(l) else -1 for l in lines]
    check(steps == [1, 10, 20, 25], f"progress lines at steps 1, 10, 20, 25 with every field ({steps})")
    check("\r" not in err, "no carriage returns in a file")
    metrics = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if '"loss"' in l]
    by_step = {m["step"]: m for m in metrics}
    for l in lines:
        m = LINE.match(l)
        if not m:
            continue
        s = int(m.group(1))
        check(m.group(2) == "25" and abs(float(m.group(4)) - by_step[s]["loss"]) < 1e-4 and
              abs(float(m.group(5)) - by_step[s]["lr"]) <= 1e-3 * by_step[s]["lr"],
              f"step {s}: the line's loss and lr are metrics.jsonl's")
    eta_last = LINE.match(lines[-1]).group(9) if lines and LINE.match(lines[-1]) else "?"
    check(eta_last == "0:00", f"ETA 0:00 at the last step ({eta_last})")
    info = json.load(open(f"{out}/run_info.json"))
    fpt = palm_flops_per_token(cfg_json, 32)
    check(abs(info["mfu"]["flops_per_token"] - fpt) <= 1e-9 * fpt,
          f"flops per token {info['mfu']['flops_per_token']:.6g} = PaLM's 6N + 12LTd from config.json ({fpt:.6g})")
    peak = info["mfu"]["peak_flops"]
    times = [m["time"] for m in metrics]
    check(all(t0 - 1 <= t <= t1 + 1 for t in times), "metrics time is unix seconds within the run")
    el = [m["elapsed_s"] for m in metrics]
    check(all(b > x for x, b in zip(el, el[1:])) and el[-1] < t1 - t0, "elapsed_s increases and is within the run")
    check(all(abs(m["epoch"] - m["step"] * 4 / 64) < 1e-12 for m in metrics), "epoch = step x 4 rows / 64 rows")
    worst = max(abs(m["mfu"] - fpt * m["tokens_per_s"] / peak) / m["mfu"] for m in metrics)
    check(0 < min(m["mfu"] for m in metrics) and max(m["mfu"] for m in metrics) < 1 and worst < 1e-9,
          f"mfu = flops/token x tokens/s / peak, in (0, 1) (worst relative difference {worst:.1e})")
    # torch's SGEMM on one thread (its own GEMM, not OpenBLAS), two at once as the ranks measured
    try:
        import torch
        torch.set_num_threads(1)
        x = torch.randn(512, 512)
        best = 0
        for _ in range(30):
            s = time.perf_counter()
            x @ x.T
            best = max(best, 2 * 512 ** 3 / (time.perf_counter() - s))
        ratio = peak / (2 * best)
        print(f"peak {peak / 1e9:.1f} GFLOP/s over 2 ranks; torch SGEMM 512^3 {best / 1e9:.1f} GFLOP/s on one thread")
        check(0.33 < ratio < 3, f"the measured peak is torch SGEMM's on this machine, within 3x (ratio {ratio:.2f})")
    except ImportError:
        print("note: no torch; the peak is not compared")
    m = re.search(r"(\d+) trainable of (\d+) parameters", err)
    total = sum(v.size for v in st_numpy.load(f"{w}/base/model.safetensors").values())
    check(m and int(m.group(1)) == total and int(m.group(2)) == total, f"banner: {total} trainable of {total} (full)")


def check_lora_banner(a, w, cfg_json):
    rc, err = train(a, 1, f"{w}/lora", ["--train.steps", "2", "--finetune.method", "lora", "--lora.r", "4",
                                        "--lora.targets", "q_proj,v_proj,down_proj"], f"{w}/lora.err")
    d, L = cfg_json["hidden_size"], cfg_json["num_hidden_layers"]
    hd = cfg_json.get("head_dim", d // cfg_json["num_attention_heads"])
    q, kv, inter = cfg_json["num_attention_heads"] * hd, cfg_json["num_key_value_heads"] * hd, cfg_json["intermediate_size"]
    adapters = L * 4 * ((d + q) + (d + kv) + (inter + d))
    base = sum(v.size for v in st_numpy.load(f"{w}/base/model.safetensors").values())
    m = re.search(r"(\d+) trainable of (\d+) parameters", err)
    check(rc == 0 and m and int(m.group(1)) == adapters and int(m.group(2)) == base + adapters,
          f"banner under LoRA: {adapters} trainable of {base + adapters} ({m.group(0) if m else err[-300:]})")
    info = json.load(open(f"{w}/lora/run_info.json"))
    fpt = palm_flops_per_token(cfg_json, 32, adapters)
    check(abs(info["mfu"]["flops_per_token"] - fpt) <= 1e-9 * fpt, "LoRA flops per token = 4N + 6 N_lora + 12LTd")


def check_sample_prompts(a, w):
    tok = os.path.join(a.assets, "stories260K", "tok512.model")
    if not os.path.exists(tok):
        print("note: no shared assets; text sample prompts not checked")
        return
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tok)
    rc, err = train(a, 2, f"{w}/samples", ["--train.steps", "2", "--model.tokenizer", tok, "--train.sample_every", "2",
                                           "--train.sample_max_new_tokens", "3",
                                           "--train.sample_prompts", "Once upon a time; The cat\\;dog"],
                    f"{w}/samples.err")
    samples = [json.loads(l) for l in open(f"{w}/samples/metrics.jsonl") if '"sample_ids"' in l]
    want = [[1] + sp.encode("Once upon a time"), [1] + sp.encode("The cat;dog")]
    check(rc == 0 and [s["prompt_ids"] for s in samples] == want and
          [s.get("prompt") for s in samples] == ["Once upon a time", "The cat;dog"],
          f"text prompts: BOS + sentencepiece's ids, '\\;' kept ({[s['prompt_ids'] for s in samples]})")
    def dec(ids):
        out, run = "", []
        for i in ids:
            if i < sp.get_piece_size():
                run.append(i)
            else:
                out, run = out + sp.decode(run) + f"[{i}]", []
        return out + sp.decode(run)
    check(all(s.get("sample_text", "") == dec(s["sample_ids"]) for s in samples),
          "samples decoded as sentencepiece does (ids past its vocabulary as [id])")
    rc, err = train(a, 1, f"{w}/samples_ids", ["--train.steps", "2", "--train.sample_every", "2",
                                               "--train.sample_prompts", "1,12,13;1,15"], f"{w}/samples_ids.err")
    samples = [json.loads(l) for l in open(f"{w}/samples_ids/metrics.jsonl") if '"sample_ids"' in l]
    check(rc == 0 and [s["prompt_ids"] for s in samples] == [[1, 12, 13], [1, 15]], "id prompts as given")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "3", "--output", f"{w}/base"], check=True,
                   capture_output=True)
    rng = np.random.default_rng(0)
    with open(f"{w}/data.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"input_ids": rng.integers(3, 500, size=32).tolist()}) + "\n")
    a.cfg = f"{w}/train.cfg"
    with open(a.cfg, "w") as f:
        f.write(f"[model]\npath = {w}/base\n[data]\npath = {w}/data.jsonl\nseq_len = 32\n"
                "[train]\nglobal_batch_size = 4\nlr = 1e-3\n[checkpoint]\nat_end = false\n[output]\nexport = false\n")
    cfg_json = json.load(open(f"{w}/base/config.json"))
    check_progress_and_metrics(a, w, cfg_json)
    check_lora_banner(a, w, cfg_json)
    check_sample_prompts(a, w)
    print("progress:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
