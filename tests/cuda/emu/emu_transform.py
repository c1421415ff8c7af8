#!/usr/bin/env python3
"""Rewrites CUDA launch syntax for the CPU emulator (see cuda_emu.hpp).

    kernel<<<grid, block[, smem[, stream]]>>>(args);
 -> ::emu::launch([&] { kernel(args); }, grid, block[, smem[, stream]]);
    extern __shared__ [__align__(n)] T name[];
 -> T* name = reinterpret_cast<T*>(::emu::dynamic_smem());

Usage: emu_transform.py SRC_DIR DST_DIR  (every file, same names)
"""
import pathlib
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\)\s*;", re.S)
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;")


def transform(text: str) -> str:
    text = LAUNCH.sub(lambda m: f"::emu::launch([&] {{ {m.group(1)}({m.group(3)}); }}, {m.group(2)});", text)
    return EXTERN_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(::emu::dynamic_smem());",
                             text)


def main() -> int:
    src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.suffix in (".cu", ".cuh"):
            out = transform(f.read_text())
            if "<<<" in out:
                sys.exit(f"emu_transform: a launch in {f} was not rewritten")
            (dst / f.name).write_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
