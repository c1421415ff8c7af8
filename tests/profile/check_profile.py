#!/usr/bin/env python3
"""Issue 32 item 1: train.profile, the step's time by op family.
  1. Profiling changes nothing: the losses of a profiled run equal an
     unprofiled one's bit for bit (fp32, np 1 and 2).
  2. The counted work equals what the model's shapes say, computed here from
     config.json alone:
       - GEMM FLOPs per step = 6 x (every linear weight and the LM head) x
         the rank's tokens (forward, input gradient, weight gradient);
       - attention FLOPs per step = 3.5 x 4 x head_dim x heads x layers x
         rows x T(T+1)/2 causal pairs (FlashAttention-2's backward is 2.5
         forwards);
       - AdamW moves 28 bytes per parameter of the rank's shard;
       - under train.param_dtype = bf16 the GEMMs are bf16 GEMMs, with the
         same FLOPs.
  3. The table adds up: the families' time plus the time outside the backend
     is the step's time; profile.json's shares are the seconds over it.
  4. The CUDA backend's refusal is in the key's text (no GPU here).
Usage: check_profile.py --llamaft BIN --workdir DIR"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def train(a, np_, out, extra):
    cmd = launcher.mpirun(np_, [a.llamaft, "train", "--config", a.cfg, "--output.dir", out] + extra)
    r = subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        print(r.stderr[-2000:])
    return r.returncode, r.stderr


def losses(out):
    return [json.loads(l)["loss"] for l in open(f"{out}/metrics.jsonl") if '"loss"' in l]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "5", "--output", f"{w}/base"], check=True,
                   capture_output=True)
    seq, batch, steps = 32, 4, 4
    rng = np.random.default_rng(1)
    with open(f"{w}/data.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"input_ids": rng.integers(3, 500, size=seq).tolist()}) + "\n")
    a.cfg = f"{w}/train.cfg"
    with open(a.cfg, "w") as f:
        f.write(f"[model]\npath = {w}/base\n[data]\npath = {w}/data.jsonl\nseq_len = {seq}\n"
                f"[train]\nglobal_batch_size = {batch}\nsteps = {steps}\nlr = 1e-3\n"
                "[checkpoint]\nat_end = false\n[output]\nexport = false\n")
    c = json.load(open(f"{w}/base/config.json"))
    d, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    hd = c.get("head_dim", d // c["num_attention_heads"])
    H, KV, F = c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
    gemm_weights = L * (d * H * hd + 2 * d * KV * hd + H * hd * d + 3 * d * F) + V * d
    params = L * (d * H * hd + 2 * d * KV * hd + H * hd * d + 3 * d * F + 2 * d) + d + V * d
    if not c.get("tie_word_embeddings", False):
        params += V * d

    for np_ in (1, 2):
        rc0, _ = train(a, np_, f"{w}/plain{np_}", [])
        rc1, err = train(a, np_, f"{w}/prof{np_}", ["--train.profile", "true"])
        check(rc0 == 0 and rc1 == 0, f"np {np_}: plain and profiled runs exit 0 ({rc0}, {rc1})")
        if rc0 or rc1:
            continue
        check(losses(f"{w}/plain{np_}") == losses(f"{w}/prof{np_}"),
              f"np {np_}: profiled losses equal the plain run's bit for bit")
        prof = json.load(open(f"{w}/prof{np_}/profile.json"))
        fam = {f["family"]: f for f in prof["families"]}
        check(prof["steps"] == steps - 1, f"np {np_}: {prof['steps']} steps profiled (all but the first)")
        rows = batch // np_
        want_gemm = 6.0 * gemm_weights * rows * seq
        got_gemm = fam.get("gemm_f32", {}).get("gflop_per_step", 0) * 1e9
        check(abs(got_gemm - want_gemm) <= 1e-9 * want_gemm,
              f"np {np_}: GEMM FLOPs per step {got_gemm:.6g} = 6 x {gemm_weights} weights x {rows * seq} tokens")
        want_attn = 3.5 * 4.0 * hd * H * L * rows * seq * (seq + 1) / 2
        got_attn = fam.get("attention", {}).get("gflop_per_step", 0) * 1e9
        check(abs(got_attn - want_attn) <= 1e-9 * want_attn,
              f"np {np_}: attention FLOPs per step {got_attn:.6g} = 3.5 x 4 hd H L rows T(T+1)/2 ({want_attn:.6g})")
        shard = params / np_
        got_adam = fam.get("adamw", {}).get("gb_per_step", 0) * 1e9
        # FSDP pads each unit's flat buffer to a multiple of the ranks: at most (np - 1) per unit.
        check(28 * shard <= got_adam + 1e-6 <= 28 * (shard + (L + 2) * np_),
              f"np {np_}: AdamW moves 28 bytes x the {shard:.0f} parameters of the shard ({got_adam:.0f} B)")
        inside = sum(f["seconds_per_step"] for f in prof["families"])
        check(abs(inside + prof["outside_backend_s"] - prof["step_s"]) <= 1e-9 + 1e-9 * prof["step_s"]
              and inside <= prof["step_s"] * (1 + 1e-9),
              f"np {np_}: families {inside:.4f} s + outside {prof['outside_backend_s']:.4f} s = step {prof['step_s']:.4f} s")
        check(all(abs(f["share_of_step"] - f["seconds_per_step"] / prof["step_s"]) < 1e-12 for f in prof["families"]),
              f"np {np_}: each share is its seconds over the step")
        lim = prof["limits_per_rank"]
        check(lim["fp32_gemm_gflop_per_s"] > 0 and lim["copy_gb_per_s"] > 0 and lim["ranks"] == np_,
              f"np {np_}: limits measured ({lim['fp32_gemm_gflop_per_s']:.1f} GFLOP/s, {lim['copy_gb_per_s']:.1f} GB/s)")
        check("profile of rank 0 over" in err and "outside the backend" in err, f"np {np_}: the table is printed")
        m = [json.loads(l) for l in open(f"{w}/prof{np_}/metrics.jsonl") if '"loss"' in l]
        check(all("seconds" in m_["device"]["ops"]["gemm_f32"] for m_ in m), f"np {np_}: metrics.jsonl carries the counts")

    rc, _ = train(a, 1, f"{w}/bf16", ["--train.profile", "true", "--train.param_dtype", "bf16"])
    if rc == 0:
        fam = {f["family"]: f for f in json.load(open(f"{w}/bf16/profile.json"))["families"]}
        bf = sum(fam.get(k, {}).get("gflop_per_step", 0) for k in ("gemm_bf16", "gemm_bf16_f32out")) * 1e9
        f32 = fam.get("gemm_f32", {}).get("gflop_per_step", 0) * 1e9
        want = 6.0 * gemm_weights * batch * seq
        check(abs(bf + f32 - want) <= 1e-9 * want and bf >= 0.99 * want,
              f"bf16: the GEMMs are bf16 GEMMs ({bf:.6g} of {want:.6g} FLOPs)")
    else:
        check(False, f"bf16 profiled run exits 0 ({rc})")
    h = subprocess.run([a.llamaft, "train", "--help"], capture_output=True, text=True).stdout
    block = h.split("\n[train]\n", 1)[-1]
    check("  profile = false" in block and "profile.json (cpu backend" in block,
          "train --help describes train.profile and its backend")
    print("profile:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
