#!/usr/bin/env bash
# One GPU run of bench/arch_matrix.py on the models named (folders of .devdata/bundle.tar.xz's
# archs/, or `deepseek` for the fixture config), each in its own process with cold Inductor
# and Triton caches. Output: $OUT/arch.tar.gz.
set -uo pipefail
T0=$(date +%s)
W=/tmp/arch; rm -rf "$W"; mkdir -p "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true
tar -xJf .devdata/bundle.tar.xz -C "$W/data"
cp -r tests/fixtures/tokenizers/deepseek-llm-7b-base "$W/data/archs/deepseek"
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
for m in "$@"; do
  TORCHINDUCTOR_CACHE_DIR=/tmp/cache-$m/inductor TRITON_CACHE_DIR=/tmp/cache-$m/triton \
    timeout -k 20 -s INT 200 python3 bench/arch_matrix.py --mmlu-dir "$W/data/mmlu" \
    --out "$W/$m.json" "$W/data/archs/$m" > "$W/logs/$m.log" 2>&1
  echo "$m rc=$? at $(( $(date +%s) - T0 )) s"; grep -E "^\|" "$W/logs/$m.log" | tail -1
done
tar -czf "$OUT/arch.tar.gz" -C "$W" --exclude data .
echo "took $(( $(date +%s) - T0 )) s"
