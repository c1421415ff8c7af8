#!/usr/bin/env python3
"""Interop with today's Hugging Face releases (run by scripts/interop_check.sh
in the venv of scripts/setup_interop_env.sh: torch 2.15, transformers 5.24,
peft 0.21.2). Not in CI: that venv is 5.6 GB of wheels.

1. transformers 5 writes a Llama 3.1-style model (llama3 RoPE) in bf16,
   sharded with model.safetensors.index.json.
2. `llamaft eval` equals transformers' fp32 loss on it within 1e-5 relative.
3. LoRA training (mpirun -np 2); PeftModel.from_pretrained loads the adapter
   with no warning, and its loss equals `llamaft eval --adapter` within 1e-5.
4. `llamaft merge`'s output loads in transformers with the same loss.
5. A full fine-tuning export loads with no missing or unexpected keys, and
   its loss equals `llamaft eval` on it.

Usage: check_interop.py --llamaft BIN --workdir DIR
"""
import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings

import torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

TOL = 1e-5
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(f"{cmd[0]} exited {r.returncode}")
    return r.stdout + r.stderr


def llamaft_loss(a, model, data, extra=()):
    out = run([a.llamaft, "eval", "--model", model, "--data", data, "--seq-len", "128", *extra])
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])["loss"]


def hf_loss(model, rows):
    ids = torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits.float()
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             ids[:, 1:].reshape(-1)).item()


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    import peft
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    torch.manual_seed(0)

    # 1. A model as transformers 5 saves it.
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=131072,
                      rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192})
    base = LlamaForCausalLM(cfg)
    with torch.no_grad():  # sharper attention, so the positional encoding shows in the loss
        for layer in base.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    base_dir = os.path.join(a.workdir, "base")
    base.to(torch.bfloat16).save_pretrained(base_dir, max_shard_size="300KB")
    files = sorted(os.listdir(base_dir))
    written = json.load(open(os.path.join(base_dir, "config.json")))
    check("model.safetensors.index.json" in files and "rope_parameters" in written and "rope_theta" not in written,
          f"transformers {transformers.__version__} wrote a sharded bf16 model with rope_parameters: {files}")

    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, cfg.vocab_size, (128,), generator=g).tolist() for _ in range(8)]
    data = os.path.join(a.workdir, "rows.jsonl")
    with open(data, "w") as f:
        for r in rows:
            f.write(json.dumps({"input_ids": r}) + "\n")

    # 2. eval against transformers in fp32 on the same bf16 files.
    ref = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    want = hf_loss(ref, rows)
    got = llamaft_loss(a, base_dir, data)
    rel = abs(got - want) / want
    check(rel <= TOL, f"llamaft eval {got:.8f} vs transformers fp32 {want:.8f}: rel {rel:.1e}")

    # 3. LoRA training, then PEFT.
    lora_out = os.path.join(a.workdir, "lora_run")
    run([*launcher.mpirun("2", []), a.llamaft, "train", "--model.path", base_dir, "--data.path", data,
         "--data.seq_len", "128", "--finetune.method", "lora", "--lora.r", "8", "--lora.alpha", "16",
         "--train.steps", "4", "--train.global_batch_size", "4", "--train.lr", "1e-2", "--output.dir", lora_out,
         "--output.progress", "false"])
    adapter = os.path.join(lora_out, "adapter")
    adapter_keys = sorted(json.load(open(os.path.join(adapter, "adapter_config.json"))))
    from peft import LoraConfig, PeftModel, get_peft_model

    def load_adapter(path):
        collect = Collect()
        for name in ("peft", "transformers"):
            logging.getLogger(name).addHandler(collect)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32), path)
        for name in ("peft", "transformers"):
            logging.getLogger(name).removeHandler(collect)
        return model, sorted(set(str(w.message) for w in caught) | set(collect.records))

    # What PEFT says when it loads an adapter it saved itself is the baseline
    # (this release pair has its own deprecation notices); ours adds nothing.
    own_dir = os.path.join(a.workdir, "peft_own_adapter")
    get_peft_model(LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                   LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(own_dir)
    _, baseline = load_adapter(own_dir)
    peft_model, said = load_adapter(adapter)
    extra = [w for w in said if w not in baseline]
    check(not extra, f"PeftModel.from_pretrained loads our adapter with no warning of its own ({extra[:3]}; PEFT's "
                     f"own adapter gives {len(baseline)}: {baseline[:2]}); keys {adapter_keys}")
    peft_loss = hf_loss(peft_model, rows)
    ours = llamaft_loss(a, base_dir, data, ["--adapter", adapter])
    rel = abs(ours - peft_loss) / peft_loss
    check(rel <= TOL and abs(peft_loss - want) / want > 10 * TOL,
          f"llamaft eval --adapter {ours:.8f} vs PEFT {peft_loss:.8f}: rel {rel:.1e} (base {want:.8f})")

    # 4. merge.
    merged = os.path.join(a.workdir, "merged")
    run([a.llamaft, "merge", "--model", base_dir, "--adapter", adapter, "--output", merged])
    m, info = LlamaForCausalLM.from_pretrained(merged, dtype=torch.float32, output_loading_info=True)
    merged_loss = hf_loss(m, rows)
    rel = abs(merged_loss - peft_loss) / peft_loss
    bad = {k: v for k, v in info.items() if v}
    check(rel <= TOL and not bad, f"merge output in transformers {merged_loss:.8f} vs PEFT {peft_loss:.8f}: "
                                  f"rel {rel:.1e}; loading info {bad or 'clean'}")

    # 5. full fine-tuning export.
    full_out = os.path.join(a.workdir, "full_run")
    run([*launcher.mpirun("2", []), a.llamaft, "train", "--model.path", base_dir, "--data.path", data,
         "--data.seq_len", "128", "--train.steps", "3", "--train.global_batch_size", "4", "--train.lr", "1e-3",
         "--output.dir", full_out, "--output.progress", "false"])
    exported = os.path.join(full_out, "model")
    m, info = LlamaForCausalLM.from_pretrained(exported, dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    full_hf = hf_loss(m, rows)
    full_ours = llamaft_loss(a, exported, data)
    rel = abs(full_hf - full_ours) / full_ours
    check(not bad and rel <= TOL, f"full fine-tuning export: loading info {bad or 'clean'}; transformers "
                                  f"{full_hf:.8f} vs llamaft eval {full_ours:.8f}: rel {rel:.1e}")
    print("interop:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
