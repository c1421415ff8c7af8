#!/usr/bin/env python3
"""Self-contained exports: `train`'s export (output.dir/model/) and `merge`'s
output carry the base's tokenizer files (tokenizer.json / tokenizer.model,
tokenizer_config.json with the chat template and special tokens,
special_tokens_map.json) byte for byte, and generation_config.json (the
base's, or the one transformers derives from config.json), all in place
before the weights are renamed into place and no .partial left behind:
  1. a tiny model (`init --preset tiny` + stories260K's 512-token
     SentencePiece tokenizer saved by transformers with the Llama 2 chat
     template), fully fine-tuned at np 2: `generate --prompt` works on the
     export and renders the same prompt as on the base; transformers'
     AutoTokenizer gives the same ids and the same chat rendering on both;
  2. SmolLM2-135M-Instruct (shared cache) + a LoRA adapter from a short
     `train` at np 1, merged: the same checks on the merged folder, whose
     greedy answer equals the unmerged base + adapter's.
The SmolLM2 part is skipped (saying so) when the model cannot be fetched.
Exits 77 when the assets or transformers are absent.

Usage: check_exports.py --llamaft BIN --workdir DIR [--assets DIR] [--fetch scripts/fetch_smollm2.sh]
"""
import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")  # Debian's sentencepiece pb2
HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"]
TEXTS = ["Once upon a time, there was a little girl.", "  spaces\tand\nnewlines ", "digits 12345 and émojis 🙂",
         "<s>[INST] special text [/INST]"]
CHAT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Tell me a story."}]
FAILURES = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        if detail:
            print("     " + detail[-2500:], flush=True)
        FAILURES.append(what)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, **kw)
    if r.returncode != 0:
        print(f"     {' '.join(cmd)}: exit {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-2500:]}")
    return r


def check_folder(name, base, export):
    """The export's companion files against the base's."""
    files = sorted(os.listdir(export))
    check(not [f for f in files if "partial" in f], f"{name}: no .partial left ({files})")
    carried = [f for f in TOKENIZER_FILES if os.path.exists(os.path.join(base, f))]
    same = [f for f in carried if os.path.exists(os.path.join(export, f)) and
            filecmp.cmp(os.path.join(base, f), os.path.join(export, f), shallow=False)]
    check(carried and same == carried, f"{name}: carries the base's tokenizer files byte for byte: {same}")
    gen = os.path.join(export, "generation_config.json")
    if os.path.exists(os.path.join(base, "generation_config.json")):
        ok = os.path.exists(gen) and filecmp.cmp(os.path.join(base, "generation_config.json"), gen, shallow=False)
        check(ok, f"{name}: carries the base's generation_config.json")
    else:
        cfg = json.load(open(os.path.join(export, "config.json")))
        g = json.load(open(gen)) if os.path.exists(gen) else {}
        check(g.get("bos_token_id") == cfg["bos_token_id"] and g.get("eos_token_id") == cfg["eos_token_id"],
              f"{name}: generation_config.json from config.json: {g}")
    from transformers import GenerationConfig
    try:
        GenerationConfig.from_pretrained(export)
        check(True, f"{name}: transformers reads its generation_config.json")
    except Exception as e:  # noqa: BLE001
        check(False, f"{name}: transformers reads its generation_config.json ({e})")


def check_tokenizers(name, base, export, template):
    from transformers import AutoTokenizer
    tb, te = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(export)
    ids_b = [tb(t)["input_ids"] for t in TEXTS]
    ids_e = [te(t)["input_ids"] for t in TEXTS]
    check(ids_b == ids_e and type(tb) is type(te),
          f"{name}: AutoTokenizer.from_pretrained(export) gives the base's ids ({type(te).__name__}, "
          f"{sum(map(len, ids_e))} ids)")
    cb = tb.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True)
    ce = te.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True)
    check(cb == ce and te.chat_template == template, f"{name}: the export's chat template renders as the base's "
          f"({len(ce)} ids)")
    return te


