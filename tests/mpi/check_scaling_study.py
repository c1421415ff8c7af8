#!/usr/bin/env python3
"""scripts/scaling_study.py runs a local CPU sweep (np = 1, 2, 4,
oversubscribed) and writes the CSV and the three plots; the CSV's numbers must
be consistent with the runs' own metrics (tokens/s per rank = tokens/s / ranks,
efficiency 1 at the smallest np, sharded memory falling with np).
Usage: check_scaling_study.py --llamaft BIN --workdir DIR
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llamaft", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "scripts", "scaling_study.py"), "local", "--dir",
                    a.workdir, "--llamaft", a.llamaft, "--preset", "tiny", "--seq", "32", "--steps", "3",
                    "--strategies", "full_shard", "no_shard"], check=True)
    rows = list(csv.DictReader(open(os.path.join(a.workdir, "scaling.csv"))))
    ok = len(rows) == 6
    print(f"{'ok  ' if ok else 'FAIL'} {len(rows)} rows (2 strategies x np 1, 2, 4)")
    for r in rows:
        per = float(r["tokens_per_s"]) / int(r["ranks"])
        good = abs(per - float(r["tokens_per_s_per_rank"])) < 1e-3 * per and float(r["tokens_per_s"]) > 0
        good &= (int(r["ranks"]) != 1) or abs(float(r["efficiency"]) - 1) < 1e-9
        ok &= good
    fs = sorted((int(r["ranks"]), int(r["mem_per_rank_bytes"])) for r in rows if r["strategy"] == "full_shard")
    falls = fs[0][1] > fs[1][1] > fs[2][1]
    print(f"{'ok  ' if falls else 'FAIL'} full_shard memory per rank falls with np: {fs}")
    ok &= falls
    for png in ("throughput.png", "efficiency.png", "memory.png"):
        path = os.path.join(a.workdir, png)
        good = os.path.exists(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        print(f"{'ok  ' if good else 'FAIL'} {png} is a PNG")
        ok &= good
    print("scaling study:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
