#!/usr/bin/env bash
# On a 2-GPU machine: the full case (val + infer, full test set, random 7B weights) with
# torchrun on both GPUs, then shared-prefix infer alone on one GPU of the same machine.
# Scaling is computed against that 1-GPU run; predictions are also compared, val and infer,
# with a 1-GPU full-case run carried in $REF_RUN (a run folder from another machine of the
# same card, e.g. bench/device_all.sh's `fast` run).
set -uo pipefail
WORK=/tmp/mmlubench-x2
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
echo "=== dp2 $(date -u +%T)"
# shellcheck disable=SC2086
CUDA_VISIBLE_DEVICES=0,1 timeout 400 python3 -m torch.distributed.run --nproc-per-node 2 \
  -m mmlubench run "${common[@]}" --engine shared-prefix --run-name dp2 ${FAST_ARGS:-} \
  > "$WORK/dp2.log" 2>&1
echo "rc=$?"
echo "=== one GPU, infer only $(date -u +%T)"
# shellcheck disable=SC2086
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 -m mmlubench run "${common[@]}" --engine shared-prefix \
  --no-validation --run-name one ${FAST_ARGS:-} > "$WORK/one.log" 2>&1
echo "rc=$?"
for f in "$WORK"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|OMP_NUM|^\*+$" "$f" | tail -9; done
python3 bench/scaling.py --one "$WORK"/runs/*_one --many "$WORK"/runs/*_dp2 \
  --out "$WORK/scaling-same-machine.json"
[ -n "${REF_RUN:-}" ] && python3 bench/scaling.py --one "$REF_RUN" --many "$WORK"/runs/*_dp2 \
  --out "$WORK/scaling-vs-ref-run.json"
tar -czf "$OUTD/x2.tar.gz" -C "$WORK" .
