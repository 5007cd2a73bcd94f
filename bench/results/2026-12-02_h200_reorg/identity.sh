#!/usr/bin/env bash
# One GPU run inside BUDGET_S seconds: the default case (deepseek-7B config, random weights,
# fp16, full split) with the code before the reorganisation into subpackages (commit 21c2a72,
# carried as .devdata/pre.tar.xz) and with the code after it (this checkout), each with cold
# compiler caches of its own, then the code after it once more with its warm caches; the
# predictions of both codes compared question by question.
# Inputs: .devdata/bundle.tar.xz (its mmlu/), .devdata/pre.tar.xz. Output: $OUT/reorg.tar.gz.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-560}))
W=/tmp/reorg; rm -rf "$W" /tmp/ic-* /tmp/pre; mkdir -p "$W/runs" "$W/logs" "$W/data" /tmp/pre
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
tar -xJf .devdata/pre.tar.xz -C /tmp/pre
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
nproc >> "$W/versions.txt"
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
case_run() {  # case_run NAME CODE_DIR COMMIT CACHE LIMIT
  local name=$1 code=$2 commit=$3 cache=$4 lim=$5
  ( cd "$code" && PYTHONPATH="$code" MMLUBENCH_GIT_COMMIT=$commit \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$cache/inductor TRITON_CACHE_DIR=/tmp/ic-$cache/triton \
    timeout -k 10 -s INT "$(left "$lim")" python3 -m mmlubench run --random-weights \
      --data-dir / --weight-dir "$code/tests/fixtures/tokenizers/deepseek-llm-7b-base" \
      --mmlu-dir "$W/data/mmlu" --device cuda --no-progress \
      --output-dir "$W/runs" --run-name "$name" ) > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
}
case_run before /tmp/pre 21c2a72 pre 200
case_run after "$PWD" "${COMMIT:-unknown}" post 200
case_run after-warm "$PWD" "${COMMIT:-unknown}" post 170
python3 - "$W" > "$W/summary.txt" 2>&1 <<'PY'
import glob, json, sys
sys.path.insert(0, "bench")
from agreement import agreement
w = sys.argv[1]
runs = {}
for f in sorted(glob.glob(f"{w}/runs/*/result.json")):
    d = json.load(open(f)); name = f.split("/")[-2]
    runs[name] = f.rsplit("/", 1)[0]
    p, m, t = d["passes"], d["metrics"], d["timings"]
    a = d["accuracy"]["agreement_val_infer"]
    print(name, "e2e", round(m["e2e_time_s"], 1), "timings", {k: round(v, 2) for k, v in t.items()})
    for k in ("val", "infer"):
        if k in p:
            print(f"  {k}: whole {p[k]['whole_time_s']:.1f} core {p[k]['core_time_s']:.1f} compile "
                  f"{p[k]['compile_time_s']:.1f} core tok/s {p[k]['core_tok_per_s']:,.0f} "
                  f"mfu_computed {p[k].get('mfu_computed')} clock {p[k].get('sm_clock_mhz_median')}")
    print("  mem peak_used GiB", round(d["memory"]["peak_used_bytes"] / 2**30, 2),
          "val/infer same letter ref", a["same_letter_reference"], "top", a["same_top_token"])
names = sorted(runs)
for x in names:
    for y in names:
        if x < y:
            for k in ("val", "infer"):
                print(x, y, k, agreement(f"{runs[x]}:{k}", f"{runs[y]}:{k}"))
PY
tar -czf "$OUT/reorg.tar.gz" -C "$W" --exclude data .
cat "$W/logs/steps.log" "$W/summary.txt"; echo "took $(( $(date +%s) - T0 )) s"
