#!/usr/bin/env python3
"""llamaft's tokenizers byte-exact against the reference implementations:
Llama 3 (tiktoken BPE over tokenizer.model, PyPI tiktoken as the oracle) and
Llama 2 (SentencePiece, Debian's python sentencepiece as the oracle), on a
corpus with ASCII, CJK, emoji, combining marks, whitespace and digit runs,
very long words, invalid UTF-8 and special-token text, plus the 46 llama.cpp
test strings and Meta's reference ids in ../shared/assets. Also: decode
round-trips. Exits 77 when the assets or the oracles are absent.

Usage: check_tokenizers.py --llamaft BIN --workdir DIR [--assets DIR]
"""
import argparse
import base64
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
       r"\s*[\r\n]+|\s+(?!\S)|\s+")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
from checks import FAILURES, check  # noqa: E402

CORPUS = [
    "Hello world", " Hello world", "Hello  world   !", "The quick brown fox jumps over the lazy dog.",
    "日本語のテキストと中文文本，还有한국어.", "emoji: 🤗🦙🚀 👩‍👩‍👧 and flags 🇫🇷", "e\u0301 a\u0308 n\u0303 combining marks: Å Å",
    "tabs\t\tand   spaces \t \n\n\nnewlines\r\n\r\nwindows", "   leading and trailing   ", "\n\n\n", "\t",
    "digits 1234567890123 3.14159 1,000,000 007", "a" * 3000, "Supercalifragilisticexpialidocious" * 40,
    "<|begin_of_text|><|eot_id|> [INST] <<SYS>> </s> <s>", "I'm can't we'll they've I'D YOU'RE", "ÀÉÎÕÜ çñß ø",
    "العربية עברית русский ελληνικά हिन्दी", "math ∑∫√∞ ≤ ≥ ≠ → ⇒", "mixed123abc456DEF___---...!!!", "x" * 1 + " " * 50 + "y",
]
INVALID = [b"valid \xff\xfe invalid", b"truncated \xe2\x82", b"lone continuation \x80\x80 ok", b"\xc3\x28 bad pair",
           b"overlong \xc0\xaf and surrogate \xed\xa0\x80", b"\xf4\x90\x80\x80 beyond U+10FFFF"]


def llamaft_encode(a, tok, strings, raw=False, bos=False):
    path = os.path.join(a.workdir, "in.txt")
    with open(path, "wb") as f:
        for s in strings:
            f.write((s if raw else json.dumps(s).encode()) + b"\n")
    cmd = [a.llamaft, "tokenize", "--tokenizer", tok, "--input", path, "--decode"]
    if not raw:
        cmd.append("--json-lines")
    if bos:
        cmd.append("--bos")
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.splitlines()]


