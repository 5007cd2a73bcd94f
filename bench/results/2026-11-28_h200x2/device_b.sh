#!/usr/bin/env bash
# Call B of 2026-11-28, as run, on the machine call A left warm (BUDGET: seconds for all jobs):
#   GPU1: `run --resume` of call A's reference run (it found nothing: the call's carry of
#         .devdata replaced the folder that held it), the previous commit's infer pass
#         (.devdata/old = `git archive bb0e0aa mmlubench bench`), llama3_8b_mmlu reference sample;
#   GPU0: deepseek full case, llama3_8b_mmlu full case, bench/parity.py (prefix-cache, padded).
# A run folder meant to outlive a call must live outside the carried paths.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET:-560}))
S=$PWD/.devdata/session; mkdir -p "$S/runs" "$S/logs" "$S/runsB"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
DS=$PWD/.devdata/deepseek-llm-7b-base; L3=$PWD/.devdata/llama-3-8b; MMLU=$PWD/.devdata/mmlu
c=(--random-weights --data-dir / --mmlu-dir "$MMLU" --device cuda --precision fp16 --output-dir "$S/runsB" --no-progress)
left() { local l=$(( END - $(date +%s) )); [ $l -gt $1 ] && l=$1; [ $l -lt 5 ] && l=5; echo $l; }
on() { local gpu=$1 cache=$2 log=$3 cap=$4; shift 4; local t; t=$(left $cap)
  echo "start $log $(date -u +%T) timeout $t" >> "$S/logs/$log.log"
  CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=$S/inductor-$cache timeout -s INT $t "$@" >> "$S/logs/$log.log" 2>&1
  echo "end $log rc=$? $(date -u +%T) t=$(( $(date +%s) - T0 ))s" >> "$S/logs/$log.log"; }
grep -c '"kind": *"batch"' "$S"/runs/*_reference-full/progress.jsonl > "$S/logs/ref-progress-before.txt" 2>&1
( on 1 ref reference-full-resume 330 python3 -m mmlubench run --resume "$(ls -d "$S"/runs/*_reference-full | head -1)" --no-progress
  on 1 old old-infer 110 bash -c "cd $PWD/.devdata/old && PYTHONPATH=\$PWD MMLUBENCH_GIT_COMMIT=bb0e0aa python3 -m mmlubench run ${c[*]} --weight-dir $DS --no-validation --run-name old-infer"
  on 1 l3 llama3-reference 200 python3 -m mmlubench run "${c[@]}" --config mmlubench/configs/llama3_8b_mmlu.yaml --weight-dir "$L3" --engine inductor --limit 6 --set engines.eager.method=reference --run-name llama3-reference ) &
( on 0 fast2 fastB 230 python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --run-name fast
  on 0 l3f llama3-fast 200 python3 -m mmlubench run "${c[@]}" --config mmlubench/configs/llama3_8b_mmlu.yaml --weight-dir "$L3" --run-name llama3-fast
  on 0 par parity 150 python3 bench/parity.py --model-dir "$DS" --mmlu-dir "$MMLU" --out "$S/parity.json" --only eager_prefix_cache,eager_padded ) &
wait
for f in "$S"/logs/{reference-full-resume,old-infer,llama3-reference,fastB,llama3-fast,parity}.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  |^\* " "$f" | tail -9; done
tar -czf "$OUT/session-B.tar.gz" -C "$S" --exclude='inductor-*' .
echo "call B $(( $(date +%s) - T0 )) s"
