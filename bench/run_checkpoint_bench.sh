#!/usr/bin/env bash
# Checkpoint bandwidth on this disk, in one run: llamaft's parallel HDF5 save
# and load of the stories15M-shaped model's full training state (fp32
# weights + both AdamW moments) at np = 2, against a plain sequential write
# and read of the same number of bytes with dd (conv=fsync); and the time
# from SIGUSR1 to mpirun's exit (checkpoint included).
# Usage: bench/run_checkpoint_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
work=${BENCH_DIR:-/tmp/llamaft-ckpt-bench}
rm -rf "$work"; mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$bin" init --preset small --output "$work/model" >/dev/null
/usr/bin/python3 -c "
import json, random
r = random.Random(0)
with open('$work/data.jsonl', 'w') as f:
    for _ in range(32): f.write(json.dumps({'input_ids': [r.randrange(3, 32000) for _ in range(64)]}) + '\n')"
common=(--model.path "$work/model" --data.path "$work/data.jsonl" --data.seq_len 64 --train.global_batch_size 2
        --output.export false --output.progress false)
mpirun --oversubscribe -np 2 "$bin" train "${common[@]}" --train.steps 2 --output.dir "$work/run" 2> "$work/save.log"
mpirun --oversubscribe -np 2 "$bin" train "${common[@]}" --train.steps 3 --output.dir "$work/run" 2> "$work/load.log"
save_line=$(grep "checkpoint .*MB in" "$work/save.log" | tail -1)
load_line=$(grep "resumed from" "$work/load.log")
mb=$(echo "$save_line" | sed -E 's/.*\(([0-9.e+]+) MB in ([0-9.e+-]+) s\).*/\1/')
save_s=$(echo "$save_line" | sed -E 's/.*\(([0-9.e+]+) MB in ([0-9.e+-]+) s\).*/\2/')
load_s=$(echo "$load_line" | sed -E 's/.* in ([0-9.e+-]+) s$/\1/')
count=$(/usr/bin/python3 -c "print(max(1, round($mb)))")
dd_w=$( { dd if=/dev/zero of="$work/dd.bin" bs=1M count="$count" conv=fsync 2>&1 >/dev/null; } | tail -1)
dd_r=$( { dd if="$work/dd.bin" of=/dev/null bs=1M 2>&1 >/dev/null; } | tail -1)

# Signal to exit: SIGUSR1 to mpirun while training runs.
mpirun --oversubscribe -np 2 "$bin" train "${common[@]}" --train.steps 100000 --output.dir "$work/sig" 2> "$work/sig.log" &
pid=$!
sleep 6
t0=$(date +%s.%N)
kill -USR1 "$pid"
set +e; wait "$pid"; code=$?; set -e
t1=$(date +%s.%N)

/usr/bin/python3 - "$mb" "$save_s" "$load_s" "$dd_w" "$dd_r" "$t0" "$t1" "$code" <<'PY'
import re, sys
mb, save_s, load_s = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
def rate(line):  # dd's "... copied, 0.123 s, 456 MB/s"
    m = re.search(r"copied, ([0-9.e+-]+) s", line)
    return mb / float(m.group(1))
ddw, ddr = rate(sys.argv[4]), rate(sys.argv[5])
print(f"checkpoint of {mb:.1f} MB (stories15M shape: fp32 weights + AdamW moments), np=2:")
print(f"  save {mb / save_s:7.1f} MB/s  vs dd write+fsync {ddw:7.1f} MB/s  ratio {mb / save_s / ddw:.2f}")
print(f"  load {mb / load_s:7.1f} MB/s  vs dd read        {ddr:7.1f} MB/s  ratio {mb / load_s / ddr:.2f}"
      "  (page cache warm for both)")
print(f"  SIGUSR1 to mpirun exit (checkpoint included): {float(sys.argv[7]) - float(sys.argv[6]):.2f} s, "
      f"exit code {sys.argv[8]}")
PY
