#!/usr/bin/env python3
"""The quantized frozen bases (QLoRA's NF4, LoRA's int8) against quant_ref.py,
an implementation of bitsandbytes' published algorithm:
  1. the NF4 table is the normal map, and llamaft's 8-bit dynamic map equals
     create_dynamic_map() computed with torch;
  2. a tiny model (fp32 with zero blocks, outliers and heavy tails; and bf16)
     loaded the way `train` loads a frozen base, at np = 1..4, each rank
     quantizing its own groups: codes, qabsmax, absmax2 and offsets identical
     to the reference for every linear weight; int8 codes and absmax too;
  3. the dequantized weights FSDP hands to the GEMMs equal the reference
     dequantization bit for bit, and the error is within the NF4/int8 bound;
  4. every np gives the same bytes;
  5. the bf16 base (LoRA's base in the compute dtype) is torch's bf16 rounding.
Usage: check_quant.py --llamaft BIN --dump QUANT_DUMP --workdir DIR
"""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pyutil"))
sys.path.insert(0, os.path.dirname(__file__))
import st_numpy  # noqa: E402
import quant_ref as Q  # noqa: E402
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           ATEN_CPU_CAPABILITY="avx2")


def run(cmd):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP: torch is needed for bitsandbytes' create_dynamic_map")
        return 77
    w = a.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)

    # 1. the tables
    nm = Q.normal_map()
    d = float(np.max(np.abs(nm - Q.NF4)))
    check(d <= 2e-7, f"the NF4 table is create_normal_map(0.9677083) (max difference {d:.1e}: float32 rounding)")

    # 2. the models: fp32 with edge cases, and bf16
    run([a.llamaft, "init", "--preset", "tiny", "--seed", "3", "--output", f"{w}/f32"])
    t = st_numpy.load(f"{w}/f32/model.safetensors")
    rng = np.random.default_rng(5)
    q0 = t["model.layers.0.self_attn.q_proj.weight"].ravel()
    q0[:64] = 0                    # an all-zero block (absmax 0)
    q0[64:128] = 1e-30             # a denormal-scale block
    q0[200] = 3.0                  # an outlier
    q0[300:364] = -0.02            # a constant block
    t["model.layers.0.self_attn.q_proj.weight"] = q0.reshape(t["model.layers.0.self_attn.q_proj.weight"].shape)
    for k in [k for k in t if k.startswith("model.layers.1.") and k.endswith("_proj.weight")]:
        t[k] = (0.02 * rng.standard_t(3, size=t[k].shape)).astype(np.float32)
    st_numpy.save(f"{w}/f32/model.safetensors", t)
    run([a.llamaft, "init", "--preset", "tiny", "--seed", "4", "--dtype", "bfloat16", "--output", f"{w}/bf16"])
    sources = {"f32": st_numpy.load(f"{w}/f32/model.safetensors"), "bf16": st_numpy.load(f"{w}/bf16/model.safetensors")}

    def dump(model, kind, np_):
        """quant_dump under mpirun: {name: array} and the sorted quantized weight names."""
        out = f"{w}/{model}_{kind}_np{np_}.safetensors"
        run([*launcher.mpirun(str(np_), []), a.dump, "--model", f"{w}/{model}", "--kind", kind,
             "--output", out])
        d = st_numpy.load(out)
        return d, sorted(k.rsplit(".", 1)[0] for k in d if k.endswith(".dequant"))

    code8 = Q.create_dynamic_map()
    for kind in ("nf4", "int8"):
        for model, nps in (("f32", (1, 2, 3, 4)), ("bf16", (2,))):
            dumps = {np_: dump(model, kind, np_) for np_ in nps}
            d, names = dumps[nps[0]]
            if kind == "nf4":
                check(np.array_equal(d["code8"], code8), "llamaft's 8-bit map equals bitsandbytes' create_dynamic_map()")
            check(len(names) == 4 * 7, f"{model} {kind}: {len(names)} quantized linear weights (4 layers x 7)")
            bad, worst, ties, rel = [], 0.0, 0, []
            for n in names:
                x = sources[model][n].ravel()
                if kind == "nf4":
                    r = Q.quantize_nf4(x)
                    ties += r["ties"]
                    same = (np.array_equal(d[n + ".codes"], r["codes"].astype(np.float32)) and
                            np.array_equal(d[n + ".qabsmax"], r["qabsmax"].astype(np.float32)) and
                            np.array_equal(d[n + ".absmax2"], r["absmax2"]) and
                            d[n + ".offset"][0] == r["offset"])
                    ref = Q.dequantize_nf4(r, len(x))
                    # bound: half the widest NF4 gap times the block absmax, plus the absmax's own error
                    code8_abs = (code8[r["qabsmax"]] * np.repeat(r["absmax2"], 256)[:len(r["qabsmax"])] +
                                 r["offset"]).astype(np.float32)
                    halfgap = float(np.max(np.diff(Q.NF4))) / 2
                    bound = np.repeat(r["absmax"] * halfgap + np.abs(r["absmax"] - code8_abs), 64)[:len(x)] * 1.0001
                else:
                    r = Q.quantize_int8(x)
                    same = (np.array_equal(d[n + ".q"], r["q"].astype(np.float32)) and
                            np.array_equal(d[n + ".absmax"], r["absmax"]))
                    ref = Q.dequantize_int8(r, len(x))
                    bound = np.repeat(r["absmax"] / 127 * 0.5, 64)[:len(x)] * 1.0001 + 1e-45
                if not same:
                    bad.append(n)
                if not np.array_equal(d[n + ".dequant"], ref):
                    bad.append(n + " (dequant)")
                err = np.abs(d[n + ".dequant"].astype(np.float64) - x)
                worst = max(worst, float(np.max(err / np.maximum(bound, 1e-45))))
                rel.append(float(np.sqrt(np.mean(err ** 2)) / max(np.sqrt(np.mean(x.astype(np.float64) ** 2)), 1e-30)))
            what = "codes, qabsmax, absmax2 and offset" if kind == "nf4" else "int8 codes and absmax"
            check(not bad, f"{model} {kind} np={nps[0]}: {what} and the dequantized weights equal the reference "
                           f"for all {len(names)} tensors" + (f"; differ: {bad[:4]}" if bad else ""))
            print(f"{model} {kind}: {ties} absmax values on an 8-bit map midpoint (quant_ref follows dQuantize's search there)")
            check(worst <= 1.0, f"{model} {kind}: every error within the bound (worst {worst:.3f} of it); "
                                f"relative RMS error {np.median(rel):.4f} (median over tensors)")
            for np_ in nps[1:]:
                same = all(np.array_equal(dumps[np_][0][k], d[k]) for k in d)
                check(same, f"{model} {kind}: np={np_} (each rank quantizing its own groups) gives the same bytes as np={nps[0]}")
    # NF4 without double quantization (bnb_4bit_use_double_quant = False).
    for np_ in (1, 3):
        d, names = dump("f32", "nf4-nodq", np_)
        bad = []
        for n in names:
            x = sources["f32"][n].ravel()
            r = Q.quantize_nf4(x, double_quant=False)
            if not (np.array_equal(d[n + ".codes"], r["codes"].astype(np.float32)) and
                    np.array_equal(d[n + ".absmax"], r["absmax"]) and
                    np.array_equal(d[n + ".dequant"], Q.dequantize_nf4(r, len(x)))):
                bad.append(n)
        check(len(names) == 28 and not bad, f"nf4 without double quantization, np={np_}: codes, fp32 absmax and "
                                            f"dequantized weights equal the reference" + (f"; differ: {bad[:3]}" if bad else ""))

    # bf16 storage (LoRA's base in the compute dtype): torch's round-to-nearest-even.
    import torch
    for np_ in (1, 3):
        d, names = dump("f32", "bf16", np_)
        bad = [n for n in names if not np.array_equal(
            d[n + ".dequant"], torch.from_numpy(sources["f32"][n].ravel()).to(torch.bfloat16).float().numpy())]
        check(len(names) == 28 and not bad, f"bf16 base at np={np_}: all {len(names)} linear weights equal torch's "
                                            f"bfloat16 rounding" + (f"; differ: {bad[:3]}" if bad else ""))
    print("quant:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
