#!/usr/bin/env python3
"""LoRA against PEFT (transformers' LlamaForCausalLM + peft's PeftModel as the
oracle), on the tiny preset with adapters on every target module:
  1. logits, loss and every lora_A / lora_B gradient of a random adapter
     (B != 0) match PEFT to 1e-4 relative;
  2. an adapter trained by llamaft (mpirun -np 2) is loaded by
     PeftModel.from_pretrained and gives llamaft's logits;
  3. `llamaft merge` logits equal base + adapter logits;
  4. FSDP invariance: LoRA, QLoRA, LoRA over int8 and LoRA with dropout (the
     masks are keyed by seed, step and dataset row) at np = 1, 2 and 4 give
     the same losses and adapters;
  5. learning: the LoRA and QLoRA runs lower the training loss; step 0 equals
     the base model (B = 0 at init), for QLoRA the base dequantized by
     tests/reference/quant_ref.py.
Exits 77 when peft/transformers are not installed (scripts/setup_python_env.sh).

Usage: check_lora.py --llamaft BIN --dump REF_DUMP --workdir DIR
"""
import argparse
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

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    try:
        import torch
        from peft import PeftModel
        from transformers import LlamaForCausalLM
    except Exception as e:  # noqa: BLE001
        print(f"SKIP: PEFT oracle unavailable ({type(e).__name__}: {e}); run scripts/setup_python_env.sh")
        return 77
    torch.set_num_threads(2)
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    base = f"{w}/base"
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--seed", "8", "--output", base], check=True,
                   capture_output=True)
    cfg = json.load(open(f"{base}/config.json"))
    d, f, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    qd = cfg["num_attention_heads"] * cfg["head_dim"]
    kvd = cfg["num_key_value_heads"] * cfg["head_dim"]
    dims = {"q_proj": (d, qd), "k_proj": (d, kvd), "v_proj": (d, kvd), "o_proj": (qd, d), "gate_proj": (d, f),
            "up_proj": (d, f), "down_proj": (f, d)}
    rng = np.random.default_rng(3)
    r, alpha = 4, 8.0
    adapter = f"{w}/random_adapter"
    os.makedirs(adapter)
    tensors = {}
    for layer in range(L):
        for t in TARGETS:
            mod = "self_attn" if t[0] in "qkvo" else "mlp"
            name = f"base_model.model.model.layers.{layer}.{mod}.{t}"
            fin, fout = dims[t]
            tensors[f"{name}.lora_A.weight"] = rng.normal(0, 0.1, (r, fin)).astype(np.float32)
            tensors[f"{name}.lora_B.weight"] = rng.normal(0, 0.1, (fout, r)).astype(np.float32)
    st_numpy.save(f"{adapter}/adapter_model.safetensors", tensors)
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
               "target_modules": TARGETS, "bias": "none", "base_model_name_or_path": base, "use_rslora": False,
               "fan_in_fan_out": False, "inference_mode": True}, open(f"{adapter}/adapter_config.json", "w"))

    rows = [{"input_ids": rng.integers(0, 1024, size=n).tolist()} for n in (19, 32, 11)]
    rows[1]["labels"] = [-100] * 8 + rows[1]["input_ids"][8:]
    with open(f"{w}/data.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    T = 32
    ids = torch.zeros(3, T, dtype=torch.long)
    labels = torch.full((3, T), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = torch.tensor(row["input_ids"])
        labels[i, :n] = torch.tensor(row.get("labels", row["input_ids"]))

    def peft_model(adapter_dir, trainable=False):
        m = LlamaForCausalLM.from_pretrained(base, torch_dtype=torch.float64, attn_implementation="eager")
        return PeftModel.from_pretrained(m, adapter_dir, is_trainable=trainable)

    def dump(adapter_dir, out, model_dir=base):
        cmd = [a.dump, "--model", model_dir, "--data", f"{w}/data.jsonl", "--seq-len", str(T), "--output", out]
        if adapter_dir:
            cmd += ["--adapter", adapter_dir]
        subprocess.run(cmd, check=True, capture_output=True)
        return st_numpy.load(out)

    # 1. forward and every adapter gradient against PEFT
    ours = dump(adapter, f"{w}/dump.safetensors")
    pm = peft_model(adapter, trainable=True)
    out = pm(input_ids=ids, labels=labels)
    out.loss.backward()
    check(rel(ours["loss"], [out.loss.item()]) < 1e-4, f"loss {ours['loss'][0]:.6f} vs PEFT {out.loss.item():.6f}")
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        e = rel(ours["logits"][i, :n], out.logits[i, :n].detach().numpy())
        check(e < 1e-4, f"logits row {i} vs PEFT (rel {e:.1e})")
    grads = {n.replace(".default", ""): p.grad.numpy() for n, p in pm.named_parameters() if p.requires_grad}
    worst = max(rel(ours["grad." + n], g) for n, g in grads.items())
    missing = [n for n in grads if "grad." + n not in ours]
    check(not missing and len(grads) == 2 * 7 * L and worst < 1e-4,
          f"all {len(grads)} lora_A/lora_B gradients match PEFT (worst rel {worst:.1e})")
    check(not any(k.startswith("grad.model.") or k == "grad.lm_head.weight" for k in ours),
          "the frozen base gets no gradient")

    # 2/4/5. train with llamaft at np = 1, 2, 4
    with open(f"{w}/train.jsonl", "w") as fh:  # arithmetic progressions mod 50: learnable in-context
        for _ in range(32):
            start, step = int(rng.integers(0, 50)), int(rng.integers(1, 5))
            fh.write(json.dumps({"input_ids": [3 + (start + i * step) % 50 for i in range(24)]}) + "\n")
    def method_args(method):  # lora, lora-int8 or qlora
        if method == "lora-int8":
            return ["--finetune.method", "lora", "--quant.base", "int8"]
        if method == "qlora-nodq":
            return ["--finetune.method", "qlora", "--quant.double_quant", "false"]
        if method == "lora-bf16":
            return ["--finetune.method", "lora", "--quant.base", "bf16"]
        if method == "lora-dropout":
            return ["--finetune.method", "lora", "--lora.dropout", "0.2"]
        return ["--finetune.method", method]

    def train(np_, out, steps, lr, data=f"{w}/train.jsonl", batch=4, extra=(), method="lora", load=True):
        subprocess.run([*launcher.mpirun(str(np_), []), a.llamaft, "train", *extra, "--model.path", base,
                        "--data.path", data, "--data.seq_len", "32", "--train.global_batch_size", str(batch),
                        "--train.steps", str(steps), "--train.lr", str(lr), *method_args(method), "--lora.r",
                        "8", "--lora.alpha", "16", "--output.dir", out, "--output.progress", "false"], env=ENV,
                       check=True, capture_output=True)
        losses = [json.loads(x)["loss"] for x in open(f"{out}/metrics.jsonl") if '"loss"' in x]
        return losses, st_numpy.load(f"{out}/adapter/adapter_model.safetensors") if load else None

    # Learning, and step 0 == the base model on the first global batch (B = 0 at init).
    # The demo's digit-reversal task (scripts/make_demo_data.py), which LoRA learns quickly.
    subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "scripts", "make_demo_data.py"), f"{w}/demo",
                    "--train", "2000", "--test", "10"], check=True)
    prompts = [json.loads(x)["prompt_ids"] for x in open(f"{w}/demo/test_prompts.jsonl")][:2]
    sample_arg = ";".join(",".join(map(str, q)) for q in prompts)
    learn, _ = train(2, f"{w}/learn", 100, 3e-3, data=f"{w}/demo/train.jsonl", batch=16,
                     extra=("--train.sample_every", "50", "--train.sample_prompts", sample_arg,
                            "--train.sample_max_new_tokens", "6"))
    samples = [json.loads(x) for x in open(f"{w}/learn/metrics.jsonl") if '"sample_ids"' in x]
    last = {smp["sample"]: smp["sample_ids"] for smp in samples if smp["step"] == 100}
    gen_ok = len(samples) == 4 and len(last) == 2
    for i, q in enumerate(prompts):
        g = json.loads(subprocess.run([a.llamaft, "generate", "--model", base, "--adapter", f"{w}/learn/adapter",
                                       "--prompt-ids", ",".join(map(str, q)), "--max-new-tokens", "6",
                                       "--temperature", "0", "--json"], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
        gen_ok &= last.get(i) == g["ids"]
    check(gen_ok, f"train.sample_every: FSDP-sharded greedy samples at the last step equal `generate --adapter` "
          f"({len(samples)} samples)")
    with open(f"{w}/first_batch.jsonl", "w") as fh:
        fh.writelines(open(f"{w}/demo/train.jsonl").readlines()[:16])
    base_eval = json.loads(subprocess.run([a.llamaft, "eval", "--model", base, "--data", f"{w}/first_batch.jsonl",
                                           "--seq-len", "32"], capture_output=True, text=True, check=True).stdout)
    check(abs(learn[0] - base_eval["loss"]) < 1e-5 * base_eval["loss"] and learn[-1] < 0.8 * learn[0],
          f"LoRA starts at the base model's loss ({learn[0]:.5f} vs {base_eval['loss']:.5f}) and learns "
          f"(-> {learn[-1]:.4f} after 100 steps)")
    # FSDP invariance on a short run (Adam amplifies fp32 noise in the sign of tiny gradients over long ones).
    runs = {np_: train(np_, f"{w}/lora_np{np_}", 5, 1e-3) for np_ in (1, 2, 4)}
    l1 = runs[1][0]
    for np_ in (2, 4):
        lrel = max(abs(x - y) / y for x, y in zip(runs[np_][0], l1))
        wd = max(float(np.max(np.abs(runs[np_][1][k] - runs[1][1][k]))) for k in runs[1][1])
        check(lrel < 1e-5 and wd < 1e-5, f"LoRA np={np_} matches np=1: losses rel {lrel:.1e}, adapters {wd:.1e}")

    # QLoRA and LoRA over int8: the same invariance; QLoRA starts at the loss of
    # the base dequantized by the reference implementation, and learns.
    sys.path.insert(0, os.path.join(HERE, "..", "reference"))
    import quant_ref as Q
    for method in ("qlora", "qlora-nodq", "lora-int8", "lora-bf16", "lora-dropout"):
        runs = {np_: train(np_, f"{w}/{method}_np{np_}", 5, 1e-3, method=method) for np_ in (1, 2, 4)}
        l1 = runs[1][0]
        if method == "lora-dropout":
            plain = [json.loads(x)["loss"] for x in open(f"{w}/lora_np1/metrics.jsonl")]
            cfgj = json.load(open(f"{w}/{method}_np1/adapter/adapter_config.json"))
            check(l1[0] == plain[0] and l1[-1] != plain[-1] and cfgj["lora_dropout"] == 0.2,
                  f"lora.dropout 0.2: step 0 as without (B = 0), then a different trajectory ({l1[-1]:.6f} vs "
                  f"{plain[-1]:.6f} at step 5); lora_dropout in adapter_config.json")
        for np_ in (2, 4):
            lrel = max(abs(x - y) / y for x, y in zip(runs[np_][0], l1))
            wd = max(float(np.max(np.abs(runs[np_][1][k] - runs[1][1][k]))) for k in runs[1][1])
            check(lrel < 1e-5 and wd < 1e-5, f"{method} np={np_} matches np=1: losses rel {lrel:.1e}, adapters {wd:.1e}")
    qlearn, _ = train(2, f"{w}/qlearn", 100, 3e-3, data=f"{w}/demo/train.jsonl", batch=16, method="qlora")
    deq_dir = f"{w}/base_nf4_dequantized"
    shutil.copytree(base, deq_dir)
    tensors = st_numpy.load(f"{deq_dir}/model.safetensors")
    for k, v in tensors.items():
        if k.endswith("_proj.weight"):
            tensors[k] = Q.dequantize_nf4(Q.quantize_nf4(v), v.size).reshape(v.shape)
    st_numpy.save(f"{deq_dir}/model.safetensors", tensors)
    deq_eval = json.loads(subprocess.run([a.llamaft, "eval", "--model", deq_dir, "--data", f"{w}/first_batch.jsonl",
                                          "--seq-len", "32"], capture_output=True, text=True, check=True).stdout)
    check(abs(qlearn[0] - deq_eval["loss"]) < 1e-5 * deq_eval["loss"] and qlearn[0] != learn[0],
          f"QLoRA starts at the loss of the reference-dequantized NF4 base ({qlearn[0]:.6f} vs {deq_eval['loss']:.6f}; "
          f"fp32 base {learn[0]:.6f})")
    q_eval = json.loads(subprocess.run([a.llamaft, "eval", "--model", base, "--quant", "nf4", "--data",
                                        f"{w}/first_batch.jsonl", "--seq-len", "32"], capture_output=True, text=True,
                                       check=True).stdout)
    check(abs(q_eval["loss"] - deq_eval["loss"]) < 1e-6 * deq_eval["loss"],
          f"eval --quant nf4 sees the base as QLoRA trains on it ({q_eval['loss']:.6f} vs {deq_eval['loss']:.6f})")
    check(qlearn[-1] < 0.8 * qlearn[0], f"QLoRA learns: {qlearn[0]:.4f} -> {qlearn[-1]:.4f} after 100 steps "
          f"(LoRA over the fp32 base: {learn[-1]:.4f})")

    # QLoRA with dropout, preempted at step 5 at np = 2 and resumed at np = 4:
    # the checkpoint holds the adapters, the base is re-quantized at load on
    # the new layout, and the run continues as if uninterrupted.
    straight, wa = train(2, f"{w}/q_straight", 10, 1e-3, method="qlora", extra=("--lora.dropout", "0.1"))
    train(2, f"{w}/q_resumed", 10, 1e-3, method="qlora", extra=("--lora.dropout", "0.1", "--train.exit_after_steps", "5"),
          load=False)
    resumed, wb = train(4, f"{w}/q_resumed", 10, 1e-3, method="qlora", extra=("--lora.dropout", "0.1"))
    lrel = max(abs(x - y) / y for x, y in zip(resumed, straight))
    wd = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)
    check(len(resumed) == 10 and lrel < 1e-6 and wd < 1e-6,
          f"QLoRA + dropout checkpointed at np=2, resumed at np=4: losses rel {lrel:.1e}, adapters {wd:.1e}")

    # 2. PEFT loads llamaft's adapter and agrees
    trained = f"{w}/learn/adapter"
    ours = dump(trained, f"{w}/dump_trained.safetensors")
    with torch.no_grad():
        out = peft_model(trained)(input_ids=ids)
    e = max(rel(ours["logits"][i, :len(row["input_ids"])], out.logits[i, :len(row["input_ids"])].numpy())
            for i, row in enumerate(rows))
    check(e < 1e-4, f"PeftModel.from_pretrained loads llamaft's adapter: logits match (rel {e:.1e})")

    # 3. merge
    subprocess.run([a.llamaft, "merge", "--model", base, "--adapter", trained, "--output", f"{w}/merged"], check=True,
                   capture_output=True)
    merged = dump(None, f"{w}/dump_merged.safetensors", model_dir=f"{w}/merged")
    e = max(rel(merged["logits"][i, :len(row["input_ids"])], ours["logits"][i, :len(row["input_ids"])])
            for i, row in enumerate(rows))
    check(e < 1e-5, f"merged model logits equal base + adapter (rel {e:.1e})")
    print("lora:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
