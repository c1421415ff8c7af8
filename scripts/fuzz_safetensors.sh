#!/usr/bin/env bash
# Real libFuzzer run of the safetensors header parser (clang, ASan + UBSan).
# Builds the harness straight from the sources (no CMake needed), seeds a
# corpus with valid and malformed files plus a JSON dictionary, and fuzzes
# for the given time. Crashes land in $FUZZ_WORKDIR as crash-*; replay one
# with the built binary, or with build/tests/fuzz/fuzz_safetensors_replay 0 FILE.
# Usage: scripts/fuzz_safetensors.sh [seconds=60]    (env: FUZZ_WORKDIR, CXX)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
work=${FUZZ_WORKDIR:-/tmp/llamaft-fuzz}
cxx=${CXX_FUZZ:-clang++}
mkdir -p "$work/corpus"

"$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$root/src" \
  "$root/tests/fuzz/fuzz_safetensors_header.cpp" "$root/src/io/safetensors.cpp" "$root/src/core/error.cpp" "$root/src/core/util.cpp" \
  -o "$work/fuzz_safetensors"

# Seeds: an 8-byte little-endian header length, the JSON header, the data.
/usr/bin/python3 - "$work/corpus" <<'PY'
import os, struct, sys
out = sys.argv[1]
def seed(name, header, data=b"", length=None):
    h = header.encode() if isinstance(header, str) else header
    n = len(h) if length is None else length
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<Q", n) + h + data)
seed("valid_f32", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"AAAA")
seed("valid_meta_two", '{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,3],'
     '"data_offsets":[0,12]},"v":{"dtype":"F16","shape":[2],"data_offsets":[12,16]}}    ', b"B" * 16)
seed("valid_empty", "{}      ")
seed("zero_sized", '{"z":{"dtype":"U8","shape":[0,7],"data_offsets":[0,0]}}')
seed("gap", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"A" * 8)
seed("overflow", '{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}', b"A" * 4)
seed("dup", '{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"I8","shape":[1],"data_offsets":[1,2]}}', b"AA")
seed("bad_utf8", b'{"\xc3\x28":1}')
seed("long_length", "{}", length=1 << 40)
PY

cat > "$work/safetensors.dict" <<'DICT'
"{"
"}"
"["
"]"
":"
","
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F64\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"I64\""
"\"I32\""
"\"I16\""
"\"I8\""
"\"U8\""
"\"BOOL\""
"18446744073709551615"
"9223372036854775808"
"4294967296"
"-1"
"1e999"
"null"
"\\u0000"
DICT

cd "$work"
"$work/fuzz_safetensors" -max_total_time="$secs" -max_len=4096 -dict="$work/safetensors.dict" \
  -print_final_stats=1 "$work/corpus"
