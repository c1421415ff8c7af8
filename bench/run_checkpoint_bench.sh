#!/usr/bin/env bash
# Checkpoint bandwidth on this disk, in one run, against dd of the same bytes.
# For each model (the `small` preset, 293 MB of fp32 weights + AdamW moments,
# and `medium`, 110M parameters, 1.3 GB) and each rank count:
#   save   a synchronous save (checkpoint.async = false) against
#          `dd if=/dev/zero bs=1M conv=fsync` of the same byte count;
#   load   a resume with the page cache dropped, against a dd read of the
#          same checkpoint file with the page cache dropped (both warm where
#          the cache cannot be dropped: the script says which);
#   async  periodic saves in the background (checkpoint.async = true, every
#          CKPT_BENCH_EVERY steps): the time training stopped per save
#          against the synchronous save, and train_s against a run without
#          saves (what the saves cost the steps in all, writer thread included);
# and SIGUSR1 to mpirun's exit (its checkpoint included).
# Usage: bench/run_checkpoint_bench.sh
#   CKPT_BENCH_PRESETS="small medium"  CKPT_BENCH_NPS="1 2"  CKPT_BENCH_REPS=3  BENCH_DIR=/tmp/llamaft-ckpt-bench
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
work=${BENCH_DIR:-/tmp/llamaft-ckpt-bench}
presets=${CKPT_BENCH_PRESETS:-small medium}
nps=${CKPT_BENCH_NPS:-1 2}
every=${CKPT_BENCH_EVERY:-4}
reps=${CKPT_BENCH_REPS:-3}
rm -rf "$work"; mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc)
cache=cold
drop_caches() { sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || cache=warm; }
drop_caches
/usr/bin/python3 -c "
import json, random
r = random.Random(0)
with open('$work/data.jsonl', 'w') as f:
    for _ in range(64): f.write(json.dumps({'input_ids': [r.randrange(3, 32000) for _ in range(64)]}) + '\n')"
dd_seconds() { # dd's "... copied, 0.123 s, 456 MB/s"
  sed -nE 's/.*copied, ([0-9.e+-]+) s.*/\1/p' | tail -1
}
results="$work/results.txt"
: > "$results"

for preset in $presets; do
  "$bin" init --preset "$preset" --output "$work/$preset" >/dev/null
  for np in $nps; do
    threads=$(( cores / np > 0 ? cores / np : 1 ))
    run() { OMP_NUM_THREADS=$threads mpirun --oversubscribe --bind-to none -np "$np" "$bin" train \
      --model.path "$work/$preset" --data.path "$work/data.jsonl" --data.seq_len 64 --train.global_batch_size 2 \
      --output.export false --output.progress false "$@"; }
    tag="$preset-np$np"
    # This disk's speed drifts by 1.5x from one minute to the next, so each
    # figure is the median of CKPT_BENCH_REPS tries, each between two dd runs
    # of the same bytes (the ratio is against their mean).
    : > "$work/$tag-save.txt"; : > "$work/$tag-load.txt"
    # A first save, not counted, gives the byte count for dd.
    run --train.steps 2 --checkpoint.async false --output.dir "$work/$tag-sync" 2> "$work/$tag-save.log"
    mb=$(grep "checkpoint .*MB in" "$work/$tag-save.log" | tail -1 | sed -E 's/.*\(([0-9.e+]+) MB in.*/\1/')
    count=$(/usr/bin/python3 -c "print(max(1, round($mb * 1e6 / 1048576)))")
    for rep in $(seq "$reps"); do
      rm -rf "$work/$tag-sync"
      dd_w1=$( { dd if=/dev/zero of="$work/dd.bin" bs=1M count="$count" conv=fsync 2>&1 >/dev/null; } | dd_seconds)
      rm -f "$work/dd.bin"
      run --train.steps 2 --checkpoint.async false --output.dir "$work/$tag-sync" 2> "$work/$tag-save.log"
      line=$(grep "checkpoint .*MB in" "$work/$tag-save.log" | tail -1)
      mb=$(echo "$line" | sed -E 's/.*\(([0-9.e+]+) MB in ([0-9.e+-]+) s.*/\1/')
      save_s=$(echo "$line" | sed -E 's/.*\(([0-9.e+]+) MB in ([0-9.e+-]+) s.*/\2/')
      dd_w2=$( { dd if=/dev/zero of="$work/dd.bin" bs=1M count="$count" conv=fsync 2>&1 >/dev/null; } | dd_seconds)
      rm -f "$work/dd.bin"
      echo "$mb $save_s $dd_w1 $dd_w2" >> "$work/$tag-save.txt"
      h5="$work/$tag-sync/checkpoints/step_000002/state.h5"
      drop_caches
      dd_r1=$( { dd if="$h5" of=/dev/null bs=1M 2>&1 >/dev/null; } | dd_seconds)
      rm -rf "$work/$tag-load"; cp -r "$work/$tag-sync" "$work/$tag-load"
      drop_caches
      run --train.steps 3 --checkpoint.at_end false --output.dir "$work/$tag-load" 2> "$work/$tag-load.log"
      load_s=$(grep "resumed from" "$work/$tag-load.log" | sed -E 's/.* in ([0-9.e+-]+) s.*/\1/')
      drop_caches
      dd_r2=$( { dd if="$h5" of=/dev/null bs=1M 2>&1 >/dev/null; } | dd_seconds)
      file_mb=$(/usr/bin/python3 -c "import os; print(os.path.getsize('$h5') / 1e6)")
      echo "$file_mb $load_s $dd_r1 $dd_r2" >> "$work/$tag-load.txt"
    done
    # Periodic saves in the background, and the same steps without saves.
    steps=$(( 3 * every + 2 ))
    run --train.steps "$steps" --checkpoint.every_steps "$every" --checkpoint.at_end false \
      --output.dir "$work/$tag-async" 2> "$work/$tag-async.log"
    run --train.steps "$steps" --checkpoint.at_end false --output.dir "$work/$tag-none" 2> "$work/$tag-none.log"
    /usr/bin/python3 - "$tag" "$cache" "$work" >> "$results" <<'PY'
