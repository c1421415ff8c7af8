#!/usr/bin/env python3
"""Checks that every #include "dir/..." under src/ and kernels/ points at the
same layer or one below it, in the order of the README's Layout section, and
that LLAMAFT_HAS_CUDA appears only in the registries. Exit 1 with the
offending lines otherwise. Usage: scripts/check_layers.py [SOURCE_DIR]"""
import pathlib
import re
import sys

# Lowest first; a file may include its own layer and those before it.
LAYERS = ["core", "unit", "quant", "backend", "comm", "optim", ("config", "io"), "data", "model",
          "parallel", "checkpoint", "train", "cli"]
RANK = {}
for i, layer in enumerate(LAYERS):
    for name in (layer if isinstance(layer, tuple) else (layer,)):
        RANK[name] = i
RANK["kernels"] = RANK["backend"]  # the CUDA backend's launchers
CUDA_ALLOWED = {"src/backend/registry.cpp", "src/comm/registry.cpp"}

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
include = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')
problems = []
for path in sorted(list((root / "src").rglob("*")) + list((root / "kernels").rglob("*"))):
    if path.suffix not in (".hpp", ".cpp", ".cu", ".cuh", ".h"):
        continue
    rel = path.relative_to(root).as_posix()
    parts = rel.split("/")
    layer = parts[1] if parts[0] == "src" else "kernels"
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        m = include.match(line)
        if m and m.group(1) in RANK and RANK[m.group(1)] > RANK[layer]:
            problems.append(f"{rel}:{n}: {layer}/ includes {m.group(1)}/, a higher layer: {line.strip()}")
        if "LLAMAFT_HAS_CUDA" in line and rel not in CUDA_ALLOWED and not line.lstrip().startswith("//"):
            problems.append(f"{rel}:{n}: LLAMAFT_HAS_CUDA outside the registries: {line.strip()}")
for p in problems:
    print(p)
print(f"check_layers: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
