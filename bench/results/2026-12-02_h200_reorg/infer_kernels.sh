#!/usr/bin/env bash
# One GPU run inside BUDGET_S seconds: is the infer pass's 0.8% of differing top tokens between
# the code before and after the reorganisation the code, or the kernels a cold compile picks?
# Infer only (deepseek-7B config, random weights, fp16, full split), cold caches each:
#   after-a, after-b: the code after, twice, defaults (two cold compiles of the same code);
#   before-noat, after-noat: both codes with pointwise autotuning off
#   (`compile_options={triton.autotune_pointwise: false}`), where a cold compile picks its
#   kernels without timing them.
# Inputs: .devdata/bundle.tar.xz (its mmlu/), .devdata/pre.tar.xz (commit 21c2a72).
# Output: $OUT/kernels.tar.gz.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-400}))
W=/tmp/kern; rm -rf "$W" /tmp/ic-* /tmp/pre; mkdir -p "$W/runs" "$W/logs" "$W/data" /tmp/pre
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
tar -xJf .devdata/pre.tar.xz -C /tmp/pre
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
infer_run() {  # infer_run NAME CODE_DIR COMMIT [--set ...]
  local name=$1 code=$2 commit=$3; shift 3
  ( cd "$code" && PYTHONPATH="$code" MMLUBENCH_GIT_COMMIT=$commit \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$name/inductor TRITON_CACHE_DIR=/tmp/ic-$name/triton \
    timeout -k 10 -s INT "$(left 100)" python3 -m mmlubench run --random-weights \
      --data-dir / --weight-dir "$code/tests/fixtures/tokenizers/deepseek-llm-7b-base" \
      --mmlu-dir "$W/data/mmlu" --device cuda --no-progress --no-validation --no-ceiling \
      --output-dir "$W/runs" --run-name "$name" "$@" ) > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
}
NOAT=(--set 'engines.shared-prefix.compile_options={triton.autotune_pointwise: false}')
infer_run after-a "$PWD" "${COMMIT:-unknown}"
infer_run after-b "$PWD" "${COMMIT:-unknown}"
infer_run before-noat /tmp/pre 21c2a72 "${NOAT[@]}"
infer_run after-noat "$PWD" "${COMMIT:-unknown}" "${NOAT[@]}"
python3 - "$W" > "$W/summary.txt" 2>&1 <<'PY'
import glob, json, sys
sys.path.insert(0, "bench")
from agreement import agreement
w = sys.argv[1]
runs = {}
for f in sorted(glob.glob(f"{w}/runs/*/result.json")):
    d = json.load(open(f)); name = f.split("/")[-2].rsplit("_", 1)[-1]
    runs[name] = f.rsplit("/", 1)[0]
    p = d["passes"]["infer"]
    print(name, f"e2e {d['metrics']['e2e_time_s']:.1f} compile {p['compile_time_s']:.2f} core "
          f"{p['core_time_s']:.2f} core tok/s {p['core_tok_per_s']:,.0f}")
for x, y in (("after-a", "after-b"), ("before-noat", "after-noat"), ("after-a", "after-noat")):
    if x in runs and y in runs:
        print(x, y, agreement(f"{runs[x]}:infer", f"{runs[y]}:infer"))
PY
tar -czf "$OUT/kernels.tar.gz" -C "$W" --exclude data .
cat "$W/logs/steps.log" "$W/summary.txt"; echo "took $(( $(date +%s) - T0 )) s"
