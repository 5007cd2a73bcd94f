#!/usr/bin/env bash
# Data-parallel runs of the full case (random 7B weights, full test set, val + infer) with
# torchrun on 2 and 4 GPUs of one machine, compared with the 1-GPU run of the same machine
# ($ONE, by default the `fast` run left by bench/device_parallel.sh on this warm machine).
set -uo pipefail
OUTD=${OUT:-/tmp/mmlubench-bench}
WORK=/tmp/mmlubench-scale
rm -rf "$WORK"; mkdir -p "$WORK/runs" "$OUTD"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
MODEL=${MODEL:-.devdata/deepseek-llm-7b-base}
MMLU=${MMLU:-.devdata/mmlu}
DEVICE=${DEVICE:-cuda}
PREC=${PREC:-fp16}
ONE=${ONE:-$(ls -d /tmp/mmlubench-work/runs/*_fast 2>/dev/null | head -1)}
common=(--random-weights --data-dir . --weight-dir "$MODEL" --mmlu-dir "$MMLU" --device "$DEVICE"
        --precision "$PREC" --output-dir "$WORK/runs" --no-progress)
for n in ${GPUS:-2 4}; do
  echo "=== $n GPUs $(date -u +%T)"
  devs=$(seq -s, 0 $((n - 1)))
  # shellcheck disable=SC2086
  CUDA_VISIBLE_DEVICES=$devs timeout "${JOB_TIMEOUT:-400}" python3 -m torch.distributed.run \
    --nproc-per-node "$n" -m mmlubench run "${common[@]}" --engine shared-prefix \
    --run-name "dp$n" ${FAST_ARGS:-} > "$WORK/dp$n.log" 2>&1
  echo "rc=$?"; grep -v -i -E "warn|tokenizer_class" "$WORK/dp$n.log" | tail -12
done
if [ -n "$ONE" ]; then
  cp -r "$ONE" "$WORK/runs/one-gpu"
  python3 bench/scaling.py --one "$WORK/runs/one-gpu" --many "$WORK"/runs/*_dp* \
    --out "$WORK/scaling.json"
fi
tar -czf "$OUTD/scaling.tar.gz" -C "$WORK" .
