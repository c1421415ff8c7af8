#!/usr/bin/env python3
"""TensorBoard event files written by `train` (output.tensorboard = true) are
read by the real TensorBoard reader (tensorboard's EventFileLoader from PyPI),
and every scalar equals the metrics.jsonl value it mirrors (as float32).
Exits 77 when the tensorboard package cannot be imported.

Usage: check_tensorboard.py --llamaft BIN --workdir DIR
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except Exception as e:  # noqa: BLE001
        print(f"SKIP: tensorboard not importable ({type(e).__name__}: {e}); run scripts/setup_python_env.sh")
        return 77
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    w = a.workdir
    subprocess.run([a.llamaft, "init", "--preset", "tiny", "--output", f"{w}/base"], check=True, capture_output=True)
    with open(f"{w}/data.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"input_ids": [(i * 17 + t) % 900 + 3 for t in range(20)]}) + "\n")
    subprocess.run(launcher.mpirun(2, [a.llamaft, "train", "--model.path", f"{w}/base",
                    "--data.path", f"{w}/data.jsonl", "--data.val_path", f"{w}/data.jsonl", "--data.seq_len", "32",
                    "--train.global_batch_size", "4", "--train.steps", "6", "--train.eval_every", "3",
                    "--output.tensorboard", "true", "--output.dir", f"{w}/run", "--output.progress", "false"]),
                   env=ENV, check=True, capture_output=True)
    files = glob.glob(f"{w}/run/tensorboard/events.out.tfevents.*")
    scalars = {}
    version = None
    for ev in EventFileLoader(files[0]).Load():
        if ev.file_version:
            version = ev.file_version
        for v in ev.summary.value:
            # EventFileLoader migrates simple_value into a scalar tensor, as TensorBoard serves it.
            scalars[(v.tag, ev.step)] = v.tensor.float_val[0] if v.HasField("tensor") else v.simple_value
    metrics = [json.loads(line) for line in open(f"{w}/run/metrics.jsonl")]
    want = {}
    for m in metrics:
        if "val_loss" in m:
            want[("val/loss", m["step"])] = m["val_loss"]
        else:
            want.update({("train/loss", m["step"]): m["loss"], ("train/lr", m["step"]): m["lr"],
                         ("train/grad_norm", m["step"]): m["grad_norm"],
                         ("perf/tokens_per_s", m["step"]): m["tokens_per_s"]})
    ok = len(files) == 1 and version == "brain.Event:2" and set(scalars) == set(want) and all(
        scalars[k] == np.float32(v) for k, v in want.items())
    print(f"{'ok  ' if ok else 'FAIL'} {len(scalars)} scalars read by TensorBoard's EventFileLoader equal "
          f"metrics.jsonl ({len(want)} expected, file_version {version})")
    # scripts/plot_metrics.py draws the same run into a PNG.
    png = f"{w}/metrics.png"
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "plot_metrics.py"),
                    f"{w}/run", "--output", png], check=True, capture_output=True)
    good = open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} plot_metrics.py wrote a PNG")
    # generate under mpirun answers once, from rank 0.
    r = subprocess.run(launcher.mpirun(2, [a.llamaft, "generate", "--model", f"{w}/base",
                        "--prompt-ids", "1,5,9", "--max-new-tokens", "3", "--json"]), env=ENV, capture_output=True,
                       text=True, check=True)
    good = sum(1 for line in r.stdout.splitlines() if line.startswith("{")) == 1
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} generate under mpirun -np 2 prints one answer (rank 0)")
    print("tensorboard:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
