#!/usr/bin/env python3
"""`llamaft generate` with chat templates and stop tokens: the prompt ids for
--template llama2 equal Meta's [INST] format encoded by sentencepiece; a
stop id ends generation before it is emitted. Exits 77 without the assets.
Usage: check_generate.py --llamaft BIN --workdir DIR [--assets DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    a = p.parse_args()
    tok = os.path.join(a.assets, "llama2_tokenizer", "tokenizer.model")
    if not os.path.exists(tok):
        print("SKIP: ../shared/assets absent")
        return 77
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tok)
    shutil.rmtree(a.workdir, ignore_errors=True)
    model = os.path.join(a.workdir, "small")
    subprocess.run([a.llamaft, "init", "--preset", "small", "--output", model], check=True, capture_output=True)
    shutil.copy(tok, os.path.join(model, "tokenizer.model"))  # a temp folder: found next to the model

    def gen(*extra):
        r = subprocess.run([a.llamaft, "generate", "--model", model, "--max-new-tokens", "5", "--json"] + list(extra),
                           capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    ok = True
    g = gen("--prompt", "What is 2+2?", "--template", "llama2", "--system", "Be brief.")
    want = [sp.bos_id()] + sp.encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2+2? [/INST]")
    good = g["prompt_ids"] == want
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} --template llama2 prompt ids equal Meta's [INST] format ({len(want)} ids)")
    first = g["ids"][0]
    g2 = gen("--prompt", "What is 2+2?", "--template", "llama2", "--system", "Be brief.", "--stop-ids", str(first))
    good = g2["ids"] == [] and g2["stopped_at_eos"]
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} --stop-ids {first} stops before emitting it")
    print("generate:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
