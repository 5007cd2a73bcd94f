#!/usr/bin/env bash
# One call on a 4-GPU machine: independent single-GPU jobs side by side, one GPU each.
#   GPU0 reference  the reference method (inductor + batch-1 all-logits val) on 342 questions
#   GPU1 parity     shared-prefix and padded eager vs eager batch 1 (bench/parity.py)
#   GPU2 fast       the full case, full test set: padded eager val + shared-prefix infer
#   GPU3 fast-noval shared-prefix infer alone (a second 1-GPU figure; run-to-run spread)
# Everything lands in $OUT/bench.tar.gz (runs, JSON, logs); the summary is printed last.
set -uo pipefail
OUTD=${OUT:-/tmp/mmlubench-bench}
WORK=/tmp/mmlubench-work
rm -rf "$WORK"; mkdir -p "$WORK/runs" "$OUTD"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
MODEL=${MODEL:-.devdata/deepseek-llm-7b-base}
MMLU=${MMLU:-.devdata/mmlu}
DEVICE=${DEVICE:-cuda}
PREC=${PREC:-fp16}
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$WORK/gpus.csv" 2>&1
cat "$WORK/gpus.csv"
common=(--random-weights --data-dir . --weight-dir "$MODEL" --mmlu-dir "$MMLU" --device "$DEVICE"
        --precision "$PREC" --output-dir "$WORK/runs" --no-progress)
job() {  # job NAME GPU CMD...
  local name=$1 gpu=$2; shift 2
  ( export CUDA_VISIBLE_DEVICES=$gpu; echo "start $name $(date -u +%T)";
    timeout "${JOB_TIMEOUT:-560}" "$@"; echo "end $name rc=$? $(date -u +%T)" ) \
    > "$WORK/$name.log" 2>&1 &
}
# shellcheck disable=SC2086
job reference 0 python3 -m mmlubench run "${common[@]}" --engine inductor ${REF_ARGS:---limit 6} \
  --run-name reference --set engines.eager.batch_size=1 --set engines.eager.full_logits=true
job parity 1 python3 bench/parity.py --model-dir "$MODEL" --mmlu-dir "$MMLU" --device "$DEVICE" \
  --precision "$PREC" --out "$WORK/parity.json" ${PARITY_ARGS:-}
# shellcheck disable=SC2086
job fast 2 python3 -m mmlubench run "${common[@]}" --engine shared-prefix --run-name fast ${FAST_ARGS:-}
# shellcheck disable=SC2086
job fast-noval 3 python3 -m mmlubench run "${common[@]}" --engine shared-prefix --no-validation \
  --run-name fast-noval ${FAST_ARGS:-}
wait
for f in "$WORK"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class" "$f" | tail -25; done
python3 bench/summarize.py --runs "$WORK"/runs/*_reference "$WORK"/runs/*_fast "$WORK"/runs/*_fast-noval \
  --parity "$WORK/parity.json" --out "$WORK/bench.json"
tar -czf "$OUTD/bench.tar.gz" -C "$WORK" .
