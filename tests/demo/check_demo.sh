#!/usr/bin/env bash
# A shortened demo run: SmolLM2-135M-Instruct fine-tuned with DEMO_METHOD
# (lora or qlora) in DEMO_DTYPE (fp32 or bf16) for DEMO_STEPS steps (default 12),
# scored on DEMO_PROMPTS held-out prompts (default 12) by exact match.
#
# It must score tuned >= base + 0.4 and tuned >= 0.5 (6 of 12), and the
# merged model must answer a held-out prompt with a date in ISO form. Measured
# (2026-12-07, AVX-512/AMX): base 0/12, tuned 11/12 in fp32 and in bf16 (the
# same answers), 10/12 with QLoRA; the bars leave 4 to 5 answers of slack.
# Why they hold on any CPU: see the README's demo section. Exit 77 (skip) when the model cannot be
# downloaded (PyPI unreachable).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:?usage: check_demo.sh WORKDIR BUILD_DIR}
export LLAMAFT_BUILD_DIR=${2:?usage: check_demo.sh WORKDIR BUILD_DIR}
export DEMO_DIR=$work DEMO_STEPS=${DEMO_STEPS:-12} DEMO_PROMPTS=${DEMO_PROMPTS:-12} DEMO_SKIP_BUILD=1
rc=0
"$root/scripts/demo.sh" > "$work.log" 2>&1 || rc=$?
if [ "$rc" -eq 77 ]; then
  tail -n 3 "$work.log"
  echo "SKIP: SmolLM2-135M-Instruct could not be downloaded"
  exit 77
fi
[ "$rc" -eq 0 ] || { cat "$work.log"; exit 1; }
sed -n '/^Phase timings:/,/^$/p' "$work.log"
/usr/bin/python3 - "$work" "$work.log" <<'PY'
import json, re, sys
work, log = sys.argv[1], open(sys.argv[2]).read()
r = json.load(open(f"{work}/compare.json"))
base, tuned = r["base_accuracy"], r["tuned_accuracy"]
ok = tuned >= base + 0.4 and tuned >= 0.5
print(f"demo exact match ({r['dtype']}, {r['n']} held-out prompts): base {base:.2f} -> tuned {tuned:.2f} "
      f"(needs tuned >= base + 0.40 and >= 0.50): {'ok' if ok else 'FAIL'}")
# The merged folder answers the first held-out prompt with a date in ISO form
# (the base alone rewrites it in words, or adds text).
answers = re.findall(r"^  A: (.*)$", log, re.M)
merged_ok = bool(answers) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", answers[0].strip()) is not None
print(f"merged model's answer to a held-out prompt: {answers[0] if answers else None!r}: "
      f"{'ok' if merged_ok else 'FAIL'}")
sys.exit(0 if ok and merged_ok else 1)
PY
