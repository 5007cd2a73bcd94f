#!/usr/bin/env bash
# The session's measuring call (random weights of the real configs, fp16, full test split),
# as run on 2026-11-28 (session 3). One GPU does, in order:
#   1. bench/kernel_profile.py on the val method (is the device still idle most of val's time?)
#   2. bench/valspeed.py on a sample: val with and without SDPA's cuDNN backend
#   3. the deepseek case, defaults (`mmlubench run --random-weights`)
#   4. the infer pass in fp8 (`--precision fp8 --no-validation`), when the fp8 engine exists
#   5. bench/parity.py: prefix-cache val, shared-prefix infer (carrying prefixes) [and fp8]
#      against eager batch 1 on >= 500 real questions
#   6. bench/kernel_profile.py on the infer engine
# A second GPU, when the machine has one, runs the reference method on the fixed 342-question
# sample (for the ratio in the same call), then the Llama-2 case.
# Everything comes back as one tarball (at most 8 files come back from $OUT).
set -uo pipefail
T0=$(date +%s)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true PYTHONPATH=$PWD MMLUBENCH_GIT_COMMIT=$(cat .devdata/COMMIT 2>/dev/null)
R=$PWD; DS=$R/.devdata/deepseek-llm-7b-base; L2=$R/.devdata/llama-2-7b; MMLU=$R/.devdata/mmlu
W=/tmp/final; L="$W/logs"; rm -rf "$W"; mkdir -p "$L" "$W/runs"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
git -C "$R" rev-parse --short HEAD > "$W/commit.txt" 2>/dev/null || cat "$R/.devdata/COMMIT" > "$W/commit.txt" 2>/dev/null
NGPU=$(nvidia-smi -L | wc -l)
on() {  # on GPU LOG CMD...
  local gpu=$1 log=$2; shift 2
  echo "start $log t=$(( $(date +%s) - T0 ))s" >> "$L/$log.log"
  CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$gpu "$@" >> "$L/$log.log" 2>&1
  echo "end $log rc=$? t=$(( $(date +%s) - T0 ))s" >> "$L/$log.log"
}
c=(--random-weights --data-dir / --mmlu-dir "$MMLU" --device cuda --output-dir "$W/runs" --no-progress)
P=(--model-dir "$DS" --mmlu-dir "$MMLU")
if [ "$NGPU" -ge 2 ]; then
  ( on 1 reference python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --engine inductor --limit 6 \
      --set engines.eager.method=reference --run-name reference
    on 1 llama2 python3 -m mmlubench run "${c[@]}" --config mmlubench/configs/llama2_7b_mmlu.yaml \
      --weight-dir "$L2" --run-name llama2 ) &
fi
( on 0 profile-val python3 bench/kernel_profile.py "${P[@]}" --engine eager:method=prefix-cache --skip 3 --batches 10 --out "$W/profile-val.json"
  on 0 val-cudnn python3 bench/valspeed.py "${P[@]}" --every-subject 12 --budget-s 60 --out "$W/val-cudnn.json" \
    --try eager:method=prefix-cache --try eager:method=prefix-cache,cudnn_attention=true
  on 0 fast python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --run-name fast
  FP8=""
  if [ -f mmlubench/engines/fp8.py ]; then
    on 0 fp8 python3 -m mmlubench run "${c[@]}" --weight-dir "$DS" --precision fp8 --no-validation --run-name fp8
    FP8=",fp8"
  fi
  on 0 parity timeout -s INT 150 python3 bench/parity.py "${P[@]}" --out "$W/parity.json" --only "eager_prefix_cache,shared_prefix$FP8"
  on 0 profile-infer python3 bench/kernel_profile.py "${P[@]}" --engine shared-prefix --skip 2 --batches 3 --out "$W/profile-infer.json" ) &
wait
for r in "$W"/runs/*/; do cp "$r/result.json" "$W/$(basename "$r" | sed 's/.*_//').result.json" 2>/dev/null; done
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -12; done
tar -czf "$OUT/final.tar.gz" -C "$W" .
echo "call took $(( $(date +%s) - T0 )) s"