def gen(a, model, *extra):
    r = run([a.llamaft, "generate", "--model", model, "--max-new-tokens", "12", "--json"] + list(extra))
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    p.add_argument("--fetch", default=os.path.join(HERE, "..", "..", "scripts", "fetch_smollm2.sh"))
    a = p.parse_args()
    tok512 = os.path.join(a.assets, "stories260K", "tok512.model")
    if not os.path.exists(tok512):
        print("SKIP: ../shared/assets absent")
        return 77
    try:
        import jinja2  # noqa: F401
        import transformers  # noqa: F401
        from transformers import LlamaTokenizerFast
    except ImportError as e:
        print(f"SKIP: transformers missing ({e}); run scripts/setup_python_env.sh")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    llama2_template = open(os.path.join(HERE, "..", "fixtures", "chat_templates", "llama2_chat.jinja")).read()

    # ---- 1. tiny model + a tokenizer, full fine-tuning at np 2 ----
    base = os.path.join(w, "tiny")
    r = run([a.llamaft, "init", "--preset", "tiny", "--seed", "3", "--output", base])
    hf = LlamaTokenizerFast(vocab_file=tok512, legacy=True, add_prefix_space=True)
    hf.chat_template = llama2_template
    hf.save_pretrained(base)  # tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json
    with open(os.path.join(w, "stories.jsonl"), "w") as f:
        for i in range(16):
            f.write(json.dumps({"text": f"Once upon a time there was a cat number {i}. It liked fish."}) + "\n")
    r = run([a.llamaft, "prepare", "--tokenizer", os.path.join(base, "tokenizer.model"), "--input",
             os.path.join(w, "stories.jsonl"), "--format", "text", "--output", os.path.join(w, "data"),
             "--seq-len", "32"])
    r = run([*launcher.mpirun("2", []), a.llamaft, "train", "--model.path", base, "--data.path",
             os.path.join(w, "data", "train"), "--data.seq_len", "32", "--train.global_batch_size", "4",
             "--train.steps", "3", "--train.lr", "1e-3", "--output.dir", os.path.join(w, "run"),
             "--output.progress", "false"])
    export = os.path.join(w, "run", "model")
    if r.returncode != 0 or not os.path.exists(os.path.join(export, "config.json")):
        check(False, "tiny: train exports a model")
    else:
        check_folder("tiny train export", base, export)
        check_tokenizers("tiny train export", base, export, llama2_template)
        gb, ge = gen(a, base, "--prompt", "Once upon a time"), gen(a, export, "--prompt", "Once upon a time")
        check(ge is not None and gb is not None and ge["prompt_ids"] == gb["prompt_ids"] and ge["ids"],
              f"tiny: generate --prompt works on the export with the base's own template "
              f"({len(ge['prompt_ids']) if ge else 0} prompt ids as on the base)")
        want = hf.apply_chat_template([{"role": "user", "content": "Once upon a time"}], tokenize=True,
                                      add_generation_prompt=True)
        check(ge is not None and ge["prompt_ids"] == want, "tiny: and that prompt is the Llama 2 template's")

    # ---- 2. SmolLM2 + a LoRA adapter, merged ----
    r = subprocess.run(["bash", a.fetch], capture_output=True, text=True, env=dict(os.environ, LLAMAFT_BIN=a.llamaft))
    if r.returncode != 0:
        print(f"note: SmolLM2 not available (fetch_smollm2.sh exit {r.returncode}); its checks are skipped")
    else:
        smol = r.stdout.strip().splitlines()[-1]
        smol_template = json.load(open(os.path.join(smol, "tokenizer_config.json")))["chat_template"]
        with open(os.path.join(w, "chats.jsonl"), "w") as f:
            for i in range(8):
                f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                                 {"role": "assistant", "content": f"{i} + {i} = {2 * i}."}]}) + "\n")
        run([a.llamaft, "prepare", "--model", smol, "--input", os.path.join(w, "chats.jsonl"), "--format", "chat",
             "--output", os.path.join(w, "smol_data"), "--seq-len", "64"])
        r = run([*launcher.mpirun("1", []), a.llamaft, "train", "--model.path", smol, "--data.path",
                 os.path.join(w, "smol_data", "train"), "--data.seq_len", "64", "--train.global_batch_size", "2",
                 "--train.steps", "2", "--train.lr", "2e-4", "--finetune.method", "lora", "--lora.r", "4",
                 "--lora.alpha", "8", "--output.dir", os.path.join(w, "smol_run"), "--output.progress", "false"])
        adapter = os.path.join(w, "smol_run", "adapter")
        merged = os.path.join(w, "smol_merged")
        r = run([a.llamaft, "merge", "--model", smol, "--adapter", adapter, "--output", merged])
        if r.returncode != 0:
            check(False, "SmolLM2: train a LoRA adapter and merge it")
        else:
            check_folder("SmolLM2 merge", smol, merged)
            check_tokenizers("SmolLM2 merge", smol, merged, smol_template)
            q = "What is the capital of France?"
            gm, gu = gen(a, merged, "--prompt", q), gen(a, smol, "--adapter", adapter, "--prompt", q)
            check(gm is not None and gu is not None and gm["prompt_ids"] == gu["prompt_ids"],
                  "SmolLM2: generate --prompt works on the merged folder, in its own ChatML template")
            check(gm is not None and gu is not None and gm["ids"] == gu["ids"],
                  f"SmolLM2: the merged model answers as base + adapter: {gm and gm['text']!r}")

    print("exports:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    for f in FAILURES:
        print("  failed:", f)
    return 0 if not FAILURES else 1


if __name__ == "__main__":
    sys.exit(main())
