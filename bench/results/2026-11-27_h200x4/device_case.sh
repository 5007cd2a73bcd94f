#!/usr/bin/env bash
# One case on one GPU (default deepseek_7b_MMLU; CONFIG and MODEL pick another), random weights
# of the real config, in one call:
#   reference  the reference method through the CLI: val = eager batch 1 with logits at every
#              position, infer = inductor (reduce-overhead, dynamic), on a fixed sample
#              (first 6 questions of each subject: 342 questions)
#   parity     bench/parity.py: shared-prefix and padded eager against eager batch 1
#   fast       the full case through the CLI: val = padded eager, infer = shared-prefix
# then bench/summarize.py; everything lands in $OUT/case.tar.gz. Data: .devdata/ (bench/README.md).
#   STAGES="reference parity" OUT=/tmp/x bash bench/device_case.sh
#   CONFIG=mmlubench/configs/llama3_8b_mmlu.yaml MODEL=.devdata/llama-3-8b STAGES="reference fast" \
#     bash bench/device_case.sh
set -uo pipefail
STAGES=${STAGES:-"reference parity fast"}
REF_ARGS=${REF_ARGS:-"--limit 6"}
FAST_ARGS=${FAST_ARGS:-""}
WORK=/tmp/mmlubench-case
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
runs=()
for stage in $STAGES; do
  echo "=== stage $stage $(date -u +%T)"
  case $stage in
    reference)
      # shellcheck disable=SC2086
      python3 -m mmlubench run "${common[@]}" --engine inductor $REF_ARGS --run-name reference \
        --set engines.eager.method=reference
      runs+=("$WORK"/runs/*_reference) ;;
    parity)
      python3 bench/parity.py --model-dir "$MODEL" --mmlu-dir "$MMLU" --device "$DEVICE" \
        --precision "$PREC" --out "$WORK/parity.json" ;;
    fast)
      # shellcheck disable=SC2086
      python3 -m mmlubench run "${common[@]}" --engine shared-prefix $FAST_ARGS --run-name fast
      runs+=("$WORK"/runs/*_fast) ;;
  esac
done
echo "=== summary $(date -u +%T)"
parity=()
[ -f "$WORK/parity.json" ] && parity=(--parity "$WORK/parity.json")
[ ${#runs[@]} -gt 0 ] && python3 bench/summarize.py --runs "${runs[@]}" "${parity[@]}" \
  --out "$WORK/bench.json"
tar -czf "$OUTD/case.tar.gz" -C "$WORK" .
