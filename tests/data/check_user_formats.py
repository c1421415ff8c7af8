#!/usr/bin/env python3
"""Issue 31 item 5: data as users bring it.
  1. `prepare --format csv|tsv [--columns ...]`: files written by Python's csv
     module (commas, quotes, newlines and tabs inside fields, CRLF, non-ASCII,
     a BOM) prepare to the same token and label files as the Alpaca JSONL /
     text JSONL that Python's csv.DictReader reads from them: Python's csv
     module is the reference parser. A row with the wrong field count is
     counted bad with its line; a missing column, an unknown field, or no
     mapping for a header without instruction/output/text is exit 2 naming
     the columns;
  2. `prepare --format sharegpt` (conversations with from/value) prepares to
     the same files as the equivalent `chat` JSONL (system/human/gpt ->
     system/user/assistant); an unknown speaker is a bad row naming it.
Usage: check_user_formats.py --llamaft BIN --workdir DIR --assets DIR"""
import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
from checks import FAILURES, check  # noqa: E402


def same_split(a, b):
    """Every data file of two prepared folders' train split equal (manifests aside)."""
    names = sorted(f for f in os.listdir(f"{a}/train") if not f.endswith(".json"))
    return names and all(open(f"{a}/train/{n}", "rb").read() == open(f"{b}/train/{n}", "rb").read() for n in names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", required=True)
    a = ap.parse_args()
    tok = os.path.join(a.assets, "stories260K", "tok512.model")
    if not os.path.exists(tok):
        print(f"SKIP: {tok} is absent")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir

    def prepare(inp, fmt, out, *extra):
        return subprocess.run([a.llamaft, "prepare", "--tokenizer", tok, "--input", inp, "--format", fmt, "--output",
                               f"{w}/{out}", "--seq-len", "128", "--template", "none", *extra],
                              capture_output=True, text=True)

    rows = [
        {"question": "Name a colour.", "context": "", "answer": "Blue."},
        {"question": 'Say "hi", twice', "context": "a, b", "answer": 'hi, "hi"'},
        {"question": "Two lines?", "context": "line one\nline two", "answer": "ok\r\nyes"},
        {"question": "Tabs\tinside", "context": "café — ünïcode", "answer": "\"quoted\" start"},
        {"question": "Trailing space ", "context": " lead", "answer": "x"},
    ]
    for delim, fmt in ((",", "csv"), ("\t", "tsv")):
        buf = io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=["question", "context", "answer"], delimiter=delim, lineterminator="\r\n")
        wr.writeheader()
        for r in rows:
            wr.writerow(r)
        data = ("\ufeff" if fmt == "csv" else "") + buf.getvalue()
        path = f"{w}/data.{fmt}"
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(data)
        # The reference: Python's csv module reads the file back.
        with open(path, encoding="utf-8-sig", newline="") as f:
            ref = list(csv.DictReader(f, delimiter=delim))
        with open(f"{w}/ref_{fmt}.jsonl", "w") as f:
            for r in ref:
                f.write(json.dumps({"instruction": r["question"], "input": r["context"], "output": r["answer"]}) + "\n")
        r1 = prepare(path, fmt, f"{fmt}_out", "--columns", "instruction=question,input=context,output=answer")
        r2 = prepare(f"{w}/ref_{fmt}.jsonl", "alpaca", f"{fmt}_ref")
        check(r1.returncode == 0 and r2.returncode == 0 and same_split(f"{w}/{fmt}_out", f"{w}/{fmt}_ref"),
              f"{fmt}: {len(ref)} rows prepare as the Alpaca JSONL Python's csv module reads from them"
              + ("" if r1.returncode == 0 else f" (exit {r1.returncode}: {r1.stderr[-300:]})"))

    # Text documents by a header's own column name, and a bad row.
    with open(f"{w}/docs.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["id", "text"])
        wr.writerow(["1", "Once upon a time, there was a \"fox\"."])
        wr.writerow(["2", "It ran\nand ran."])
    with open(f"{w}/docs.csv", newline="") as f:
        ref = [r["text"] for r in csv.DictReader(f)]
    with open(f"{w}/docs_ref.jsonl", "w") as f:
        for t in ref:
            f.write(json.dumps({"text": t}) + "\n")
    r1 = prepare(f"{w}/docs.csv", "csv", "docs_out")
    r2 = prepare(f"{w}/docs_ref.jsonl", "text", "docs_ref")
    check(r1.returncode == 0 and same_split(f"{w}/docs_out", f"{w}/docs_ref"),
          "csv with a 'text' column: documents as the text JSONL" + ("" if r1.returncode == 0 else r1.stderr[-300:]))
    with open(f"{w}/bad.csv", "w", newline="") as f:
        f.write("instruction,output\nq1,a1\nq2,a2,extra\n" + "".join(f"q{i},a{i}\n" for i in range(3, 200)))
    r = prepare(f"{w}/bad.csv", "csv", "bad_out")
    man = json.load(open(f"{w}/bad_out/train/manifest.json")) if r.returncode == 0 else {}
    check(r.returncode == 0 and "bad.csv:3: 3 fields where the header has 2" in r.stderr and man.get("bad_rows") == 1,
          f"a row with an extra field is one bad row with its line (exit {r.returncode})")
    for extra, want in ((["--columns", "instruction=question,output=nope"], "no column 'nope'"),
                        (["--columns", "prompt=question"], "unknown field 'prompt'"),
                        ([], "say which is which with --columns")):
        path = f"{w}/data.csv"
        r = prepare(path, "csv", "refused", *extra)
        check(r.returncode == 2 and want in r.stderr, f"csv {' '.join(extra) or '(no --columns)'}: exit 2, '{want}'")
    with open(f"{w}/open.csv", "w") as f:
        f.write('instruction,output\n"never closed,a\n')
    r = prepare(f"{w}/open.csv", "csv", "refused2")
    check(r.returncode == 2 and "open.csv:2: a quoted field is never closed" in r.stderr,
          "an unterminated quote: exit 2 with its line")

    # ShareGPT against chat.
    convs = [
        [("system", "Be brief."), ("human", "Hi!"), ("gpt", "Hello."), ("human", "Bye"), ("gpt", "Bye.")],
        [("human", "2+2?"), ("gpt", "4")],
    ]
    role = {"system": "system", "human": "user", "gpt": "assistant"}
    with open(f"{w}/sg.jsonl", "w") as f, open(f"{w}/chat.jsonl", "w") as g:
        for c in convs:
            f.write(json.dumps({"conversations": [{"from": s, "value": v} for s, v in c]}) + "\n")
            g.write(json.dumps({"messages": [{"role": role[s], "content": v} for s, v in c]}) + "\n")
        f.write(json.dumps({"conversations": [{"from": "tool", "value": "x"}, {"from": "gpt", "value": "y"}]}) + "\n")
    for tmpl in ("none", "llama2"):
        r1 = subprocess.run([a.llamaft, "prepare", "--tokenizer", tok, "--input", f"{w}/sg.jsonl", "--format", "sharegpt",
                             "--output", f"{w}/sg_{tmpl}", "--seq-len", "128", "--template", tmpl,
                             "--prepare.max_bad_fraction", "0.5"], capture_output=True, text=True)
        r2 = subprocess.run([a.llamaft, "prepare", "--tokenizer", tok, "--input", f"{w}/chat.jsonl", "--format", "chat",
                             "--output", f"{w}/chat_{tmpl}", "--seq-len", "128", "--template", tmpl],
                            capture_output=True, text=True)
        check(r1.returncode == 0 and r2.returncode == 0 and same_split(f"{w}/sg_{tmpl}", f"{w}/chat_{tmpl}")
              and "unknown speaker 'from': 'tool'" in r1.stderr,
              f"sharegpt (template {tmpl}) prepares as the same chats in 'chat' format; 'tool' is a bad row"
              + ("" if r1.returncode == 0 else f" (exit {r1.returncode}: {r1.stderr[-300:]})"))

    print("user formats:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
