#!/usr/bin/env bash
# scripts/gpu_check.sh on a machine without a GPU must fail (exit non-zero,
# saying why), never pass by skipping, and leave only its log under $OUT.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
# No nvidia-smi on the PATH (a GPU machine's would be found first otherwise).
for tool in bash python3 cmake timeout date tee mkdir cat tail printf; do
  p=$(command -v "$tool") && ln -s "$p" "$tmp/bin/$tool"
done
OUT=$tmp/out LLAMAFT_GPU_WORK=$tmp/work PATH=$tmp/bin bash "$root/scripts/gpu_check.sh" > "$tmp/stdout" 2>&1
rc=$?
ok=1
[[ $rc -ne 0 ]] || { echo "FAIL: gpu_check.sh exited 0 without a GPU"; ok=0; }
grep -q "no GPU visible" "$tmp/stdout" || { echo "FAIL: no 'no GPU visible' message"; cat "$tmp/stdout"; ok=0; }
extra=$(cd "$tmp/out" && ls -A | grep -v '^gpu_check.log$' || true)
[[ -z "$extra" ]] || { echo "FAIL: \$OUT holds more than the log: $extra"; ok=0; }
[[ $ok -eq 1 ]] && echo "gpu_check without a GPU: exit $rc, message given, \$OUT holds only the log: PASSED"
[[ $ok -eq 1 ]]
