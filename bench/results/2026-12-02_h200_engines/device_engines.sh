#!/usr/bin/env bash
# One GPU run of the generic shared-prefix engine, ending inside BUDGET_S seconds:
# 1. the deepseek case (random weights, full test split, infer only, defaults) with the
#    hand-written Llama engine (shared-prefix-llama) and with the generic one (shared-prefix),
#    each with cold Inductor and Triton caches of its own;
# 2. bench/arch_matrix.py over the real configs of six other architectures.
# Inputs: .devdata/bundle.tar.xz (mmlu/ and archs/<name>/{config,tokenizer,tokenizer_config}.json,
# made from ../shared; bench/README.md). Output: $OUT/engines.tar.gz.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-540}))
W=/tmp/engines; rm -rf "$W"; mkdir -p "$W/runs" "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true
tar -xJf .devdata/bundle.tar.xz -C "$W/data"
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
git rev-parse HEAD > "$W/commit.txt" 2>/dev/null || true
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
cold() {  # cold NAME CMD...: fresh compiler caches, a timeout inside the budget
  local name=$1; shift
  TORCHINDUCTOR_CACHE_DIR=/tmp/cache-$name/inductor TRITON_CACHE_DIR=/tmp/cache-$name/triton \
    timeout -k 20 -s INT "$(left 170)" "$@" > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
}
c=(--random-weights --data-dir / --weight-dir "$PWD/tests/fixtures/tokenizers/deepseek-llm-7b-base"
   --mmlu-dir "$W/data/mmlu" --device cuda --output-dir "$W/runs" --no-progress --no-validation)
for e in shared-prefix-llama shared-prefix; do
  cold "$e" python3 -m mmlubench run "${c[@]}" --engine "$e" --run-name "$e"
done
a="$W/data/archs"
cold arch python3 bench/arch_matrix.py --mmlu-dir "$W/data/mmlu" --out "$W/arch.json" \
  --deadline $(( END - $(date +%s) - 100 )) "$a/qwen2.5-7b" "$a/qwen3-8b" "$a/mistral-7b-v0.3" \
  "$a/olmo-2-1124-7b" "$a/gemma-2-9b" "$a/mixtral-8x7b-v0.1"
python3 bench/summarize.py --runs "$W"/runs/*/ --out "$W/engines.json" > "$W/summary.txt" 2>&1
tar -czf "$OUT/engines.tar.gz" -C "$W" --exclude data .
cat "$W/summary.txt"; grep -E "^\|" "$W/logs/arch.log"; tail -3 "$W/logs/arch.log"
echo "took $(( $(date +%s) - T0 )) s"
