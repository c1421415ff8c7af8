#!/usr/bin/env python3
"""The torch 2.x peer of bench/run_torch2_bench.sh: Hugging Face's
LlamaForCausalLM (sdpa attention) trained the way a CPU user would train it
today, on the same HF model directory and the same token batch llamaft reads,
with torch.optim.AdamW, clip_grad_norm_(1.0) and zero_grad every step.
Prints one JSON line.

Modes:
  fp32      eager fp32
  bf16      eager, torch.autocast("cpu", dtype=torch.bfloat16)
  compile   torch.compile(model), fp32 (inductor)
  lora      PEFT LoRA (r, alpha, every linear layer), fp32 base
  lora-bf16 the same under bf16 autocast
  qlora     PEFT LoRA over a bitsandbytes NF4 base (double quantization, fp32 compute)
  eval      forward passes only (no_grad, model.eval()), fp32: `llamaft eval`'s peer
  eval-bf16 the same under bf16 autocast

Usage: torch2_peer.py --model DIR --data FILE --mode MODE --batch B --seq T --steps N [--warmup W]
                      [--lora-r 16 --lora-alpha 32] [--max-seconds S]
--max-seconds stops timing after the first timed step that ends past S
seconds (a mode that takes minutes per step is still measured, on fewer steps).
"""
import argparse
import json
import os
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--mode", required=True,
                   choices=["fp32", "bf16", "compile", "lora", "lora-bf16", "qlora", "eval", "eval-bf16"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--max-seconds", type=float, default=0)
    a = p.parse_args()

    import torch
    import transformers
    from transformers import LlamaForCausalLM

    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    kw = dict(torch_dtype=torch.float32, attn_implementation="sdpa")
    if a.mode == "qlora":
        from transformers import BitsAndBytesConfig
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
        kw["device_map"] = {"": "cpu"}
    model = LlamaForCausalLM.from_pretrained(a.model, **kw)
    model.config.use_cache = False
    if a.mode in ("lora", "lora-bf16", "qlora"):
        import peft
        cfg = peft.LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.0, bias="none",
                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"], task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    if a.mode == "compile":
        model = torch.compile(model)

    rows = []
    with open(a.data) as f:
        for line in f:
            rows.append(json.loads(line)["input_ids"][: a.seq])
            if len(rows) == a.batch:
                break
    ids = torch.tensor(rows, dtype=torch.long)
    autocast = a.mode in ("bf16", "lora-bf16", "eval-bf16")
    evaluating = a.mode.startswith("eval")
    if evaluating:
        model.eval()

    def step():
        if evaluating:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return float(model(input_ids=ids, labels=ids).loss)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    warm_s = time.perf_counter() - t0
    times, losses = [], []
    start = time.perf_counter()
    for _ in range(a.steps):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
        if a.max_seconds and time.perf_counter() - start > a.max_seconds:
            break
    step_s = sum(times) / len(times)
    print(json.dumps({
        "impl": f"torch {torch.__version__} transformers {transformers.__version__}", "mode": a.mode,
        "threads": threads, "batch": a.batch, "seq": a.seq, "steps_timed": len(times), "warmup_s": round(warm_s, 3),
        "step_s": round(step_s, 4), "tokens_per_s": round(a.batch * a.seq / step_s, 1),
        "loss_first": losses[0], "trainable_params": sum(q.numel() for q in params),
        "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }))


if __name__ == "__main__":
    sys.exit(main())