def ggml_cases(folder, stem):
    # Strings end with "\n__ggml_vocab_test__\n"; .out has one line of ids each.
    inp = open(os.path.join(folder, stem + ".inp"), encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
    out = open(os.path.join(folder, stem + ".out")).read().split("\n")[:len(inp)]
    return list(zip(inp, ([int(x) for x in line.split()] for line in out)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    l3 = os.path.join(a.assets, "llama3_tokenizer", "tokenizer.model")
    l2 = os.path.join(a.assets, "llama2_tokenizer", "tokenizer.model")
    if not (os.path.exists(l3) and os.path.exists(l2)):
        print("SKIP: ../shared/assets tokenizers absent")
        return 77
    try:
        import sentencepiece as spm
        import tiktoken
    except ImportError as e:
        print(f"SKIP: oracle missing ({e}); run scripts/setup_python_env.sh")
        return 77

    # ---- Llama 3 ----------------------------------------------------------------------
    ranks = {}
    for line in open(l3, "rb"):
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    enc = tiktoken.Encoding("llama3", pat_str=PAT, mergeable_ranks=ranks, special_tokens={})
    got = llamaft_encode(a, l3, CORPUS)
    for s, g in zip(CORPUS, got):
        want = enc.encode(s)
        check(g["ids"] == want, f"llama3 {s[:40]!r}: {len(want)} ids" + ("" if g["ids"] == want else
                                                                          f" got {g['ids'][:12]} want {want[:12]}"))
        check(g["decoded"] == s, f"llama3 decode round-trips {s[:30]!r}")
    got = llamaft_encode(a, l3, INVALID, raw=True)
    for b, g in zip(INVALID, got):
        want = enc.encode(b.decode("utf-8", errors="replace"))
        check(g["ids"] == want, f"llama3 invalid UTF-8 {b[:24]!r} is encoded as its U+FFFD replacement")
    cases = ggml_cases(os.path.join(a.assets, "llama3_tokenizer"), "ggml-vocab-llama-bpe.gguf")
    got = llamaft_encode(a, l3, [s for s, _ in cases])
    bad = [s for (s, want), g in zip(cases, got) if g["ids"] != want]
    check(not bad, f"llama3: {len(cases) - len(bad)}/{len(cases)} llama.cpp/HF reference strings exact {bad[:3]}")
    ref = json.load(open(os.path.join(a.assets, "llama3_tokenizer", "reference_ids.json")))
    for c in ref["cases"]:
        g = llamaft_encode(a, l3, [c["text"]], bos=c["bos"])[0]["ids"] + ([128001] if c["eos"] else [])
        check(g == c["ids"], f"llama3 Meta reference {c['text'][:30]!r}")

    # The same ranks as an HF tokenizer.json (byte-level BPE vocabulary in GPT-2's
    # printable-byte alphabet, specials in added_tokens) must encode identically.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = dict(zip(bs, map(chr, cs)))
    vocab = {"".join(b2u[x] for x in tok): rank for tok, rank in ranks.items()}
    tj = {"model": {"type": "BPE", "vocab": vocab, "merges": []},
          "added_tokens": [{"id": 128000, "content": "<|begin_of_text|>"}, {"id": 128001, "content": "<|end_of_text|>"},
                           {"id": 128009, "content": "<|eot_id|>"}]}
    tj_path = os.path.join(a.workdir, "tokenizer.json")
    json.dump(tj, open(tj_path, "w"))
    via_json = llamaft_encode(a, tj_path, CORPUS)
    via_model = llamaft_encode(a, l3, CORPUS)
    check([g["ids"] for g in via_json] == [g["ids"] for g in via_model],
          "llama3 from tokenizer.json encodes exactly as from tokenizer.model")

    # ---- Llama 2 ----------------------------------------------------------------------
    sp = spm.SentencePieceProcessor(model_file=l2)
    got = llamaft_encode(a, l2, CORPUS)
    for s, g in zip(CORPUS, got):
        want = sp.encode(s)
        check(g["ids"] == want, f"llama2 {s[:40]!r}: {len(want)} ids")
        check(g["decoded"] == sp.decode(want), f"llama2 decode equals sentencepiece's for {s[:30]!r}")
    got = llamaft_encode(a, l2, INVALID, raw=True)
    for b, g in zip(INVALID, got):
        check(g["ids"] == sp.encode(b.decode("utf-8", errors="replace")), f"llama2 invalid UTF-8 {b[:24]!r}")
    cases = ggml_cases(os.path.join(a.assets, "llama2_tokenizer"), "ggml-vocab-llama-spm.gguf")
    got = llamaft_encode(a, l2, [s for s, _ in cases])
    bad = [s for (s, want), g in zip(cases, got) if g["ids"] != want]
    check(not bad, f"llama2: {len(cases) - len(bad)}/{len(cases)} llama.cpp reference strings exact {bad[:3]}")
    ref = json.load(open(os.path.join(a.assets, "llama2_tokenizer", "reference_ids.json")))
    for c in ref["cases"]:
        g = llamaft_encode(a, l2, [c["text"]], bos=True)[0]["ids"]
        check(g == c["ids"], f"llama2 reference {c['text'][:30]!r}")
    print("tokenizers:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
