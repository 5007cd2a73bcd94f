#!/usr/bin/env bash
# As run on 2026-11-28 (call A; see bench/results/2026-11-28_h200x2/README.md). Caveat found
# then: with CODE set to another tree, `python3 -m mmlubench` still imports the checkout's own
# package (the working directory comes first on sys.path): run it from the tree under test.
# Two GPU runs on one 2-GPU machine (random weights of the real configs, fp16, full test set).
#   CALL=A  GPU0: deepseek full case (cold compile), infer again (warm compile cache),
#                 the reference method on the fixed 342-question sample (--limit 6);
#           GPU1: the reference method (inductor, infer only) over all 14042 questions,
#                 interrupted with SIGINT at STOP_S seconds (its progress log is kept).
#   CALL=B  GPU1: `run --resume` of that reference run to its end (same warm machine);
#           GPU0: bench/parity.py, bench/profile.py, the previous commit's infer pass
#                 (OLD=.devdata/old), llama3_8b_mmlu reference sample + full case.
# Everything stays under .devdata/session (ignored by git, kept on the warm machine between
# calls); each call leaves one tarball and a summary under $OUT.
set -uo pipefail
T0=$(date +%s)
CALL=${CALL:-A}
S=$PWD/.devdata/session
mkdir -p "$S/runs" "$S/logs" "${OUT:-/tmp/out}"
CODE=${CODE:-$PWD}  # the mmlubench tree to run (default: this checkout)
export PYTHONPATH=$CODE PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
DS=$PWD/.devdata/deepseek-llm-7b-base
L3=$PWD/.devdata/llama-3-8b
MMLU=$PWD/.devdata/mmlu
common=(--random-weights --data-dir / --mmlu-dir "$MMLU" --device cuda --precision fp16
        --output-dir "$S/runs" --no-progress)
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$S/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$S/versions.txt"
on() {  # on GPU CACHE LOG CMD...: run in the foreground on one GPU, logging
  local gpu=$1 cache=$2 log=$3; shift 3
  echo "start $log $(date -u +%T)" >> "$S/logs/$log.log"
  CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=$S/inductor-$cache "$@" >> "$S/logs/$log.log" 2>&1
  echo "end $log rc=$? $(date -u +%T) t=$(( $(date +%s) - T0 ))s" >> "$S/logs/$log.log"
}
if [ "$CALL" = A ]; then
  ( on 1 ref reference-full timeout -s INT "${STOP_S:-540}" python3 -m mmlubench run "${common[@]}" \
      --weight-dir "$DS" --engine inductor --no-validation --run-name reference-full ) &
  ( on 0 fast fast python3 -m mmlubench run "${common[@]}" --weight-dir "$DS" --run-name fast
    on 0 fast warm python3 -m mmlubench run "${common[@]}" --weight-dir "$DS" --no-validation \
      --run-name warm
    on 0 ref342 reference python3 -m mmlubench run "${common[@]}" --weight-dir "$DS" \
      --engine inductor --limit 6 --set engines.eager.method=reference --run-name reference ) &
  wait
else
  ( on 1 ref reference-full-resume python3 -m mmlubench run --resume "$(ls -d "$S"/runs/*_reference-full | head -1)" ) &
  ( on 0 fast parity python3 "$CODE"/bench/parity.py --model-dir "$DS" --mmlu-dir "$MMLU" --device cuda \
      --precision fp16 --out "$S/parity.json"
    on 0 fast profile python3 "$CODE"/bench/profile.py --model-dir "$DS" --mmlu-dir "$MMLU" --packs 3
    on 0 old old bash -c "cd $PWD/.devdata/old && PYTHONPATH=\$PWD MMLUBENCH_GIT_COMMIT=bb0e0aa python3 -m mmlubench run ${common[*]} --weight-dir $DS --no-validation --run-name old-infer"
    on 0 l3 llama3-reference python3 -m mmlubench run "${common[@]}" --config "$CODE"/mmlubench/configs/llama3_8b_mmlu.yaml \
      --weight-dir "$L3" --engine inductor --limit 6 --set engines.eager.method=reference \
      --run-name llama3-reference
    on 0 l3 llama3-fast python3 -m mmlubench run "${common[@]}" --config "$CODE"/mmlubench/configs/llama3_8b_mmlu.yaml \
      --weight-dir "$L3" --run-name llama3-fast ) &
  wait
fi
for f in "$S"/logs/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class" "$f" | tail -16; done
tar -czf "${OUT:-/tmp/out}/session-$CALL.tar.gz" -C "$S" --exclude='inductor-*' .
echo "call $CALL took $(( $(date +%s) - T0 )) s"
