#!/usr/bin/env python3
"""Bad input at every boundary gets a clear error (exit 2) or the right result,
never a crash or a silently wrong number (issue 30):

  1. out-of-range labels, ids, document starts and offsets in prepared data:
     `prepare --format tokens` refuses the row (file:line), and eval/train
     refuse a tampered split naming the file and row;
  2. `generate --prompt` with a tokenizer larger than the model's vocabulary
     is refused naming both sizes; a prompt id past the vocabulary (here a
     config.json bos_token_id) is caught at the model boundary;
  6. an adapter is read exactly: a tensor that adapter_config.json's
     target_modules does not name, or a named module without its tensors, is
     an error for merge, eval and generate;
  8. prepare replaces its output folder as a whole (no stale val/ survives),
     refuses a folder it did not write, and eval never reads a split that the
     folder's manifest does not list;
 10. --config DIR is refused;
 11. --pack true splits long documents across rows, keeping every token
     (tiny-shakespeare); --pack false truncates them with a warning;
 13. messages name the real cause (intermediate_size 2^40, a missing manifest,
     a safetensors header length past its JSON); merge --output equal to
     --model is refused; merge and init refuse an existing folder without
     --force.

The sections that need ../shared/assets (tokenizers, tiny-shakespeare) are
skipped when it is absent, and the script then exits 77 after the others.

Usage: check_input_boundaries.py --llamaft BIN --workdir DIR [--assets DIR]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
from array import array
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
FAILURES = []


def check(cond, what, text=""):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
        if text:
            print("     output: " + text[-1500:].replace("\n", "\n     "))


def run(cmd, timeout=300):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def ints(path, code="i"):
    a = array(code)
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a


def write_ints(path, a):
    with open(path, "wb") as f:
        f.write(a.tobytes())


def save_safetensors(path, tensors):
    """tensors: name -> (shape, list of floats); F32, little-endian."""
    header, blobs, off = {}, [], 0
    for name, (shape, values) in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_adapter(path, model_cfg, tensor_modules, config_modules, r=2):
    os.makedirs(path, exist_ok=True)
    d = model_cfg["hidden_size"]
    out_dim = {"q_proj": model_cfg["num_attention_heads"] * model_cfg["head_dim"],
               "v_proj": model_cfg["num_key_value_heads"] * model_cfg["head_dim"]}
    tensors = {}
    for layer in range(model_cfg["num_hidden_layers"]):
        for m in tensor_modules:
            pre = f"base_model.model.model.layers.{layer}.self_attn.{m}"
            tensors[pre + ".lora_A.weight"] = ((r, d), [0.01] * (r * d))
            tensors[pre + ".lora_B.weight"] = ((out_dim[m], r), [0.01] * (out_dim[m] * r))
    save_safetensors(os.path.join(path, "adapter_model.safetensors"), tensors)
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": r, "lora_alpha": r, "target_modules": config_modules, "bias": "none"}, f)


def prepare(a, *args):
    return run([a.llamaft, "prepare"] + list(args))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--assets", default=os.path.join(HERE, "..", "..", "..", "shared", "assets"))
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    tok512 = os.path.join(a.assets, "stories260K", "tok512.model")
    l3 = os.path.join(a.assets, "llama3_tokenizer", "tokenizer.model")
    shakespeare = os.path.join(a.assets, "tinyshakespeare", "input.txt")
    have_assets = all(os.path.exists(x) for x in (tok512, l3, shakespeare))
    skipped = []

    base = f"{w}/base"
    code, text = run([a.llamaft, "init", "--preset", "tiny", "--seed", "1", "--output", base])
    check(code == 0, f"init a tiny base model: exit {code}", text)
    model_cfg = json.load(open(f"{base}/config.json"))
    vocab = model_cfg["vocab_size"]

    # ---- 1. labels, ids, document starts and offsets in prepared data
    lab = f"{w}/lab.jsonl"
    with open(lab, "w") as f:
        for i in range(20):
            f.write(json.dumps({"input_ids": [1, 5, 6, 7, 8], "labels": [1, 5, 6, 7, 100000 if i == 3 else 8]}) + "\n")
    if have_assets:
        code, text = prepare(a, "--tokenizer", tok512, "--input", lab, "--format", "tokens", "--output",
                             f"{w}/plab", "--seq-len", "64")
        check(code == 2 and "lab.jsonl:4: label 100000 is neither -100 nor in [0, 512)" in text,
              f"prepare --format tokens refuses the out-of-range label with file:line: exit {code}", text)
    else:
        skipped.append("prepare --format tokens with a tokenizer")
    good = f"{w}/good.jsonl"
    with open(good, "w") as f:
        for i in range(8):
            f.write(json.dumps({"input_ids": [(i * 7 + t) % 500 + 3 for t in range(12)]}) + "\n")
    code, text = prepare(a, "--input", good, "--format", "tokens", "--output", f"{w}/pgood", "--seq-len", "16")
    check(code == 0, f"prepare a clean token file: exit {code}", text)
    code, text = run([a.llamaft, "eval", "--model", base, "--data", f"{w}/pgood", "--seq-len", "16"])
    check(code == 0 and '"loss"' in text, f"eval on the clean prepared folder: exit {code}", text)
    for name, file_, pos, value, want in (
            ("label 7000", "labels.bin", 14, 7000, "row 1 (labels.bin, token 2): label 7000 is neither -100"),
            ("label -5", "labels.bin", 3, -5, "row 0 (labels.bin, token 3): label -5 is neither -100"),
            ("token id 5000", "tokens.bin", 30, 5000, "row 2 (tokens.bin, token 6): token id 5000 is outside"),
            ("document start 9", "docs.bin", 20, 9, "row 1 (docs.bin, token 8): document start 9"),
            ("document start 3 at a row start", "docs.bin", 12, 3, "row 1 (docs.bin, token 0): document start 3 is "
                                                                   "after the row start")):
        t = f"{w}/tampered"
        shutil.rmtree(t, ignore_errors=True)
        shutil.copytree(f"{w}/pgood", t)
        arr = ints(f"{t}/train/{file_}")
        arr[pos] = value
        write_ints(f"{t}/train/{file_}", arr)
        code, text = run([a.llamaft, "eval", "--model", base, "--data", t, "--seq-len", "16"])
        check(code == 2 and want in text and "tampered/train" in text,
              f"eval refuses a {file_} with {name}, naming the file and row: exit {code}", text)
    code, text = run([*launcher.mpirun("2", []), a.llamaft, "train", "--model.path", base, "--data.path",
                      t, "--data.seq_len", "16", "--train.global_batch_size", "2", "--train.steps", "1",
                      "--output.dir", f"{w}/train_bad", "--output.progress", "false"], timeout=120)
    check(code == 2 and "document start 3 is after the row start" in text,
          f"train at np 2 refuses the tampered split: exit {code}", text)
    idx = ints(f"{w}/pgood/train/index.bin", "q")
    for name, patch in (("an offset past the end", {1: 1 << 40}), ("a decreasing offset", {2: 1})):
        shutil.rmtree(t, ignore_errors=True)
        shutil.copytree(f"{w}/pgood", t)
        bad = array("q", idx)
        for k, v in patch.items():
            bad[k] = v
        write_ints(f"{t}/train/index.bin", bad)
        code, text = run([a.llamaft, "eval", "--model", base, "--data", t, "--seq-len", "16"])
        check(code == 2 and "index.bin row" in text and "corrupt index" in text,
              f"eval refuses an index.bin with {name}: exit {code}", text)

    # ---- 2. generate: a tokenizer larger than the model; an id past the vocabulary
    if have_assets:
        code, text = run([a.llamaft, "generate", "--model", base, "--tokenizer", l3, "--prompt", "Once upon a time",
                          "--max-new-tokens", "3"])
        check(code == 2 and "128256" in text and str(vocab) in text and "larger than the model's" in text,
              f"generate --prompt with the Llama 3 tokenizer on a {vocab}-token model is refused: exit {code}", text)
        bos = f"{w}/bos_model"
        shutil.copytree(base, bos)
        cfg = json.load(open(f"{bos}/config.json"))
        cfg["bos_token_id"] = 5000
        json.dump(cfg, open(f"{bos}/config.json", "w"))
        code, text = run([a.llamaft, "generate", "--model", bos, "--tokenizer", tok512, "--prompt", "Once",
                          "--max-new-tokens", "2"])
        check(code == 2 and "prompt token 0 has id 5000, outside the model's vocabulary" in text,
              f"a prompt id past the vocabulary is caught at the model boundary: exit {code}", text)
    else:
        skipped.append("generate with other tokenizers")

    # ---- 6. adapters are read exactly
    extra = f"{w}/adapter_extra"
    make_adapter(extra, model_cfg, ["q_proj", "v_proj"], ["q_proj"])
    want_extra = "self_attn.v_proj.lora_A.weight', which adapter_config.json does not describe"
    code, text = run([a.llamaft, "merge", "--model", base, "--adapter", extra, "--output", f"{w}/merged_extra"])
    check(code == 2 and want_extra in text and not os.path.exists(f"{w}/merged_extra/model.safetensors"),
          f"merge refuses an adapter tensor that target_modules does not name: exit {code}", text)
    code, text = run([a.llamaft, "eval", "--model", base, "--adapter", extra, "--data", good, "--seq-len", "16"])
    check(code == 2 and want_extra in text, f"eval --adapter refuses it too: exit {code}", text)
    code, text = run([a.llamaft, "generate", "--model", base, "--adapter", extra, "--prompt-ids", "1,5,6",
                      "--max-new-tokens", "2"])
    check(code == 2 and want_extra in text, f"generate --adapter refuses it too: exit {code}", text)
    missing = f"{w}/adapter_missing"
    make_adapter(missing, model_cfg, ["q_proj"], ["q_proj", "v_proj"])
    code, text = run([a.llamaft, "merge", "--model", base, "--adapter", missing, "--output", f"{w}/merged_missing"])
    check(code == 2 and "has no tensor 'base_model.model.model.layers." in text and "v_proj" in text,
          f"merge refuses a named module whose tensors are missing: exit {code}", text)
    exact = f"{w}/adapter_exact"
    make_adapter(exact, model_cfg, ["q_proj", "v_proj"], ["q_proj", "v_proj"])
    code, text = run([a.llamaft, "merge", "--model", base, "--adapter", exact, "--output", f"{w}/merged_exact"])
    check(code == 0 and os.path.exists(f"{w}/merged_exact/model.safetensors"),
          f"merge takes an exact adapter: exit {code}", text)

    # ---- 8. prepare replaces its output as a whole; unlisted splits are never read
    other = f"{w}/other.jsonl"
    with open(other, "w") as f:
        for i in range(8):
            f.write(json.dumps({"input_ids": [900 + i, 901, 902, 903, 904, 905]}) + "\n")
    out = f"{w}/p8"
    code, text = prepare(a, "--input", good, "--format", "tokens", "--output", out, "--seq-len", "16",
                         "--val-fraction", "0.5")
    check(code == 0 and os.path.isdir(f"{out}/val"), f"prepare with a val split: exit {code}", text)
    code, text = run([a.llamaft, "eval", "--model", base, "--data", out, "--seq-len", "16"])
    check(code == 0 and "evaluating its val split" in text, f"eval uses the listed val split: exit {code}", text)
    stale_val = f"{w}/stale_val"
    shutil.copytree(f"{out}/val", stale_val)
    code, text = prepare(a, "--input", other, "--format", "tokens", "--output", out, "--seq-len", "16")
    check(code == 0 and not os.path.exists(f"{out}/val") and not os.path.exists(f"{out}.partial"),
          f"a second prepare into the folder without a val split leaves no val/ behind: exit {code}", text)
    code, text = run([a.llamaft, "eval", "--model", base, "--data", out, "--seq-len", "16"])
    check(code == 0 and "evaluating its train split" in text, f"eval then uses the train split: exit {code}", text)
    shutil.copytree(stale_val, f"{out}/val")  # a split the manifest does not list
    code, text = run([a.llamaft, "eval", "--model", base, "--data", out, "--seq-len", "16"])
    check(code == 0 and "evaluating its train split" in text, f"a copied-in val/ is not read by eval: exit {code}",
          text)
    code, text = run([a.llamaft, "eval", "--model", base, "--data", f"{out}/val", "--seq-len", "16"])
    check(code == 2 and "is not a split that" in text and "manifest.json lists" in text,
          f"eval --data DIR/val on an unlisted split is refused: exit {code}", text)
    code, text = run([*launcher.mpirun("1", []), a.llamaft, "train", "--model.path", base, "--data.path",
                      out, "--data.seq_len", "16", "--train.global_batch_size", "2", "--train.steps", "2",
                      "--train.eval_every", "1", "--output.dir", f"{w}/train8", "--output.progress", "false"],
                     timeout=120)
    check(code == 2 and "train.eval_every needs a validation split" in text,
          f"train.eval_every does not read the unlisted val/ (it finds no validation split): exit {code}", text)
    # The pre-manifest layout (train/ and val/ only): a val/ from another prepare is not read either.
    legacy = f"{w}/legacy"
    code, _ = prepare(a, "--input", other, "--format", "tokens", "--output", legacy, "--seq-len", "16")
    os.remove(f"{legacy}/manifest.json")
    shutil.copytree(stale_val, f"{legacy}/val")
    code, text = run([a.llamaft, "eval", "--model", base, "--data", legacy, "--seq-len", "16"])
    check(code == 0 and "evaluating its train split" in text,
          f"a folder without DIR/manifest.json: a val/ from another prepare is not read: exit {code}", text)
    foreign = f"{w}/foreign"
    os.makedirs(foreign)
    open(f"{foreign}/notes.txt", "w").write("mine\n")
    code, text = prepare(a, "--input", good, "--format", "tokens", "--output", foreign, "--seq-len", "16")
    check(code == 2 and "already holds 'notes.txt'" in text and os.path.exists(f"{foreign}/notes.txt"),
          f"prepare refuses a folder it did not write, and leaves it alone: exit {code}", text)
    code, text = prepare(a, "--input", f"{w}/nonexistent.jsonl", "--format", "tokens", "--output", out,
                         "--seq-len", "16")
    check(code == 2 and os.path.exists(f"{out}/train/index.bin") and not os.path.exists(f"{out}.partial"),
          f"a failed prepare leaves the previous output in place and no partial folder: exit {code}", text)

    # ---- 10. --config DIR
    os.makedirs(f"{w}/cfgdir")
    code, text = run([a.llamaft, "eval", "--config", f"{w}/cfgdir", "--model", base, "--data", good])
    check(code == 2 and "is a folder; --config takes an INI file" in text, f"--config DIR is refused: exit {code}", text)

    # ---- 11. packing splits long documents
    if have_assets:
        packed, whole = f"{w}/shk_packed", f"{w}/shk_whole"
        code, text = prepare(a, "--tokenizer", tok512, "--input", shakespeare, "--format", "text", "--pack", "true",
                             "--seq-len", "256", "--output", packed)
        summary = json.loads(text.strip().splitlines()[-1]) if code == 0 else {}
        code2, text2 = prepare(a, "--tokenizer", tok512, "--input", shakespeare, "--format", "text",
                               "--seq-len", "1048576", "--output", whole)
        toks, ref = ints(f"{packed}/train/tokens.bin"), ints(f"{whole}/train/tokens.bin")
        rows = len(ints(f"{packed}/train/index.bin", "q")) - 1
        check(code == 0 and code2 == 0 and rows > 1000 and toks == ref and summary.get("truncated_documents") == 0
              and summary.get("split_documents") == 1,
              f"tiny-shakespeare packs into {rows} rows of 256 with every one of its {len(ref)} tokens kept", text)
        docs, index = ints(f"{packed}/train/docs.bin"), ints(f"{packed}/train/index.bin", "q")
        continued = all(docs[index[r]] == -256 * r and docs[index[r + 1] - 1] == -256 * r for r in range(rows))
        check(continued, "each row's document start says how far into the document the row begins")
        code, text = run([a.llamaft, "eval", "--model", base, "--data", packed, "--seq-len", "256",
                          "--batch-size", "256"], timeout=600)
        res = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1]) if code == 0 else {}
        check(code == 0 and res.get("tokens") == len(ref) - rows,
              f"eval on the split document scores every target but one per row ({res.get('tokens')})", text)
        code, text = prepare(a, "--tokenizer", tok512, "--input", shakespeare, "--format", "text",
                             "--seq-len", "256", "--output", f"{w}/shk_cut")
        check(code == 0 and "warning: 1 document(s) longer than --seq-len 256 were truncated" in text and
              f"({len(ref) - 256} tokens dropped)" in text,
              f"--pack false truncates with a warning and the count: exit {code}", text)
    else:
        skipped.append("tiny-shakespeare packing")

    # ---- 13. messages that name the real cause; outputs that are not overwritten
    huge = f"{w}/huge_ffn"
    shutil.copytree(base, huge)
    cfg = json.load(open(f"{huge}/config.json"))
    cfg["intermediate_size"] = 1 << 40
    json.dump(cfg, open(f"{huge}/config.json", "w"))
    code, text = run([a.llamaft, "eval", "--model", huge, "--data", good, "--seq-len", "16"])
    check(code == 2 and "intermediate_size = 1099511627776 is larger than any Llama" in text and "memory" not in text,
          f"intermediate_size 2^40 is named, not 'out of host memory': exit {code}", text)
    nomani = f"{w}/no_manifest"
    shutil.copytree(f"{w}/pgood", nomani)
    os.remove(f"{nomani}/train/manifest.json")
    code, text = run([a.llamaft, "eval", "--model", base, "--data", nomani, "--seq-len", "16"])
    check(code == 2 and "train/manifest.json is missing" in text and "has no rows" not in text,
          f"a missing manifest is named as such: exit {code}", text)
    longhdr = f"{w}/long_header"
    shutil.copytree(base, longhdr)
    raw = bytearray(open(f"{longhdr}/model.safetensors", "rb").read())
    n = struct.unpack("<Q", raw[:8])[0]
    raw[:8] = struct.pack("<Q", n + 100)
    open(f"{longhdr}/model.safetensors", "wb").write(raw)
    code, text = run([a.llamaft, "eval", "--model", longhdr, "--data", good, "--seq-len", "16"])
    check(code == 2 and f"header length {n + 100} runs past the end of its JSON" in text and "UTF-8" not in text,
          f"a header length past its JSON is named as such: exit {code}", text)
    before = open(f"{base}/model.safetensors", "rb").read()
    for spelled in (base, f"{base}/", os.path.relpath(base)):
        code, text = run([a.llamaft, "merge", "--model", base, "--adapter", exact, "--output", spelled, "--force"])
        check(code == 2 and "is the input folder" in text, f"merge --output {spelled} (the base) is refused: exit {code}",
              text)
    check(open(f"{base}/model.safetensors", "rb").read() == before, "the base model is untouched")
    code, text = run([a.llamaft, "merge", "--model", base, "--adapter", exact, "--output", f"{w}/merged_exact"])
    check(code == 2 and "already exists and is not empty; pass --force" in text,
          f"merge into an existing folder needs --force: exit {code}", text)
    code, text = run([a.llamaft, "merge", "--model", base, "--adapter", exact, "--output", f"{w}/merged_exact",
                      "--force"])
    check(code == 0, f"merge --force replaces it: exit {code}", text)
    code, text = run([a.llamaft, "init", "--preset", "tiny", "--seed", "2", "--output", base])
    check(code == 2 and "already exists and is not empty; pass --force" in text and
          open(f"{base}/model.safetensors", "rb").read() == before,
          f"init into an existing model folder needs --force, and leaves it alone: exit {code}", text)
    code, text = run([a.llamaft, "init", "--preset", "tiny", "--seed", "2", "--output", f"{w}/merged_exact", "--force"])
    check(code == 0, f"init --force replaces a folder: exit {code}", text)

    if skipped:
        print("skipped (../shared/assets absent): " + "; ".join(skipped))
    print("input boundaries:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)}): {FAILURES}")
    if FAILURES:
        return 1
    return 77 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
