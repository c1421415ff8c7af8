#!/usr/bin/env bash
# Real libFuzzer run of the safetensors header parser (clang, ASan + UBSan).
# Usage: scripts/fuzz_safetensors.sh [seconds=60]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
work=${FUZZ_WORKDIR:-/tmp/llamaft-fuzz}
mkdir -p "$work/corpus"
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I"$root/src" \
  "$root/tests/fuzz/fuzz_safetensors_header.cpp" "$root/src/io/safetensors.cpp" "$root/src/core/error.cpp" \
  -o "$work/fuzz_safetensors"
/usr/bin/python3 - "$work/corpus/seed1" <<'PY'
import struct, sys
h = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"AAAA")
PY
"$work/fuzz_safetensors" -max_total_time="$secs" -max_len=4096 "$work/corpus"
