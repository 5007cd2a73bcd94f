#!/usr/bin/env bash
# One GPU run inside BUDGET_S seconds (deepseek-7B config, random weights, fp16):
# 1. start-up: `mmlubench run --engine null --no-validation` twice on the full split (cold,
#    then warm file cache), the first under -X importtime, the second under cProfile;
# 2. val: bench/valspeed.py on every 4th subject, HF's DynamicCache against the kept prefix
#    buffers, with and without freeing the allocator's blocks between prefixes; a kernel
#    profile of the kept buffers;
# 3. compile: bench/compile_cold.py, cold caches, compile workers late or ready, pointwise
#    autotuning on or off; then the warm cache.
# Inputs: .devdata/bundle.tar.xz (its mmlu/). Output: $OUT/explore.tar.gz.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-480}))
W=/tmp/explore; rm -rf "$W" /tmp/cc-*; mkdir -p "$W/runs" "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
nproc >> "$W/versions.txt"
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
step() {  # step NAME LIMIT CMD...
  local name=$1 lim=$2; shift 2
  timeout -k 10 -s INT "$(left "$lim")" "$@" > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
}
m="$PWD/tests/fixtures/tokenizers/deepseek-llm-7b-base"
mm="$W/data/mmlu"
c=(--random-weights --data-dir / --weight-dir "$m" --mmlu-dir "$mm" --device cuda
   --output-dir "$W/runs" --no-progress --no-validation --engine null)
step null1 60 python3 -X importtime -m mmlubench run "${c[@]}" --run-name null1
step null2 60 python3 -m cProfile -o "$W/null2.prof" -m mmlubench run "${c[@]}" --run-name null2
python3 - "$W" > "$W/startup.txt" 2>&1 <<'PY'
import glob, json, pstats, sys
w = sys.argv[1]
for f in sorted(glob.glob(f"{w}/runs/*/result.json")):
    d = json.load(open(f))
    print(f.split("/")[-2], "e2e", round(d["metrics"]["e2e_time_s"], 2), d["timings"],
          "infer whole", round(d["passes"]["infer"]["whole_time_s"], 2))
rows = []
for line in open(f"{w}/logs/null1.log"):
    if line.startswith("import time:") and "|" in line:
        parts = line.split("|")
        try:
            rows.append((int(parts[1]), parts[2].rstrip()))
        except ValueError:
            pass
print("top imports (cumulative us):")
for us, name in sorted(rows, reverse=True)[:40]:
    print(f"{us:>10} {name}")
p = pstats.Stats(f"{w}/null2.prof")
p.sort_stats("cumulative").print_stats("mmlubench", 45)
PY
step valspeed 200 python3 bench/valspeed.py --model-dir "$m" --mmlu-dir "$mm" --budget-s 170 \
  --every-subject 4 --out "$W/valspeed.json" \
  --try eager:method=prefix-cache,kv_store=false --try eager:method=prefix-cache \
  --try eager:method=prefix-cache,free_between_prefixes=false
step profile 60 python3 bench/kernel_profile.py --model-dir "$m" --mmlu-dir "$mm" \
  --engine eager:method=prefix-cache --every-subject 8 --skip 2 --batches 10 \
  --out "$W/profile-val.json"
cc() {  # cc NAME CACHE POOL [TRY]
  step "$1" 90 python3 bench/compile_cold.py --model-dir "$m" --mmlu-dir "$mm" \
    --cache-dir "/tmp/cc-$2" --pool "$3" --try "${4:-shared-prefix}"
  tail -1 "$W/logs/$1.log" >> "$W/compile.jsonl"
}
cc late-cold a late
cc ready-cold b ready
cc ready-cold-noautotune c ready "shared-prefix:compile_options={triton.autotune_pointwise: false}"
cc ready-warm b ready
cc late-warm b late
tar -czf "$OUT/explore.tar.gz" -C "$W" --exclude data .
cat "$W/logs/steps.log"; head -5 "$W/startup.txt"; cat "$W/valspeed.json" 2>/dev/null | head -c 3000
echo; head -12 "$W/logs/profile.log" | tail -8; cut -c1-400 "$W/compile.jsonl"
echo "took $(( $(date +%s) - T0 )) s"
