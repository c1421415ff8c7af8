#!/usr/bin/env bash
# Tokenization throughput of `llamaft prepare --format text` against Python
# sentencepiece (Llama 2) and tiktoken (Llama 3) on the same corpus (the
# TinyStories and tiny-shakespeare samples in ../shared/assets, one document
# per line), single-threaded, in one run.
# Usage: bench/run_tokenize_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
assets=${LLAMAFT_ASSETS:-$root/../shared/assets}
py=${LLAMAFT_PYTHON:-$root/.venv-ref/bin/python}
work=${BENCH_DIR:-/tmp/llamaft-tok-bench}
rm -rf "$work"; mkdir -p "$work"
"$py" - "$assets" "$work/corpus.jsonl" <<'PY'
import json, sys
a, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    for name in ("tinystories/tiny_stories.txt", "tinyshakespeare/input.txt"):
        for line in open(f"{a}/{name}", encoding="utf-8"):
            if line.strip():
                f.write(json.dumps({"text": line.rstrip("\n")}) + "\n")
PY
for t in llama2 llama3; do
  "$bin" prepare --tokenizer "$assets/${t}_tokenizer/tokenizer.model" --input "$work/corpus.jsonl" --format text \
    --template none --output "$work/$t" --seq-len 100000 > "$work/$t.json"
done
OMP_NUM_THREADS=1 "$py" - "$assets" "$work" <<'PY'
import base64, json, sys, time
import sentencepiece as spm, tiktoken
a, w = sys.argv[1], sys.argv[2]
docs = [json.loads(l)["text"] for l in open(f"{w}/corpus.jsonl")]
mb = sum(len(d.encode()) for d in docs) / 1e6
sp = spm.SentencePieceProcessor(model_file=f"{a}/llama2_tokenizer/tokenizer.model")
t0 = time.perf_counter(); n2 = sum(len(sp.encode(d)) + 2 for d in docs); t2 = time.perf_counter() - t0
ranks = {base64.b64decode(t): int(r) for t, r in (l.split() for l in open(f"{a}/llama3_tokenizer/tokenizer.model", "rb") if l.strip())}
pat = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
       r"\s*[\r\n]+|\s+(?!\S)|\s+")
enc = tiktoken.Encoding("l3", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
t0 = time.perf_counter(); n3 = sum(len(enc.encode_ordinary(d)) + 2 for d in docs); t3 = time.perf_counter() - t0
print(f"corpus: {len(docs)} documents, {mb:.2f} MB (TinyStories + tiny-shakespeare)")
for name, n, t in (("llama2", n2, t2), ("llama3", n3, t3)):
    s = json.load(open(f"{w}/{name}.json"))
    ours = s["train_tokens"] / s["seconds"]
    peer = "sentencepiece (python)" if name == "llama2" else "tiktoken (python)"
    print(f"  {name}: llamaft prepare {ours / 1e6:.2f} M tokens/s ({s['train_tokens']} tokens, incl. reading, "
          f"templating and writing) vs {peer} {n / t / 1e6:.2f} M tokens/s encode only: {ours / (n / t):.2f}x")
PY
