#!/usr/bin/env python3
"""A model's own chat template, rendered natively by llamaft, token for token
as transformers' tokenizer.apply_chat_template(msgs, tokenize=True,
add_generation_prompt=...) renders it (transformers 4.49 + Jinja2 as the
oracle):
  1. every known template (tests/fixtures/chat_templates: SmolLM2's ChatML with
     its default system prompt, plain ChatML, Llama 2 [INST], Llama 3 (both
     revisions), Llama 3.1 with its "Cutting Knowledge Date" system header,
     llamaft's Alpaca) on multi-turn chats with and without a system prompt,
     with and without the generation prompt, through `tokenize --chat` with the
     template read from tokenizer_config.json (and once from
     chat_template.jinja); the labels train exactly the assistant turns and
     their end token;
  2. `prepare` defaults to the template next to the tokenizer (chat and Alpaca
     rows), and `--template` overrides it;
  3. an unrecognised template is refused (exit 2) by tokenize, prepare and
     generate, naming the choices;
  4. `generate` renders the model's own template (SmolLM2: the prompt ids
     equal transformers' with add_generation_prompt=True and it stops at
     <|im_end|>), and `--template alpaca` is exactly the prompt `prepare`
     trains by default.
The SmolLM2 parts use the shared model cache (scripts/fetch_smollm2.sh) and
are skipped, saying so, when it cannot be fetched. Exits 77 when the assets or
transformers are absent.

Usage: check_chat_templates.py --llamaft BIN --workdir DIR [--assets DIR] [--fetch scripts/fetch_smollm2.sh]
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys

# Debian's sentencepiece_model_pb2 predates the venv's protobuf 4 C++ backend;
# transformers' slow->fast Llama conversion reads it through pure-Python protobuf.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "chat_templates")
CHOICES = "chatml|llama2|llama3|llama3.1|alpaca|none"
FAILURES = []

# Conversations: multi-turn with and without a system prompt, whitespace at
# the ends (Python's strip, incl. U+00A0), newlines, CJK and emoji, digits.
CHATS = [
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3, times 1,000?"},
     {"role": "assistant", "content": "6,000 of course."}],
    [{"role": "user", "content": "  Name a colour.\n"}, {"role": "assistant", "content": "Blue, or 青.\n"},
     {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "Red 🍎"}],
    [{"role": "system", "content": "  Answer in French.\n\n"}, {"role": "user", "content": "Hello there!"},
     {"role": "assistant", "content": " Bonjour ! "}],
    [{"role": "user", "content": "Line one\nline two\n\n  indented\tend"},
     {"role": "assistant", "content": "\u00a0ok:\n- a\n- b\u00a0"}],
]
GEN_CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    CHATS[0][:4],
    CHATS[1][:3],
]
L3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
               "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>",
               "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>"]
L3_SPECIALS += [f"<|reserved_special_token_{i}|>" for i in range(2, 256 - len(L3_SPECIALS) + 2)]


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        if detail:
            print("     " + detail[:3000], flush=True)
        FAILURES.append(what)


def run(cmd, expect=None):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if expect is not None and r.returncode != expect:
        print(f"     {' '.join(cmd)}\n     exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


def llama3_hf_tokenizer(ranks_path):
    """The Llama 3 ranks as a transformers fast tokenizer (transformers' own
    TikTokenConverter, the ranks read here instead of through blobfile)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter
    import tiktoken.load  # noqa: F401

    ranks = {}
    with open(ranks_path, "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)

    class Converter(TikTokenConverter):
        def extract_vocab_merges_from_model(self, _url):
            import tiktoken.load as tl
            saved = tl.load_tiktoken_bpe
            tl.load_tiktoken_bpe = lambda *_a, **_k: ranks
            try:
                return TikTokenConverter.extract_vocab_merges_from_model(self, _url)
            finally:
                tl.load_tiktoken_bpe = saved

    tk = Converter(vocab_file=ranks_path, additional_special_tokens=L3_SPECIALS).converted()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")


def write_chats(path, chats):
    with open(path, "w", encoding="utf-8") as f:
        for c in chats:
            f.write(json.dumps({"messages": c}, ensure_ascii=False) + "\n")


def llamaft_chat(a, tok_file, chats_path, *extra, expect=0):
    r = run([a.llamaft, "tokenize", "--tokenizer", tok_file, "--input", chats_path, "--chat"] + list(extra),
            expect=expect)
    if r.returncode != 0:
        return None, r
    return [json.loads(line) for line in r.stdout.splitlines()], r


def trained_spans(ids, labels):
    spans, cur = [], []
    for i, l in zip(ids, labels):
        if l != -100:
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    return spans


def labels_ok(hf, chat, ids, labels, end_ids):
    """Labels: -100 or the id; one trained span per assistant turn, ending
    with the template's end token and decoding to the turn's text."""
    assistants = [m["content"] for m in chat if m["role"] == "assistant"]
    spans = trained_spans(ids, labels)
    ok = all(l in (-100, i) for i, l in zip(ids, labels)) and len(spans) == len(assistants)
    for span, content in zip(spans, assistants):
        text = hf.decode(span[:-1], skip_special_tokens=False)
        ok &= span[-1] in end_ids and text.strip(" \u00a0\n") == content.strip(" \u00a0\n")
    return ok


def check_labels(name, hf, chat, ids, labels, end_ids):
    assistants = [m["content"] for m in chat if m["role"] == "assistant"]
    check(labels_ok(hf, chat, ids, labels, end_ids),
          f"{name}: labels train exactly the {len(assistants)} assistant turns and their end token",
          f"spans {[hf.decode(s) for s in trained_spans(ids, labels)]} vs {assistants}")


def template_folder(a, name, hf, template, tok_file_name, jinja_file=False):
    """A tokenizer folder as transformers saves it, with `template` in its
    tokenizer_config.json (or in chat_template.jinja)."""
    d = os.path.join(a.workdir, name)
    shutil.rmtree(d, ignore_errors=True)
    hf.chat_template = None if jinja_file else template
    hf.save_pretrained(d)
    if jinja_file:
        cfg_path = os.path.join(d, "tokenizer_config.json")
        cfg = json.load(open(cfg_path))
        cfg.pop("chat_template", None)
        json.dump(cfg, open(cfg_path, "w"), indent=2)
        with open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(template)
    hf.chat_template = template
    return os.path.join(d, tok_file_name)


def compare_template(a, name, hf, template, tok_file_name, family, end_ids, jinja_file=False):
    tok_file = template_folder(a, name, hf, template, tok_file_name, jinja_file)
    chats_path = os.path.join(a.workdir, name + ".chats.jsonl")
    gen_path = os.path.join(a.workdir, name + ".gen.jsonl")
    chats = CHATS
    write_chats(chats_path, chats)
    write_chats(gen_path, GEN_CHATS)
    for gen, path, convs in ((False, chats_path, chats), (True, gen_path, GEN_CHATS)):
        extra = ["--add-generation-prompt"] if gen else []
        got, r = llamaft_chat(a, tok_file, path, *extra)
        if got is None:
            check(False, f"{name}: llamaft renders it (add_generation_prompt={gen})", r.stderr[-1500:])
            continue
        want = [hf.apply_chat_template(c, tokenize=True, add_generation_prompt=gen) for c in convs]
        same = [g["ids"] == w for g, w in zip(got, want)]
        detail = ""
        for g, w, c in zip(got, want, convs):
            if g["ids"] != w:
                detail = f"chat {c}\n     llamaft {g['ids']}\n     hf      {w}\n     hf text {hf.decode(w)!r}"
                break
        check(all(same) and len(got) == len(convs),
              f"{name}: {sum(same)}/{len(convs)} chats token for token equal to apply_chat_template "
              f"(add_generation_prompt={gen}, {sum(len(w) for w in want)} tokens)", detail)
        fam = r.stderr
        check(f"template {family}" in fam, f"{name}: recognised as {family}", fam[-500:])
        if not gen:
            bad = [c for g, c in zip(got, convs) if not labels_ok(hf, c, g["ids"], g["labels"], end_ids)]
            check(not bad, f"{name}: in all {len(convs)} chats the labels train exactly the assistant turns and "
                  "their end token", f"first bad chat: {bad[:1]}")
    return tok_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    p.add_argument("--fetch", default=os.path.join(HERE, "..", "..", "scripts", "fetch_smollm2.sh"))
    a = p.parse_args()
    l2 = os.path.join(a.assets, "llama2_tokenizer", "tokenizer.model")
    l3 = os.path.join(a.assets, "llama3_tokenizer", "tokenizer.model")
    if not (os.path.exists(l2) and os.path.exists(l3)):
        print("SKIP: ../shared/assets tokenizers absent")
        return 77
    try:
        import jinja2  # noqa: F401
        import sentencepiece as spm
        import transformers
        from transformers import AutoTokenizer, LlamaTokenizer, LlamaTokenizerFast
    except ImportError as e:
        print(f"SKIP: oracle missing ({e}); run scripts/setup_python_env.sh")
        return 77
    print(f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}")
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    sp = spm.SentencePieceProcessor(model_file=l2)

    # SmolLM2 from the shared cache (its tokenizer.json and real template).
    smol = None
    r = subprocess.run(["bash", a.fetch], capture_output=True, text=True,
                       env=dict(os.environ, LLAMAFT_BIN=a.llamaft))
    if r.returncode == 0:
        smol = r.stdout.strip().splitlines()[-1]
    else:
        print(f"note: SmolLM2 not available (fetch_smollm2.sh exit {r.returncode}); its checks are skipped\n"
              f"{r.stderr[-800:]}")

    # ---- the oracles' tokenizers ----
    # Llama 2: the legacy SentencePiece behaviour Llama-2-*-chat-hf's tokenizer.json has.
    # (add_prefix_space=True: 4.49's slow->fast conversion drops the Prepend("▁") otherwise.)
    l2_fast = LlamaTokenizerFast(vocab_file=l2, legacy=True, add_prefix_space=True)
    l2_slow = LlamaTokenizer(vocab_file=l2, legacy=True)
    l3_hf = llama3_hf_tokenizer(l3)
    print(f"oracle tokenizers ready (Llama 3 vocabulary {len(l3_hf)})")

    # ---- 1. every known template against apply_chat_template ----
    l2_tmpl = fixture("llama2_chat.jinja")
    slow_same = all(l2_slow.apply_chat_template(c, tokenize=True, chat_template=l2_tmpl) ==
                    l2_fast.apply_chat_template(c, tokenize=True, chat_template=l2_tmpl) for c in CHATS)
    check(slow_same, "llama2 oracle: the slow and fast Llama tokenizers agree (legacy SentencePiece)")
    compare_template(a, "llama2", l2_fast, l2_tmpl, "tokenizer.model", "llama2", {sp.eos_id()})
    eot = {l3_hf.convert_tokens_to_ids("<|eot_id|>")}
    for fx, fam in (("llama3_instruct.jinja", "llama3"), ("llama3_instruct_first.jinja", "llama3"),
                    ("llama3.1_instruct.jinja", "llama3.1"), ("llama3.1_instruct_no_tools_default.jinja", "llama3.1")):
        compare_template(a, fx.replace(".jinja", ""), l3_hf, fixture(fx), "tokenizer.json", fam, eot)
    alpaca = fixture("alpaca_llamaft.jinja")
    compare_template(a, "alpaca_llama2", l2_fast, alpaca, "tokenizer.model", "alpaca", {sp.eos_id()})
    compare_template(a, "alpaca_llama3", l3_hf, alpaca, "tokenizer.json", "alpaca", eot)
    # chat_template.jinja instead of tokenizer_config.json (transformers 4.50+ writes it so)
    compare_template(a, "llama3.1_jinja_file", l3_hf, fixture("llama3.1_instruct.jinja"), "tokenizer.json",
                     "llama3.1", eot, jinja_file=True)
    smol_hf, real = None, None
    if smol:
        smol_hf = AutoTokenizer.from_pretrained(smol)
        real = json.load(open(os.path.join(smol, "tokenizer_config.json")))["chat_template"]
        check(real == fixture("smollm2_instruct.jinja"), "SmolLM2's real template is the fixture's")
        im_end = {smol_hf.convert_tokens_to_ids("<|im_end|>")}
        compare_template(a, "smollm2", smol_hf, real, "tokenizer.json", "chatml", im_end)
        for fx in ("chatml.jinja", "chatml_generation_default.jinja"):
            compare_template(a, fx.replace(".jinja", ""), smol_hf, fixture(fx), "tokenizer.json", "chatml", im_end)
        compare_template(a, "alpaca_smollm2", smol_hf, alpaca, "tokenizer.json", "alpaca",
                         {smol_hf.eos_token_id})

    # ---- 2. prepare: the template next to the tokenizer by default; --template overrides ----
    chats_path = os.path.join(w, "chats.jsonl")
    write_chats(chats_path, CHATS)
    l31_tok = os.path.join(w, "llama3.1_instruct", "tokenizer.json")

    def prepare(tok_file, inp, fmt, out, *extra, expect=0):
        return run([a.llamaft, "prepare", "--tokenizer", tok_file, "--input", inp, "--format", fmt, "--output", out,
                    "--seq-len", "1024"] + list(extra), expect=expect)

    def rows(out):
        import numpy as np
        d = os.path.join(out, "train")
        idx = np.fromfile(f"{d}/index.bin", dtype="<i8")
        toks = np.fromfile(f"{d}/tokens.bin", dtype="<i4")
        labs = np.fromfile(f"{d}/labels.bin", dtype="<i4")
        return [(toks[s:e].tolist(), labs[s:e].tolist()) for s, e in zip(idx[:-1], idx[1:])]

    r = prepare(l31_tok, chats_path, "chat", os.path.join(w, "p31"))
    if r.returncode == 0:
        got = rows(os.path.join(w, "p31"))
        want = [l3_hf.apply_chat_template(c, tokenize=True, chat_template=fixture("llama3.1_instruct.jinja"))
                for c in CHATS]
        check([g[0] for g in got] == want, f"prepare --format chat uses the tokenizer's own template by default "
              f"(llama3.1, {len(want)} chats equal apply_chat_template)")
        for (ids, labels), c in zip(got, CHATS):
            check_labels("prepare llama3.1", l3_hf, c, ids, labels, eot)
        man = json.load(open(os.path.join(w, "p31", "train", "manifest.json")))
        check(man["template"] == "llama3.1" and "tokenizer_config.json" in man["template_source"],
              f"the manifest records the template and where it came from ({man['template_source'][:90]}...)")
    else:
        check(False, "prepare --format chat with the llama3.1 folder")
    r = prepare(l31_tok, chats_path, "chat", os.path.join(w, "p3"), "--template", "llama3")
    got = rows(os.path.join(w, "p3")) if r.returncode == 0 else []
    want = [l3_hf.apply_chat_template(c, tokenize=True, chat_template=fixture("llama3_instruct.jinja")) for c in CHATS]
    check([g[0] for g in got] == want, "--template llama3 overrides the folder's llama3.1 template")
    alp_rows = [{"instruction": "Reverse the digits.", "input": "1234", "output": "4321"},
                {"instruction": "Say hi.", "output": "  Hi!  "}]
    alp_path = os.path.join(w, "alpaca.jsonl")
    with open(alp_path, "w") as f:
        for row in alp_rows:
            f.write(json.dumps(row) + "\n")
    if smol:
        r = prepare(os.path.join(w, "smollm2", "tokenizer.json"), alp_path, "alpaca", os.path.join(w, "psmol"))
        got = rows(os.path.join(w, "psmol")) if r.returncode == 0 else []
        want = []
        for row in alp_rows:
            user = row["instruction"] + ("\n\n" + row["input"] if row.get("input") else "")
            want.append(smol_hf.apply_chat_template([{"role": "user", "content": user},
                                                     {"role": "assistant", "content": row["output"]}], tokenize=True,
                                                    chat_template=real))
        check([g[0] for g in got] == want, "prepare --format alpaca renders Alpaca rows in SmolLM2's own ChatML "
              "(with its default system prompt) by default")
    # A tokenizer without a chat template keeps the Alpaca prompt (the default it always had).
    r = prepare(l2, alp_path, "alpaca", os.path.join(w, "pl2"))
    got = rows(os.path.join(w, "pl2")) if r.returncode == 0 else []
    want = []
    for row in alp_rows:
        if row.get("input"):
            prompt = ("Below is an instruction that describes a task, paired with an input that provides further "
                      "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                      f"{row['instruction']}\n\n### Input:\n{row['input']}\n\n### Response:\n")
        else:
            prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                      f"the request.\n\n### Instruction:\n{row['instruction']}\n\n### Response:\n")
        want.append([sp.bos_id()] + sp.encode(prompt + row["output"]) + [sp.eos_id()])
    check([g[0] for g in got] == want, "without a chat template next to the tokenizer, prepare keeps the Alpaca prompt")

    # ---- 3. an unrecognised template is refused, the choices named ----
    unknown = fixture("smollm2_instruct.jinja").replace("message['content'] +", "message['content'] | trim +")
    bad_dir = os.path.join(w, "unknown")
    shutil.copytree(os.path.join(w, "llama3.1_instruct"), bad_dir)
    cfg_path = os.path.join(bad_dir, "tokenizer_config.json")
    cfg = json.load(open(cfg_path))
    cfg["chat_template"] = unknown
    json.dump(cfg, open(cfg_path, "w"))
    bad_tok = os.path.join(bad_dir, "tokenizer.json")
    r = run([a.llamaft, "tokenize", "--tokenizer", bad_tok, "--input", chats_path, "--chat"])
    check(r.returncode == 2 and CHOICES in r.stderr and "tokenizer_config.json" in r.stderr,
          f"tokenize --chat refuses an unrecognised template: exit {r.returncode}, choices named", r.stderr[-600:])
    r = prepare(bad_tok, chats_path, "chat", os.path.join(w, "pbad"), expect=2)
    check(r.returncode == 2 and CHOICES in r.stderr and not os.path.exists(os.path.join(w, "pbad", "train")),
          f"prepare refuses it by default: exit {r.returncode}, nothing written", r.stderr[-600:])
    r = prepare(bad_tok, chats_path, "chat", os.path.join(w, "pbad"), "--template", "llama3.1")
    check(r.returncode == 0, "an explicit --template still prepares with that folder")
    r = run([a.llamaft, "tokenize", "--tokenizer", bad_tok, "--input", chats_path, "--chat", "--template", "jinja"])
    check(r.returncode == 2 and "auto" in r.stderr and "llama3.1" in r.stderr,
          f"an unknown --template name is refused naming the choices: exit {r.returncode}", r.stderr[-400:])

    # ---- 4. generate ----
    if smol:
        def gen(model, *extra, expect=0):
            r = run([a.llamaft, "generate", "--model", model, "--max-new-tokens", "24", "--json"] + list(extra),
                    expect=expect)
            return (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None), r
        q = "What is the capital of France?"
        g, r = gen(smol, "--prompt", q)
        want = smol_hf.apply_chat_template([{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True,
                                           chat_template=real)
        check(g is not None and g["prompt_ids"] == want, f"generate on SmolLM2 renders its own template by default "
              f"({len(want)} prompt ids equal apply_chat_template(add_generation_prompt=True))")
        check(g is not None and g["stopped_at_eos"] and g["ids"] and "Paris" in g["text"],
              f"and answers, stopping at <|im_end|>: {g and g['text']!r}")
        g, r = gen(smol, "--prompt", q, "--system", "Answer in one word.")
        want = smol_hf.apply_chat_template([{"role": "system", "content": "Answer in one word."},
                                            {"role": "user", "content": q}], tokenize=True, add_generation_prompt=True,
                                           chat_template=real)
        check(g is not None and g["prompt_ids"] == want, "generate --system replaces SmolLM2's default system prompt")
        g, r = gen(smol, "--prompt", q, "--template", "none")
        check(g is not None and g["prompt_ids"] == [1] + smol_hf.encode(q, add_special_tokens=False),
              "generate --template none keeps the raw prompt (BOS + text)")
        bad_smol = os.path.join(w, "unknown_smol")
        shutil.copytree(os.path.join(w, "smollm2"), bad_smol)
        cfg = json.load(open(os.path.join(bad_smol, "tokenizer_config.json")))
        cfg["chat_template"] = unknown
        json.dump(cfg, open(os.path.join(bad_smol, "tokenizer_config.json"), "w"))
        r = run([a.llamaft, "generate", "--model", smol, "--tokenizer", os.path.join(bad_smol, "tokenizer.json"),
                 "--prompt", q,
                 "--max-new-tokens", "2"])
        check(r.returncode == 2 and CHOICES in r.stderr,
              f"generate refuses an unrecognised template beside --tokenizer: exit {r.returncode}", r.stderr[-400:])
    # --template alpaca: the prompt prepare trains by default (small model, Llama 2 tokenizer).
    model = os.path.join(w, "small")
    subprocess.run([a.llamaft, "init", "--preset", "small", "--output", model], check=True, capture_output=True)
    shutil.copy(l2, os.path.join(model, "tokenizer.model"))
    q = "Reverse the digits 1234."
    r = run([a.llamaft, "generate", "--model", model, "--prompt", q, "--template", "alpaca", "--max-new-tokens", "2",
             "--json"], expect=0)
    want = [sp.bos_id()] + sp.encode("Below is an instruction that describes a task. Write a response that "
                                     f"appropriately completes the request.\n\n### Instruction:\n{q}\n\n### Response:\n")
    g = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    check(g is not None and g["prompt_ids"] == want,
          f"generate --template alpaca is exactly prepare's default Alpaca prompt ({len(want)} ids)")
    r = run([a.llamaft, "generate", "--model", model, "--prompt", q, "--max-new-tokens", "2", "--json"], expect=0)
    g = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    check(g is not None and g["prompt_ids"] == [sp.bos_id()] + sp.encode(q),
          "a model without a chat template still generates from the raw prompt by default")

    print("chat templates:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    for f in FAILURES:
        print("  failed:", f)
    return 0 if not FAILURES else 1


if __name__ == "__main__":
    sys.exit(main())