import json, re, statistics, sys
tag, cache, work = sys.argv[1:]
def tries(name):
    return [list(map(float, l.split())) for l in open(f"{work}/{tag}-{name}.txt")]
save = tries("save")  # mb, save_s, dd before, dd after
load = tries("load")  # file mb, load_s, dd before, dd after
mb = save[0][0]
save_ratio = [(d1 + d2) / 2 / t for _, t, d1, d2 in save]
load_ratio = [(d1 + d2) / 2 / t for _, t, d1, d2 in load]
save_s = statistics.median(t for _, t, _, _ in save)
def rng(xs):
    return f"{min(xs):.2f}-{max(xs):.2f}"
stalls, totals = [], []
for l in open(f"{work}/{tag}-async.log"):
    m = re.search(r"\(([0-9.e+]+) MB in ([0-9.e+-]+) s, written in the background; training stopped ([0-9.e+-]+) s", l)
    if m:
        totals.append(float(m.group(2)))
        stalls.append(float(m.group(3)))
ta = json.load(open(f"{work}/{tag}-async/summary.json"))["train_s"]
tn = json.load(open(f"{work}/{tag}-none/summary.json"))["train_s"]
print(f"{tag}: {mb:.1f} MB of state, {len(save)} tries")
print(f"  save  median {mb / save_s:7.1f} MB/s ({save_s:.2f} s); dd write+fsync of the same bytes "
      f"{statistics.median(mb / ((d1 + d2) / 2) for _, _, d1, d2 in save):7.1f} MB/s; "
      f"ratio median {statistics.median(save_ratio):.2f} (tries {rng(save_ratio)})")
load_s = statistics.median(t for _, t, _, _ in load)
print(f"  load  median {load[0][0] / load_s:7.1f} MB/s ({load_s:.2f} s); dd read of the same file "
      f"{statistics.median(load[0][0] / ((d1 + d2) / 2) for _, _, d1, d2 in load):7.1f} MB/s; "
      f"ratio median {statistics.median(load_ratio):.2f} (tries {rng(load_ratio)}; page cache {cache} for both)")
if stalls:
    worst = max(stalls[:-1] or stalls)
    print(f"  async {len(stalls)} saves: training stopped {', '.join(f'{s:.3f}' for s in stalls)} s "
          f"(each written in {', '.join(f'{t:.2f}' for t in totals)} s); the worst before the last, {worst:.3f} s, "
          f"is {worst / save_s:.1%} of the synchronous save (the last includes the wait at the end of training)")
    print(f"        train_s {ta:.2f} with the saves against {tn:.2f} without: {(ta - tn) / len(stalls):.3f} s per save, "
          f"{(ta - tn) / len(stalls) / save_s:.1%} of a synchronous save")
PY
  done
done

# Signal to exit: SIGUSR1 to mpirun while training runs (small, np 2).
OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np 2 "$bin" train --model.path "$work/${presets%% *}" \
  --data.path "$work/data.jsonl" --data.seq_len 64 --train.global_batch_size 2 --output.export false \
  --output.progress false --train.steps 100000 --checkpoint.every_steps 5 --output.dir "$work/sig" 2> "$work/sig.log" &
pid=$!
for _ in $(seq 600); do [ -f "$work/sig/metrics.jsonl" ] && [ "$(wc -l < "$work/sig/metrics.jsonl")" -ge 12 ] && break; sleep 0.1; done
t0=$(date +%s.%N)
kill -USR1 "$pid"
set +e; wait "$pid"; code=$?; set -e
t1=$(date +%s.%N)
echo "SIGUSR1 to mpirun exit (np 2, ${presets%% *}, its checkpoint included): $(/usr/bin/python3 -c "print(f'{$t1 - $t0:.2f}')") s, exit code $code" >> "$results"
grep -h "waited .* for the save in flight" "$work/sig.log" >> "$results" || true
echo "$(date -u +%Y-%m-%d) $(nproc) cores, $(uname -r), page cache $cache:"
cat "$results"
