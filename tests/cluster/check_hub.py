#!/usr/bin/env python3
"""Issue 31 item 5: a model by its hub id, offline, from the Hugging Face cache.
A cache is laid out here as huggingface_hub lays it out (blobs named by their
sha256, snapshots/<commit>/ links into them, refs/main holding the commit),
and huggingface_hub itself is the oracle: snapshot_download(repo_id,
local_files_only=True) must find it. Then:
  1. `eval --model ORG/NAME` resolves to that same snapshot (stderr names it)
     and gives the loss of `eval --model <the folder>`, with HF_HUB_CACHE,
     and with HF_HOME (HF_HOME/hub);
  2. `train --model.path ORG/NAME` at np 2 trains from it;
  3. a hub id not in the cache is exit 2 naming the download command, and
     an existing folder is never taken for a hub id.
Exit 77 without huggingface_hub.
Usage: check_hub.py --llamaft BIN --workdir DIR"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

BASE_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
for k in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
    BASE_ENV.pop(k, None)
REPO = "llamaft-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(cache, model_dir):
    """The layout of huggingface_hub's file_download: blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>."""
    repo = os.path.join(cache, "models--" + REPO.replace("/", "--"))
    os.makedirs(os.path.join(repo, "blobs"))
    snap = os.path.join(repo, "snapshots", COMMIT)
    os.makedirs(snap)
    for name in sorted(os.listdir(model_dir)):
        data = open(os.path.join(model_dir, name), "rb").read()
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(repo, "blobs", digest), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", digest), os.path.join(snap, name))
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(COMMIT)
    return snap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    try:
        import huggingface_hub
    except ImportError as e:
        print(f"SKIP: huggingface_hub is missing ({e}); scripts/setup_python_env.sh")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    L = a.llamaft
    tiny = f"{w}/tiny"
    subprocess.run([L, "init", "--preset", "tiny", "--seed", "0", "--output", tiny], check=True, env=BASE_ENV,
                   capture_output=True)
    cache = f"{w}/hf_home/hub"
    snap = lay_out_cache(cache, tiny)
    want = huggingface_hub.snapshot_download(REPO, local_files_only=True, cache_dir=cache)
    check(os.path.realpath(want) == os.path.realpath(snap),
          f"huggingface_hub {huggingface_hub.__version__} finds the laid-out cache: {want}")
    with open(f"{w}/d.jsonl", "w") as f:
        for i in range(8):
            f.write(json.dumps({"input_ids": [1] + [(i * 5 + j) % 200 + 3 for j in range(15)]}) + "\n")

    def run(args, env_extra, np_=None):
        env = dict(BASE_ENV, **env_extra)
        cmd = [L] + args if np_ is None else launcher.mpirun(np_, [L] + args)
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    ref = run(["eval", "--model", tiny, "--data", f"{w}/d.jsonl", "--seq-len", "16"], {})
    ref_loss = json.loads(ref.stdout.strip().splitlines()[-1])["loss"]
    for how, env in (("HF_HUB_CACHE", {"HF_HUB_CACHE": cache}), ("HF_HOME", {"HF_HOME": f"{w}/hf_home"})):
        r = run(["eval", "--model", REPO, "--data", f"{w}/d.jsonl", "--seq-len", "16"], env)
        ok = r.returncode == 0 and want in r.stderr
        loss = json.loads(r.stdout.strip().splitlines()[-1])["loss"] if r.returncode == 0 else None
        check(ok and loss == ref_loss, f"eval --model {REPO} with {how}: resolves to huggingface_hub's snapshot, "
              f"loss {loss} == {ref_loss}" + ("" if r.returncode == 0 else f" (exit {r.returncode}: {r.stderr[-300:]})"))
    r = run(["train", "--model.path", REPO, "--data.path", f"{w}/d.jsonl", "--data.seq_len", "16", "--train.steps", "2",
             "--train.global_batch_size", "4", "--output.dir", f"{w}/run", "--checkpoint.at_end", "false"],
            {"HF_HUB_CACHE": cache}, np_=2)
    check(r.returncode == 0 and os.path.exists(f"{w}/run/model/config.json"),
          f"train --model.path {REPO} at np 2 trains and exports (exit {r.returncode})")
    r = run(["eval", "--model", "nobody/absent-model", "--data", f"{w}/d.jsonl"], {"HF_HUB_CACHE": cache})
    check(r.returncode == 2 and "hf download nobody/absent-model" in r.stderr and "never downloads" in r.stderr,
          f"a hub id not in the cache: exit {r.returncode} with the download command")
    os.makedirs(f"{w}/org", exist_ok=True)
    shutil.copytree(tiny, f"{w}/org/tiny-llama")
    r = subprocess.run([L, "eval", "--model", "org/tiny-llama", "--data", f"{w}/d.jsonl", "--seq-len", "16"],
                       env=dict(BASE_ENV, HF_HUB_CACHE=cache), capture_output=True, text=True, cwd=w)
    check(r.returncode == 0 and "Hugging Face cache" not in r.stderr,
          "an existing folder that reads like a hub id is the folder")

    print("hub ids:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
