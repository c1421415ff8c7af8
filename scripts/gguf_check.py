#!/usr/bin/env python3
"""The engine check behind scripts/gguf_check.sh: llamaft's GGUF files run in
llama.cpp itself (llama-cpp-python, built from source), against llamaft.

1. export: SmolLM2-135M-Instruct (base) in every outtype and the
   fine-tuned-then-merged model in f32, f16, q8_0, q4_k_m; time and size;
2. llama.cpp's own tools on the same folder (when a Python with torch >= 2.1
   is given): convert_hf_to_gguf.py --outtype f32/f16/bf16/q8_0 and
   llama_model_quantize (llama-quantize) of its f32 file to q4_0/q4_k_m
   write the same metadata (general.name aside) and the same tensor bytes;
3. the tokenizer and the chat template: llama.cpp tokenizes TinyStories
   lines as `llamaft tokenize` does, and renders a conversation with the
   GGUF's template to the ids `llamaft generate --prompt` feeds the model;
4. greedy decoding, 32 tokens from 3 prompts, base and merged: f32 GGUF in
   llama.cpp == `llamaft generate` on the folder; f16 GGUF == `llamaft
   generate` on `llamaft convert` of that file (the same f16-rounded
   weights), and agreement with the fp32 folder is reported;
5. perplexity on held-out TinyStories rows: llama.cpp on each GGUF vs
   `llamaft eval` on the folder: f32 within 0.1%, q8_0 within 1%, q4_k_m
   within 10% (stated margins), and vs `llamaft eval` of the dequantized
   file (`llamaft convert`), which isolates the engine's own arithmetic.
Prints a report and writes WORKDIR/gguf_check.json; exit 1 on any failure.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

FAILURES = []


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def run(args, env=None):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


class Engine:
    """One GGUF loaded in llama.cpp: fp32 KV cache, no flash attention, all logits."""

    def __init__(self, path, threads, n_ctx=512):
        import llama_cpp
        # llama.cpp 0c1e57098 (llama-cpp-python 0.3.36) segfaults on this AMX machine when it evaluates a
        # batch of more than one token through a quantized file, its own converter's q8_0 and llama-quantize's
        # q4_k_m included (2026-12-07; n_batch 32 and 256 crash, 1 runs): quantized files go one token at a time.
        quantized = any(q in os.path.basename(path) for q in ("q8_0", "q4_0", "q4_k_m"))
        n_batch = 1 if quantized else n_ctx
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, logits_all=True,
                                   n_threads=threads, n_threads_batch=threads, verbose=False, type_k=0, type_v=0,
                                   flash_attn=False)

    def greedy(self, prompt, n, eos):
        self.llm.reset()
        self.llm.eval(prompt)
        out = []
        for _ in range(n):
            tok = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            out.append(tok)
            if tok in eos:
                break
            self.llm.eval([tok])
        return out

    def nll(self, row):
        self.llm.reset()
        self.llm.eval(row)
        lg = np.asarray(self.llm.scores[:len(row) - 1], dtype=np.float64)
        m = lg.max(axis=1, keepdims=True)
        lse = np.log(np.exp(lg - m).sum(axis=1)) + m[:, 0]
        return float((lse - lg[np.arange(len(row) - 1), row[1:]]).sum()), len(row) - 1


def gguf_reader(path):
    import gguf
    r = gguf.GGUFReader(path)
    kv = {k: (gguf.GGUFValueType(f.types[0]).name, f.contents()) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: (t.tensor_type.name, np.asarray(t.data).tobytes()) for t in r.tensors}
    return kv, tensors, [t.name for t in r.tensors]


def compare_files(ours, theirs, label, ignore_keys=("general.name", "general.basename", "general.finetune")):
    kv_a, t_a, order_a = gguf_reader(ours)
    kv_b, t_b, order_b = gguf_reader(theirs)
    keys = sorted((set(kv_a) | set(kv_b)) - set(ignore_keys))
    kv_diff = [k for k in keys if kv_a.get(k) != kv_b.get(k)]
    names_equal = sorted(t_a) == sorted(t_b)
    t_diff = [n for n in t_a if n in t_b and t_a[n] != t_b[n]]
    types = {}
    for n, (ty, _) in t_a.items():
        types[ty] = types.get(ty, 0) + 1
    ok = check(not kv_diff and names_equal and not t_diff,
               f"{label}: metadata {'identical' if not kv_diff else 'DIFFERS in ' + ', '.join(kv_diff[:6])} "
               f"(general.name aside), {len(t_a)} tensors {'bit-identical' if names_equal and not t_diff else 'DIFFER: ' + ', '.join(t_diff[:4])} "
               f"{types}; tensor order {'the same' if order_a == order_b else 'differs (ours: the loader order)'}")
    return ok


def rows_of(llamaft, tokenizer_json, text_path, workdir, seq, n_rows):
    text = open(text_path, encoding="utf-8").read()
    one = os.path.join(workdir, "heldout.jsonl")
    with open(one, "w") as f:
        f.write(json.dumps(text) + "\n")
    ids = json.loads(run([llamaft, "tokenize", "--tokenizer", tokenizer_json, "--input", one, "--json-lines"])
                     .strip().splitlines()[0])["ids"]
    rows = [ids[i * seq:(i + 1) * seq] for i in range(min(n_rows, len(ids) // seq))]
    path = os.path.join(workdir, "heldout_rows.jsonl")
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({"input_ids": r}) + "\n")
    return rows, path


def llamaft_ppl(llamaft, model, rows_path, seq, threads):
    out = run([llamaft, "eval", "--model", model, "--data", rows_path, "--seq-len", str(seq), "--threads", str(threads)])
    j = json.loads(out.strip().splitlines()[-1])
    return j["ppl"], j["loss"], j["tokens"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--model", required=True, help="SmolLM2-135M-Instruct HF folder")
    ap.add_argument("--merged", required=True, help="the fine-tuned, merged folder (no tokenizer files)")
    ap.add_argument("--heldout", required=True, help="held-out text")
    ap.add_argument("--llama-src", required=True, help="vendor/llama.cpp of the llama-cpp-python sdist")
    ap.add_argument("--convert-python", default="", help="a Python with torch >= 2.1 for convert_hf_to_gguf.py")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rows", type=int, default=24)
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.llama_src, "gguf-py"))
    import llama_cpp
    os.makedirs(a.workdir, exist_ok=True)
    report = {"llama_cpp_python": llama_cpp.__version__, "system": llama_cpp.llama_print_system_info().decode()}
    print(f"llama-cpp-python {llama_cpp.__version__}; {report['system'].strip()}")
    tok_json = os.path.join(a.model, "tokenizer.json")

    # 1. export
    print("1. llamaft export")
    files, report["export"] = {}, []
    for label, folder, types in (("base", a.model, ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"]),
                                 ("merged", a.merged, ["f32", "f16", "q8_0", "q4_k_m"])):
        for t in types:
            out = os.path.join(a.workdir, f"{label}-{t}.gguf")
            t0 = time.time()
            run([a.llamaft, "export", "--format", "gguf", "--outtype", t, "--model", folder, "--tokenizer", a.model,
                 "--output", out, "--force", "--threads", str(a.threads)])
            secs = time.time() - t0
            files[(label, t)] = out
            report["export"].append({"model": label, "outtype": t, "seconds": round(secs, 2), "bytes": os.path.getsize(out)})
            print(f"  {label} {t:7s} {os.path.getsize(out) / 1e6:8.1f} MB  {secs:6.2f} s")

    # 2. llama.cpp's own converter and llama-quantize
    print("2. llama.cpp's convert_hf_to_gguf.py and llama-quantize on the same folder")
    if a.convert_python:
        stub = os.path.join(a.workdir, "spstub", "sentencepiece")
        os.makedirs(stub, exist_ok=True)
        with open(os.path.join(stub, "__init__.py"), "w") as f:  # the folder has no tokenizer.model
            f.write("class SentencePieceProcessor:\n    def __init__(self, *a, **k):\n"
                    "        raise FileNotFoundError('no tokenizer.model')\n")
        env = dict(os.environ, PYTHONPATH=os.path.join(a.llama_src, "gguf-py") + ":" + os.path.dirname(stub))
        ours_s = {e["outtype"]: e["seconds"] for e in report["export"] if e["model"] == "base"}
        report["export_vs_llama_cpp"] = []
        for t in ("f32", "f16", "bf16", "q8_0"):
            conv = os.path.join(a.workdir, f"converter-{t}.gguf")
            t0 = time.time()
            run([a.convert_python, os.path.join(a.llama_src, "convert_hf_to_gguf.py"), "--outtype", t, "--outfile", conv,
                 a.model], env=env)
            secs = time.time() - t0
            report["export_vs_llama_cpp"].append({"outtype": t, "llamaft_s": ours_s[t], "llama_cpp_s": round(secs, 2)})
            print(f"  time, whole command: llamaft export {ours_s[t]:.2f} s, convert_hf_to_gguf.py {secs:.2f} s: "
                  f"llamaft {secs / ours_s[t]:.2f}x as fast")
            compare_files(files[("base", t)], conv, f"convert_hf_to_gguf.py --outtype {t}")
        for t, ftype in (("q4_0", 2), ("q4_k_m", 15)):
            q = os.path.join(a.workdir, f"llama-quantize-{t}.gguf")
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = ftype
            params.nthread = a.threads
            t0 = time.time()
            rc = llama_cpp.llama_model_quantize(os.path.join(a.workdir, "converter-f32.gguf").encode(), q.encode(), params)
            secs = time.time() - t0
            report["export_vs_llama_cpp"].append({"outtype": t, "llamaft_s": ours_s[t], "llama_quantize_s": round(secs, 2)})
            print(f"  time: llamaft export (HF folder -> {t}) {ours_s[t]:.2f} s, llama-quantize (its f32 file -> {t}, "
                  f"in process) {secs:.2f} s: llamaft {secs / ours_s[t]:.2f}x as fast")
            check(rc == 0, f"llama_model_quantize to {t} (rc {rc})")
            compare_files(files[("base", t)], q, f"llama-quantize {t.upper()} of the converter's f32 file")
    else:
        print("  skipped: no --convert-python (a Python with torch >= 2.1 and transformers)")

    # 3. tokenizer and chat template
    print("3. tokenizer and chat template in llama.cpp")
    import llama_cpp.llama_chat_format as chat
    vocab = llama_cpp.Llama(model_path=files[("base", "f32")], vocab_only=True, verbose=False)
    lines = [l.strip() for l in open(a.heldout, encoding="utf-8") if l.strip()][:300]
    lines += ["Hello world 12345 and 3.14! x=42", "  multiple   spaces\there", "caf\u00e9 \u20ac100 \U0001F600 \u4e2d\u6587",
              "it's they're I'll", "<|im_start|>user"]
    src = os.path.join(a.workdir, "lines.jsonl")
    with open(src, "w") as f:
        for l in lines:
            f.write(json.dumps(l) + "\n")
    ours = [json.loads(x)["ids"] for x in run([a.llamaft, "tokenize", "--tokenizer", tok_json, "--input", src,
                                                "--json-lines"]).strip().splitlines()]
    theirs = [vocab.tokenize(l.encode("utf-8"), add_bos=False, special=False) for l in lines]
    same = sum(x == y for x, y in zip(ours, theirs))
    check(same == len(lines), f"llama.cpp tokenizes {same}/{len(lines)} lines as llamaft ({sum(map(len, ours))} tokens)")
    template = vocab.metadata["tokenizer.chat_template"]
    user = "Write a two-sentence story about a cat."
    gen = json.loads(run([a.llamaft, "generate", "--model", a.model, "--prompt", user, "--max-new-tokens", "1",
                          "--temperature", "0", "--json"]).strip().splitlines()[-1])
    fmt = chat.Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                   add_generation_prompt=True)
    rendered = fmt(messages=[{"role": "user", "content": user}]).prompt
    ids = vocab.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
    check(ids == gen["prompt_ids"], f"the GGUF's chat template, rendered by llama-cpp-python and tokenized by llama.cpp, "
          f"gives the {len(ids)} prompt ids `llamaft generate --prompt` uses")
    del vocab

    # 4. greedy decoding
    print("4. greedy decoding, 32 tokens")
    prompts = [l for l in open(a.heldout, encoding="utf-8") if len(l.split()) > 12][:3]
    prompt_ids = [json.loads(x)["ids"][:24] for x in run([a.llamaft, "tokenize", "--tokenizer", tok_json, "--input",
                                                            _write_lines(a.workdir, "prompts.jsonl", prompts),
                                                            "--json-lines"]).strip().splitlines()]
    report["greedy"] = []
    for label, folder in (("base", a.model), ("merged", a.merged)):
        cfg = json.load(open(os.path.join(folder, "config.json")))
        eos = set(cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]])
        f16_folder = os.path.join(a.workdir, f"{label}-f16-dequantized")
        run([a.llamaft, "convert", "--gguf", files[(label, "f16")], "--output", f16_folder, "--force"])
        for t in ("f32", "f16"):
            eng = Engine(files[(label, t)], a.threads)
            for i, p in enumerate(prompt_ids):
                ids = ",".join(map(str, p))
                mine = json.loads(run([a.llamaft, "generate", "--model", f16_folder if t == "f16" else folder,
                                       "--prompt-ids", ids, "--max-new-tokens", "32", "--temperature", "0", "--json",
                                       "--threads", str(a.threads)]).strip().splitlines()[-1])["ids"]
                got = eng.greedy(p, 32, eos)
                extra = ""
                if t == "f16":
                    fp32 = json.loads(run([a.llamaft, "generate", "--model", folder, "--prompt-ids", ids,
                                           "--max-new-tokens", "32", "--temperature", "0", "--json", "--threads",
                                           str(a.threads)]).strip().splitlines()[-1])["ids"]
                    agree = next((k for k in range(min(len(fp32), len(got))) if fp32[k] != got[k]), min(len(fp32), len(got)))
                    extra = f"; vs the fp32 folder: first {agree} tokens equal"
                check(got == mine, f"{label} {t} prompt {i}: llama.cpp greedy == llamaft generate "
                      f"({len(got)} tokens{extra})")
                report["greedy"].append({"model": label, "outtype": t, "prompt": i, "equal": got == mine, "tokens": got})
            del eng
        shutil.rmtree(f16_folder)

    # 5. perplexity
    seq = 256
    rows, rows_path = rows_of(a.llamaft, tok_json, a.heldout, a.workdir, seq, a.rows)
    print(f"5. perplexity on {len(rows)} held-out TinyStories rows of {seq} tokens ({len(rows) * (seq - 1)} predictions)")
    margins = {"f32": 0.001, "f16": 0.005, "bf16": 0.02, "q8_0": 0.01, "q4_0": 0.25, "q4_k_m": 0.10}
    report["perplexity"] = []
    for label, folder in (("base", a.model), ("merged", a.merged)):
        ref_ppl, ref_loss, ntok = llamaft_ppl(a.llamaft, folder, rows_path, seq, a.threads)
        print(f"  {label}: llamaft eval (fp32 folder) ppl {ref_ppl:.4f} (loss {ref_loss:.5f}, {ntok} tokens)")
        for (lab, t), path in files.items():
            if lab != label:
                continue
            eng = Engine(path, a.threads, n_ctx=seq)
            tot, n = 0.0, 0
            for r in rows:
                s, k = eng.nll(r)
                tot, n = tot + s, n + k
            del eng
            ppl = float(np.exp(tot / n))
            deq = os.path.join(a.workdir, f"{label}-{t}-dequantized")
            run([a.llamaft, "convert", "--gguf", path, "--output", deq, "--force"])
            deq_ppl, _, _ = llamaft_ppl(a.llamaft, deq, rows_path, seq, a.threads)
            shutil.rmtree(deq)
            rel = ppl / ref_ppl - 1
            rel_deq = ppl / deq_ppl - 1
            report["perplexity"].append({"model": label, "outtype": t, "llama_cpp_ppl": ppl, "llamaft_fp32_ppl": ref_ppl,
                                         "llamaft_dequantized_ppl": deq_ppl, "rel_vs_fp32": rel,
                                         "rel_vs_dequantized": rel_deq, "margin": margins[t]})
            check(abs(rel) <= margins[t], f"{label} {t:7s}: llama.cpp ppl {ppl:.4f}, {100 * rel:+.3f}% vs llamaft "
                  f"fp32 (margin {100 * margins[t]:g}%); {100 * rel_deq:+.4f}% vs llamaft on the same dequantized weights")

    report["failures"] = FAILURES
    json.dump(report, open(os.path.join(a.workdir, "gguf_check.json"), "w"), indent=1)
    print(f"gguf_check: {'PASSED' if not FAILURES else str(len(FAILURES)) + ' FAILED'}; "
          f"report in {os.path.join(a.workdir, 'gguf_check.json')}")
    sys.exit(1 if FAILURES else 0)


def _write_lines(workdir, name, lines):
    p = os.path.join(workdir, name)
    with open(p, "w") as f:
        for l in lines:
            f.write(json.dumps(l.strip()) + "\n")
    return p


if __name__ == "__main__":
    main()
