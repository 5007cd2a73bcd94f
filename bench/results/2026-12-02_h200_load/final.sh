#!/usr/bin/env bash
# One GPU run inside BUDGET_S seconds (deepseek-7B config, random weights, fp16):
# 1. the default case, full split, empty compiler caches, first thing on the machine (`case`);
# 2. the default case again with the caches step 1 left (`warm`);
# 3. the reference method's fixed sample (`--engine inductor --limit 6`, val method reference),
#    caches of its own (`reference`);
# 4. the default case with empty caches of its own, with the load of what the precompile
#    helper compiled (`load1`, `load2`) and without it (`noload1`, `noload2`,
#    `--set engines.shared-prefix.precompile_load=false`), alternating.
# STEPS picks some of them. Inputs: .devdata/bundle.tar.xz (its mmlu/).
# Output: $OUT/final.tar.gz, rewritten after each step.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-480}))
W=/tmp/final; rm -rf "$W" /tmp/ic-*; mkdir -p "$W/runs" "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true MMLUBENCH_GIT_COMMIT=${COMMIT:-unknown}
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
nproc > "$W/versions.txt"
STEPS=${STEPS:-case warm reference}
want() { [[ " $STEPS " == *" $1 "* ]]; }
pack() { tar -czf "$OUT/final.tar.gz" -C "$W" --exclude data . ; }
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
step() {  # step NAME LIMIT CMD...
  local name=$1 lim=$2; shift 2
  timeout -k 10 -s INT "$(left "$lim")" "$@" > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
  pack
}
m="$PWD/tests/fixtures/tokenizers/deepseek-llm-7b-base"
c=(--random-weights --data-dir / --weight-dir "$m" --mmlu-dir "$W/data/mmlu" --device cuda
   --output-dir "$W/runs" --no-progress)
case_env=(env TORCHINDUCTOR_CACHE_DIR=/tmp/ic-case/inductor TRITON_CACHE_DIR=/tmp/ic-case/triton)
want case && step case 170 "${case_env[@]}" python3 -m mmlubench run "${c[@]}" --run-name case
want warm && step warm 170 "${case_env[@]}" python3 -m mmlubench run "${c[@]}" --run-name warm
want reference && step reference 230 env TORCHINDUCTOR_CACHE_DIR=/tmp/ic-ref/inductor \
  TRITON_CACHE_DIR=/tmp/ic-ref/triton python3 -m mmlubench run "${c[@]}" --run-name reference \
  --engine inductor --limit 6 --set engines.eager.method=reference
for n in noload1 load1 noload2 load2; do
  extra=(); [[ $n == noload* ]] && extra=(--set engines.shared-prefix.precompile_load=false)
  want $n && step $n 170 env TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$n/inductor \
    TRITON_CACHE_DIR=/tmp/ic-$n/triton python3 -m mmlubench run "${c[@]}" --run-name $n "${extra[@]}"
done
python3 - "$W" > "$W/summary.txt" 2>&1 <<'PY'
import glob, json, sys
w = sys.argv[1]
for f in sorted(glob.glob(f"{w}/runs/*/result.json")):
    d = json.load(open(f)); p, m = d["passes"], d["metrics"]
    print(f.split("/")[-2], "e2e", round(m["e2e_time_s"], 1),
          {k: round(v, 2) for k, v in d["timings"].items()},
          "mem GiB", round(d["memory"]["peak_used_bytes"] / 2**30, 2))
    for k in ("val", "infer"):
        if k in p:
            print(f"  {k}: whole {p[k]['whole_time_s']:.1f} core {p[k]['core_time_s']:.1f} "
                  f"compile {p[k]['compile_time_s']:.1f} core tok/s {p[k]['core_tok_per_s']:,.0f} "
                  f"mfu_computed {p[k].get('mfu_computed')} clock {p[k].get('sm_clock_mhz_median')} "
                  f"acc {p[k]['accuracy']['reference']['micro']:.4f}")
    o = p.get("infer", {}).get("engine", {}).get("options", {})
    print("  precompiled", o.get("precompiled"), "compile_caches", o.get("compile_caches"))
    a = d["accuracy"].get("agreement_val_infer") if isinstance(d.get("accuracy"), dict) else None
    print("  val/infer", a and {k: a[k] for k in ("same_letter_reference", "same_top_token") if k in a})
PY
pack
cat "$W/logs/steps.log" "$W/summary.txt"
echo "took $(( $(date +%s) - T0 )) s"
