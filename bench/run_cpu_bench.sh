#!/usr/bin/env bash
# CPU model benchmark: llamaft vs PyTorch on the same stories15M-shaped model,
# same threads, in one run; prints both JSON lines and the ratio.
# Usage: bench/run_cpu_bench.sh [batch=4] [seq=256] [steps=5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLAMAFT_BUILD_DIR:-$root/build}
threads=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS=$threads
b=${1:-4}; t=${2:-256}; s=${3:-5}
ours=$("$build/bench/bench_model" "$b" "$t" "$s")
peer=$(/usr/bin/python3 "$root/bench/torch_model.py" "$b" "$t" "$s" "$threads")
echo "$ours"
echo "$peer"
/usr/bin/python3 - "$ours" "$peer" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"llamaft {a['tokens_per_s']:.0f} tok/s vs {b['impl']} {b['tokens_per_s']:.0f} tok/s: "
      f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}x; llamaft at {a['gflops']:.0f} GFLOP/s = "
      f"{100 * a['fraction_of_peak']:.0f}% of the measured SGEMM peak {a['sgemm_peak_gflops']:.0f} GFLOP/s "
      f"({a['threads']} threads)")
PY
