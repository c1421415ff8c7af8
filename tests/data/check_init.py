#!/usr/bin/env python3
"""`llamaft init` on every core writes what its definition says, at any
thread count and in either file layout:

- the `small` preset at OMP_NUM_THREADS=1 and 2 gives the same bytes (each
  tensor's stream is cut into blocks of 2^18 values that threads start by
  skipping ahead);
- the values are the documented stream, recomputed here from the published
  algorithms (SplitMix64, Box-Muller; core/rng.hpp): the embedding's first
  values and those across a block boundary, within 1 fp32 ulp of
  0.02 * normal (Python's math calls the same libm, so they are usually
  exact);
- `--max-shard-size 10MB` writes model-0000K-of-0000N.safetensors with an
  index whose weight_map names every tensor and whose total_size is the sum
  of the tensor bytes, each tensor byte for byte the one-file tensor, each
  shard within the limit unless it holds one tensor.

Usage: check_init.py --llamaft BIN --workdir DIR
"""
import argparse
import filecmp
import json
import math
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import st_numpy  # noqa: E402
from checks import FAILURES, check  # noqa: E402

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def normals(seed, stream, first, count):
    state = mix(seed ^ mix((stream + GOLDEN) & MASK))
    state = (state + 2 * first * GOLDEN) & MASK  # skip(2 * first)
    out = []
    for _ in range(count):
        state = (state + GOLDEN) & MASK
        u1 = (mix(state) >> 11) * (1.0 / 9007199254740992.0)
        state = (state + GOLDEN) & MASK
        u2 = (mix(state) >> 11) * (1.0 / 9007199254740992.0)
        if u1 <= 0.0:
            u1 = 2.0 ** -54
        n = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
        out.append(struct.unpack("<f", struct.pack("<f", 0.02 * n))[0])
    return out


def ulps(a, b):
    ia = struct.unpack("<i", struct.pack("<f", a))[0]
    ib = struct.unpack("<i", struct.pack("<f", b))[0]
    return abs(ia - ib)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    dirs = {}
    for name, threads, extra in (("t1", "1", []), ("t2", "2", []), ("sharded", "2", ["--max-shard-size", "10MB"])):
        dirs[name] = os.path.join(a.workdir, name)
        subprocess.run([a.llamaft, "init", "--preset", "small", "--seed", "3", "--output", dirs[name]] + extra,
                       env=dict(os.environ, OMP_NUM_THREADS=threads), check=True, capture_output=True)
    one = os.path.join(dirs["t1"], "model.safetensors")
    check(filecmp.cmp(one, os.path.join(dirs["t2"], "model.safetensors"), shallow=False),
          "init at 1 and 2 threads writes the same bytes")

    tensors = st_numpy.read_raw(one)
    order = list(tensors)
    dtype, shape, raw = tensors["model.embed_tokens.weight"]
    check(order[0] == "model.embed_tokens.weight" and dtype == "F32", "the embedding is the first tensor, in fp32")
    got = struct.unpack(f"<{len(raw) // 4}f", raw)
    block = 1 << 18
    worst = 0
    for first, count in ((0, 64), (block - 32, 64), (3 * block - 5, 10)):
        want = normals(3, 1, first, count)  # stream = index in layout order + 1
        worst = max(worst, max(ulps(g, w) for g, w in zip(got[first:first + count], want)))
    check(worst <= 1, f"embedding values are SplitMix64 + Box-Muller (seed 3, stream 1), across block "
                      f"boundaries, within 1 ulp (worst {worst})")

    sd = dirs["sharded"]
    with open(os.path.join(sd, "model.safetensors.index.json")) as f:
        index = json.load(f)
    wm = index["weight_map"]
    files = sorted(set(wm.values()))
    check(len(files) > 1 and all(fn == f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i, fn in enumerate(files)),
          f"{len(files)} shards named model-0000K-of-{len(files):05d}.safetensors")
    check(not os.path.exists(os.path.join(sd, "model.safetensors")), "no model.safetensors beside the shards")
    check(set(wm) == set(tensors), "the weight_map names every tensor of the one-file model")
    check(index["metadata"]["total_size"] == sum(len(t[2]) for t in tensors.values()),
          "total_size is the sum of the tensor bytes")
    same = True
    for fn in files:
        part = st_numpy.read_raw(os.path.join(sd, fn))
        size = sum(len(t[2]) for t in part.values())
        check(size <= 10_000_000 or len(part) == 1, f"{fn}: {size} data bytes within 10 MB (or one tensor)")
        for n, t in part.items():
            same &= wm.get(n) == fn and t == tensors[n]
    check(same, "every shard's tensors are byte for byte the one-file tensors, where the index says")

    if FAILURES:
        print(f"init: FAILED {len(FAILURES)}: " + "; ".join(FAILURES))
        return 1
    print("init: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
