#!/usr/bin/env bash
# One exploratory GPU run (2-GPU machine), as run on 2026-11-28:
#   GPU1: the reference method (inductor, infer only) over all 14042 questions, from the frozen
#         tree .devdata/refcode (git archive of the commit named in .devdata/refcode/COMMIT),
#         interrupted with SIGINT at REF_STOP_S; its run folder comes back under $OUT/runs and
#         is resumed by the next call (bench/device_final.sh) from the same frozen tree.
#         REF=0 leaves it out (a one-GPU machine: as run on 2026-11-28, when no 2-GPU machine
#         was at hand).
#   GPU0: bench/kernel_profile.py on the infer engine and the val method, then bench/valspeed.py
#         settings for val memory/speed and infer tuning.
set -uo pipefail
T0=$(date +%s)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
R=$PWD; DS=$R/.devdata/deepseek-llm-7b-base; MMLU=$R/.devdata/mmlu
# At most 8 files come back from $OUT: everything is written under $W and comes back as one
# tarball (the first try of this call lost its reference run folder to that limit).
W=/tmp/explore; L="$W/logs"; mkdir -p "$L" "$W/runs"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
on() {  # on GPU LOG CMD...
  local gpu=$1 log=$2; shift 2
  echo "start $log t=$(( $(date +%s) - T0 ))s" >> "$L/$log.log"
  CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$gpu "$@" >> "$L/$log.log" 2>&1
  echo "end $log rc=$? t=$(( $(date +%s) - T0 ))s" >> "$L/$log.log"
}
[ "${REF:-1}" = 0 ] || ( cd "$R/.devdata/refcode" && on 1 reference-full env PYTHONPATH=$PWD MMLUBENCH_GIT_COMMIT=$(cat COMMIT) \
    timeout -s INT "${REF_STOP_S:-400}" python3 -m mmlubench run --random-weights --data-dir / \
    --weight-dir "$DS" --mmlu-dir "$MMLU" --device cuda --precision fp16 --engine inductor \
    --no-validation --output-dir "$W/runs" --run-name reference-full --no-progress ) &
( export PYTHONPATH=$R
  P=(--model-dir "$DS" --mmlu-dir "$MMLU")
  on 0 profile-infer python3 bench/kernel_profile.py "${P[@]}" --engine shared-prefix --skip 2 --batches 3 --out "$W/profile-infer.json"
  on 0 profile-val python3 bench/kernel_profile.py "${P[@]}" --engine eager:method=prefix-cache --skip 3 --batches 10 --out "$W/profile-val.json"
  on 0 val-default python3 bench/valspeed.py "${P[@]}" --every-subject 6 --budget-s 60 --out "$W/val-default.json" \
    --try eager:method=prefix-cache
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True on 0 val-expandable python3 bench/valspeed.py "${P[@]}" --every-subject 6 \
    --budget-s 110 --out "$W/val-expandable.json" --try eager:method=prefix-cache \
    --try eager:method=prefix-cache,batch_tokens=24576 \
    --try eager:method=prefix-cache,batch_tokens=98304,batch_size=256
  on 0 infer-tries timeout -s INT 170 python3 bench/valspeed.py "${P[@]}" --every-subject 8 --budget-s 130 --out "$W/infer-tries.json" \
    --try shared-prefix --try shared-prefix:pack_tokens=65536 \
    --try shared-prefix:compile_mode=max-autotune-no-cudagraphs ) &
wait
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -14; done
tar -czf "$OUT/explore.tar.gz" -C "$W" .
echo "call took $(( $(date +%s) - T0 )) s"
