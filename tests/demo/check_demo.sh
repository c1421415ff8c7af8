#!/usr/bin/env bash
# A shortened demo run (DEMO_STEPS LoRA or QLoRA steps, default 300; DEMO_METHOD; 20 held-out prompts) must raise exact-match
# accuracy from the base model's by at least 50 points, with the fine-tuned
# model stopping at EOS by itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:?usage: check_demo.sh WORKDIR BUILD_DIR}
export LLAMAFT_BUILD_DIR=${2:?usage: check_demo.sh WORKDIR BUILD_DIR}
export DEMO_DIR=$work DEMO_STEPS=${DEMO_STEPS:-300} DEMO_PROMPTS=20 DEMO_SKIP_BUILD=1
"$root/scripts/demo.sh" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
result=$(tail -n 20 "$work.log" | grep '"tuned_accuracy"')
echo "$result"
/usr/bin/python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
ok = r["tuned_accuracy"] >= r["base_accuracy"] + 0.5
print(f"demo accuracy {r['base_accuracy']:.2f} -> {r['tuned_accuracy']:.2f}: {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
