#!/usr/bin/env bash
# The session's measuring call (random weights of the real configs, full test split), as run on
# 2026-11-28 (bench/results/2026-11-28_h200x2_fp8). One GPU runs, in order of importance, each step capped so that the
# call ends inside BUDGET_S seconds:
#   1. the deepseek case, defaults, fp16 (`mmlubench run --random-weights`)
#   2. the infer pass in fp8 (`--precision fp8 --no-validation`; its agreement with the fp16
#      val of step 1 is computed from both runs' predictions by bench/agreement.py)
#   3. bench/parity.py: prefix-cache val, shared-prefix infer (carrying prefixes) and fp8
#      against eager batch 1 on >= 500 real questions
#   4. bench/valspeed.py on a sample: val with and without SDPA's cuDNN backend
#   5. bench/kernel_profile.py on the val method, then on the infer engine
# A second GPU, when the machine has one, runs the reference method on the fixed 342-question
# sample, then the Llama-2 case. Everything comes back as one tarball (at most 8 files come
# back from $OUT). Set .devdata/COMMIT to the commit under test before the call.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-520}))
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true PYTHONPATH=$PWD
export MMLUBENCH_GIT_COMMIT=$(cat .devdata/COMMIT 2>/dev/null)
R=$PWD; DS=$R/.devdata/deepseek-llm-7b-base; L2=$R/.devdata/llama-2-7b; MMLU=$R/.devdata/mmlu
W=/tmp/final; L="$W/logs"; rm -rf "$W"; mkdir -p "$L" "$W/runs"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
echo "$MMLUBENCH_GIT_COMMIT" > "$W/commit.txt"
NGPU=$(nvidia-smi -L | wc -l)
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
on() {  # on GPU LOG CAP CMD...: run with a timeout of min(CAP, time left), skip when none left
  local gpu=$1 log=$2 t; t=$(left "$3"); shift 3
  if [ "$t" -lt 20 ]; then echo "skipped $log: no time left" >> "$L/$log.log"; return; fi
  echo "start $log t=$(( $(date +%s) - T0 ))s timeout ${t}s" >> "$L/$log.log"
  CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$gpu timeout -s INT "$t" "$@" >> "$L/$log.log" 2>&1
  echo "end $log rc=$? t=$(( $(date +%s) - T0 ))s" >> "$L/$log.log"
}
c=(--random-weights --data-dir / --mmlu-dir "$MMLU" --device cuda --output-dir "$W/runs" --no-progress)
P=(--model-dir "$DS" --mmlu-dir "$MMLU")
if [ "$NGPU" -ge 2 ]; then
  ( on 1 reference 250 python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --engine inductor --limit 6 \
      --set engines.eager.method=reference --run-name reference
    on 1 llama2 250 python3 -m mmlubench run "${c[@]}" --config mmlubench/configs/llama2_7b_mmlu.yaml \
      --weight-dir "$L2" --run-name llama2 ) &
fi
( on 0 fast 220 python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --run-name fast
  on 0 fp8 100 python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --precision fp8 --no-validation --run-name fp8
  on 0 parity 150 python3 bench/parity.py "${P[@]}" --out "$W/parity.json" --only eager_prefix_cache,shared_prefix,fp8
  on 0 val-cudnn 70 python3 bench/valspeed.py "${P[@]}" --every-subject 12 --budget-s 45 --out "$W/val-cudnn.json" \
    --try eager:method=prefix-cache --try eager:method=prefix-cache,cudnn_attention=true
  on 0 profile-val 45 python3 bench/kernel_profile.py "${P[@]}" --engine eager:method=prefix-cache --skip 3 --batches 10 --out "$W/profile-val.json"
  on 0 profile-infer 45 python3 bench/kernel_profile.py "${P[@]}" --engine shared-prefix --skip 2 --batches 3 --out "$W/profile-infer.json" ) &
wait
for r in "$W"/runs/*/; do n=$(basename "$r" | sed 's/.*_//'); cp "$r/result.json" "$W/$n.result.json" 2>/dev/null
  cp "$r"/predictions.jsonl* "$W/" 2>/dev/null && for p in "$W"/predictions.jsonl*; do mv "$p" "$W/$n.$(basename "$p")"; done; done
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -8; done
rm -rf "$W/runs"; tar -czf "$OUT/final.tar.gz" -C "$W" .
echo "call took $(( $(date +%s) - T0 )) s"
