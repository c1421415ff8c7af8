#!/usr/bin/env python3
"""Communication volume per step, from the communicators' own counters
(metrics.jsonl), against the analytic FSDP volume of each strategy at np = 4.

Per micro-batch, with S ranks per shard group and R replicas, P_u the unit's
parameters padded to a multiple of S, and L blocks:
  all-gather (S > 1), bytes this rank contributes = 4 P_u / S per gather:
    full_shard / hybrid_shard: embed, each block twice (forward and backward),
      the head, and the embed again for a tied head;
    shard_grad_op: every unit once (kept from forward to backward);
  reduce-scatter (S > 1), bytes fed = 4 P_u per unit, once (a tied head's
    gradient waits in the embedding's buffer for the embedding backward);
    2 P_u with fsdp.reduce_dtype = bf16;
  all-reduce across replicas (R > 1) = 4 P_u / S per unit, once per step
    (micro-batches accumulate locally first, as DDP's no_sync);
plus per step: 24 bytes of loss/token counts over the world and 8 bytes of
gradient norm over the shard group. With train.param_dtype = bf16 the
gathers carry bf16: ceil(P_u / S / 2) 4-byte words per gather.

Usage: check_comm_volume.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def units(cfg):
    d, f, v, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = cfg["head_dim"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    block = 2 * d + 2 * d * qd + 2 * d * kvd + 3 * d * f
    head = d + (0 if cfg["tie_word_embeddings"] else v * d)
    return v * d, block, head, L


def expected(cfg, strategy, world, group, micro, bf16=False, bf16_reduce=False):
    S = {"full_shard": world, "shard_grad_op": world, "no_shard": 1, "hybrid_shard": group}[strategy]
    R = world // S
    tied = cfg["tie_word_embeddings"]
    pad = lambda n: (n + S - 1) // S * S  # noqa: E731
    embed, block, head, L = (pad(x) if i < 3 else x for i, x in enumerate(units(cfg)))
    ag = rs = ar = 0
    if S > 1:
        gathers = [embed, head] + [block] * L * (1 if strategy == "shard_grad_op" else 2)
        if tied and strategy != "shard_grad_op":
            gathers.append(embed)
        # bf16 params: each shard of P/S values travels as ceil(P/S / 2) 4-byte words
        ag = sum(4 * ((p // S + 1) // 2) if bf16 else 4 * p // S for p in gathers)
        reduces = [embed, head] + [block] * L
        rs = sum((2 if bf16_reduce else 4) * p for p in reduces)
    if R > 1:  # once per step, after local accumulation over the micro-batches; each unit once
        ar = sum(4 * p // S for p in [embed, head] + [block] * L)
    return {"all_gather_bytes": micro * ag, "reduce_scatter_bytes": micro * rs,
            # + 24: token counts and loss; + 8: the gradient norm; + 8: the
            # updated weights' finiteness check (a non-finite update stops the run)
            "all_reduce_bytes": ar + 24 + 8 + 8}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    ok = True
    with open(f"{a.workdir}/data.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"input_ids": [(i * 31 + t) % 1000 + 3 for t in range(16)]}) + "\n")
    world, group, gbatch = 4, 2, 8
    micro = gbatch // world
    for preset in ("tiny", "tiny-tied"):
        model = f"{a.workdir}/{preset}"
        subprocess.run([a.llamaft, "init", "--preset", preset, "--output", model], check=True, capture_output=True)
        cfg = json.load(open(f"{model}/config.json"))
        runs = [(s, False, False) for s in ("full_shard", "shard_grad_op", "no_shard", "hybrid_shard")]
        runs += [("full_shard", True, False), ("hybrid_shard", True, False)]  # train.param_dtype = bf16
        runs += [("full_shard", False, True), ("hybrid_shard", True, True)]   # fsdp.reduce_dtype = bf16
        for strategy, bf16, bf16_reduce in runs:
            tag = ("_bf16" if bf16 else "") + ("_rbf16" if bf16_reduce else "")
            out = f"{a.workdir}/{preset}_{strategy}{tag}"
            subprocess.run(launcher.mpirun(world, [a.llamaft, "train", "--model.path", model,
                            "--data.path", f"{a.workdir}/data.jsonl", "--data.seq_len", "16",
                            "--train.global_batch_size", str(gbatch), "--train.steps", "2",
                            "--fsdp.strategy", strategy, "--fsdp.shard_group_size", str(group),
                            "--output.dir", out, "--output.export", "false", "--output.progress", "false",
                            "--checkpoint.at_end", "false", "--train.param_dtype", "bf16" if bf16 else "fp32",
                            "--fsdp.reduce_dtype", "bf16" if bf16_reduce else "fp32"]),
                           env=ENV, check=True, capture_output=True)
            want = expected(cfg, strategy, world, group, micro, bf16, bf16_reduce)
            for m in (json.loads(l) for l in open(f"{out}/metrics.jsonl")):
                got = {k: m[k] for k in want}
                good = got == want
                ok &= good
                print(f"{'ok  ' if good else 'FAIL'} {preset:9s} {strategy + tag.replace('_', ' '):24s} "
                      f"step {m['step']}: measured {got}"
                      + ("" if good else f" expected {want}"))
    print("communication volume:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
