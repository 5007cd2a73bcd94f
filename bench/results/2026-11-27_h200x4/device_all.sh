#!/usr/bin/env bash
# Everything on one 4-GPU machine in one call (random weights of the real 7B config, fp16):
#   GPU0        fast      the full case, full test set: padded eager val + shared-prefix infer
#   GPU1        parity    bench/parity.py, then
#               reference the reference method (inductor, batch-1 all-logits val), 342 questions
#   GPU2,3      dp2       torchrun 2 ranks, shared-prefix infer only, full test set
#   GPU0-3      dp4       (after the others) torchrun 4 ranks, full case with val
# Each job before dp4 compiles cold (own Inductor cache); dp4 reuses fast's cache.
# Results: $OUT/all.tar.gz; summaries printed last.
set -uo pipefail
T0=$(date +%s)
WORK=/tmp/mmlubench-all
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
job() {  # job NAME GPUS CACHE CMD...: runs in the background, logs to $WORK/NAME.log
  local name=$1 gpus=$2 cache=$3; shift 3
  ( export CUDA_VISIBLE_DEVICES=$gpus TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$cache
    echo "start $name $(date -u +%T)"; timeout "${JOB_TIMEOUT:-500}" "$@"
    echo "end $name rc=$? $(date -u +%T)" ) > "$WORK/$name.log" 2>&1 &
}
# shellcheck disable=SC2086
job fast 0 fast python3 -m mmlubench run "${common[@]}" --engine shared-prefix --run-name fast \
  ${FAST_ARGS:-}
pid_fast=$!
job parity-reference 1 ref bash -c "python3 bench/parity.py --model-dir $MODEL --mmlu-dir $MMLU \
  --device $DEVICE --precision $PREC --out $WORK/parity.json ${PARITY_ARGS:-} && \
  python3 -m mmlubench run ${common[*]} --engine inductor ${REF_ARGS:---limit 6} \
  --run-name reference --set engines.eager.method=reference"
pid_ref=$!
# shellcheck disable=SC2086
job dp2 2,3 dp2 python3 -m torch.distributed.run --nproc-per-node 2 -m mmlubench run \
  "${common[@]}" --engine shared-prefix --no-validation --run-name dp2 ${FAST_ARGS:-}
pid_dp2=$!
wait $pid_fast $pid_ref $pid_dp2
# dp4 gets what is left of the GPU run's 600 s, less time to summarize.
JOB_TIMEOUT=$(( ${CALL_LIMIT:-585} - $(date +%s) + T0 ))
# shellcheck disable=SC2086
job dp4 0,1,2,3 fast python3 -m torch.distributed.run --nproc-per-node 4 -m mmlubench run \
  "${common[@]}" --engine shared-prefix --run-name dp4 ${FAST_ARGS:-}
wait
for f in "$WORK"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class" "$f" | tail -14; done
python3 bench/summarize.py --runs "$WORK"/runs/*_reference "$WORK"/runs/*_fast \
  --parity "$WORK/parity.json" --out "$WORK/bench.json"
python3 bench/scaling.py --one "$WORK"/runs/*_fast --many "$WORK"/runs/*_dp2 "$WORK"/runs/*_dp4 \
  --out "$WORK/scaling.json"
tar -czf "$OUTD/all.tar.gz" -C "$WORK" .
