#!/usr/bin/env bash
# One GPU run, ending inside BUDGET_S seconds: the deepseek case (random weights, full test
# split, infer only, defaults, cold Inductor and Triton caches each) with the hand-written
# Llama engine, the generic engine (fused projections, its default) and the generic engine
# unfused; then `mmlubench ceiling` alone. Inputs: .devdata/bundle.tar.xz (its mmlu/).
# Output: $OUT/fuse.tar.gz.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-420}))
W=/tmp/fuse; rm -rf "$W"; mkdir -p "$W/runs" "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
cold() {  # cold NAME CMD...: fresh compiler caches, a timeout inside the budget
  local name=$1; shift
  TORCHINDUCTOR_CACHE_DIR=/tmp/cache-$name/inductor TRITON_CACHE_DIR=/tmp/cache-$name/triton \
    timeout -k 20 -s INT "$(left 130)" "$@" > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
}
m="$PWD/tests/fixtures/tokenizers/deepseek-llm-7b-base"
c=(--random-weights --data-dir / --weight-dir "$m" --mmlu-dir "$W/data/mmlu" --device cuda
   --output-dir "$W/runs" --no-progress --no-validation)
cold hand python3 -m mmlubench run "${c[@]}" --engine shared-prefix-llama --run-name hand
cold fused python3 -m mmlubench run "${c[@]}" --engine shared-prefix --run-name fused
cold unfused python3 -m mmlubench run "${c[@]}" --engine shared-prefix --run-name unfused \
  --set engines.shared-prefix.fuse_projections=false
cold ceiling python3 -m mmlubench ceiling --device cuda --precision fp16 --data-dir / \
  --weight-dir "$m" --mmlu-dir "$W/data/mmlu"
python3 bench/summarize.py --runs "$W"/runs/*/ --out "$W/fuse.json" > "$W/summary.txt" 2>&1
tar -czf "$OUT/fuse.tar.gz" -C "$W" --exclude data .
cat "$W/summary.txt"; tail -40 "$W/logs/ceiling.log"
echo "took $(( $(date +%s) - T0 )) s"
