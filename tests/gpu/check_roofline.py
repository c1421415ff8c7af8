#!/usr/bin/env python3
"""bench/roofline.py against the roofline arithmetic done by hand here, on
synthetic counters (so the model's formulas, not a dry run, are under test),
and on a full-size dry run's counters when one is given (--counters FILE):
there the step must keep the issue-#19 budgets at full size.

  family time = max(FLOPs / (peak x efficiency), bytes / (HBM x 0.8), launches x 3 us)
  step        = sum of families + 20 us a host sync + exposed communication
  MFU         = FLOPs / (step x peak)
Usage: check_roofline.py [--counters FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOFLINE = os.path.join(ROOT, "bench", "roofline.py")


def run(counters, *args):
    with tempfile.TemporaryDirectory() as d:
        c, out = os.path.join(d, "c.json"), os.path.join(d, "r.json")
        json.dump(counters, open(c, "w"))
        subprocess.run([sys.executable, ROOFLINE, "--counters", c, "--json", out, *args], check=True,
                       capture_output=True, text=True)
        return json.load(open(out))


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--counters")
    a = p.parse_args()
    ok = True
    peak, hbm = 989.4e12, 4.8e12 * 0.8
    fam = lambda calls, launches, b, f: {"calls": calls, "launches": launches, "library_calls": 0,  # noqa: E731
                                         "bytes": b, "flops": f}
    # A compute-bound GEMM, a memory-bound op, a tiny op bound by its launches, one attention family.
    c = {"preset": "synthetic", "world": 1, "layers": 2, "rows": 8192, "syncs": {"sum": 1, "sum_squares_many": 2},
         "ops": {"gemm_bf16": fam(10, 10, 1e9, 7e13), "adamw": fam(1, 1, 3.84e10, 0),
                 "sum": fam(1, 1000, 8, 0), "attention_fwd": fam(2, 2, 1e6, 2.968e12)}}
    r = run(c, "--gpu", "h200", "--attention", "fa2")["results"]["fa2"]
    want = 7e13 / (peak * 0.7) + 3.84e10 / hbm + 1000 * 3e-6 + 2.968e12 / (peak * 0.3) + 3 * 20e-6
    good = close(r["step_ms"], want * 1e3) and close(r["mfu"], (7e13 + 2.968e12) / (want * peak))
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} synthetic step {r['step_ms']:.4f} ms (by hand {want * 1e3:.4f}), "
          f"MFU {100 * r['mfu']:.2f}%")
    # Communication: hidden under compute except one unit at each end; the excess shows.
    c2 = dict(c, world=8, comm={"all_gather_bytes": 1e9, "reduce_scatter_bytes": 8e9})
    r2 = run(c2, "--gpu", "h100", "--attention", "wmma")["results"]["wmma"]
    hbm100 = 3.35e12 * 0.8
    compute = 7e13 / (peak * 0.7) + 3.84e10 / hbm100 + 1000 * 3e-6 + 2.968e12 / (peak * 0.04)
    comm = (1e9 * 8 + 8e9) * 7 / 8 / (450e9 * 0.8)
    want2 = compute + 3 * 20e-6 + max(0.0, comm - compute) + 2 * comm / 4
    good = close(r2["step_ms"], want2 * 1e3) and close(r2["comm_ms"], comm * 1e3)
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} synthetic 8-rank step {r2['step_ms']:.3f} ms (by hand {want2 * 1e3:.3f}), "
          f"collectives {r2['comm_ms']:.3f} ms")
    if a.counters:  # a full-size dry run: the budgets at the real size, and a modelled MFU
        d = json.load(open(a.counters))
        syncs = sum(d["syncs"].values())
        launches = sum(f["launches"] for f in d["ops"].values())
        per_layer_ok = launches <= 48 * d["layers"] + 120
        good = syncs <= 4 + 2 and per_layer_ok and d["ops"]["gemm_bf16"]["flops"] > 0
        ok &= good
        out = run(d, "--gpu", "h200")["results"]
        print(f"{'ok  ' if good else 'FAIL'} {d['preset']} at seq {d['seq']}, micro-batch {d['micro_batch']}: "
              f"{syncs} host syncs {d['syncs']}, {launches} launches; MODELLED MFU on H200 "
              f"{100 * out['wmma']['mfu']:.1f}% (WMMA attention estimate), {100 * out['fa2']['mfu']:.1f}% (FA2)")
    print("roofline:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
