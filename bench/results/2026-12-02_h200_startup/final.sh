#!/usr/bin/env bash
# One GPU run inside BUDGET_S seconds (deepseek-7B config, random weights, fp16):
# 1. the default case, full split, cold compiler caches (`case`);
# 2. the reference method's fixed sample (`--engine inductor --limit 6`, val method reference);
# 3. cold compiles of the shared-prefix engine with compile workers ready (bench/compile_cold.py):
#    defaults, and Inductor's pattern matcher off;
# 4. import times of transformers' model code, twice each, with the interpreter's bytecode cache
#    as installed and in a fresh writable folder (PYTHONPYCACHEPREFIX);
# 5. val (bench/valspeed.py, every 4th subject): batch_tokens 40960, 49152 (default), 57344.
# STEPS picks some of them (default: case reference compile imports valspeed); the tarball is
# rewritten after each step.
# Inputs: .devdata/bundle.tar.xz (its mmlu/). Output: $OUT/final.tar.gz.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-540}))
W=/tmp/final; rm -rf "$W" /tmp/ic-* /tmp/cc-*; mkdir -p "$W/runs" "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true MMLUBENCH_GIT_COMMIT=${COMMIT:-unknown}
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
nproc >> "$W/versions.txt"
STEPS=${STEPS:-case reference compile imports valspeed}
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
mm="$W/data/mmlu"
c=(--random-weights --data-dir / --weight-dir "$m" --mmlu-dir "$mm" --device cuda
   --output-dir "$W/runs" --no-progress)
want case && TORCHINDUCTOR_CACHE_DIR=/tmp/ic-case/inductor TRITON_CACHE_DIR=/tmp/ic-case/triton \
  step case 180 python3 -m mmlubench run "${c[@]}" --run-name case
want reference && TORCHINDUCTOR_CACHE_DIR=/tmp/ic-ref/inductor TRITON_CACHE_DIR=/tmp/ic-ref/triton \
  step reference 200 python3 -m mmlubench run "${c[@]}" --run-name reference \
  --engine inductor --limit 6 --set engines.eager.method=reference
cc() {  # cc NAME TRY
  step "$1" 80 python3 bench/compile_cold.py --model-dir "$m" --mmlu-dir "$mm" \
    --cache-dir "/tmp/cc-$1" --pool ready --try "$2"
  tail -1 "$W/logs/$1.log" >> "$W/compile.jsonl"
}
want compile && cc compile-default shared-prefix
want compile && cc compile-no-patterns "shared-prefix:compile_options={pattern_matcher: false}"
imp() { python3 -X importtime -c "import transformers.models.auto.auto_factory" 2>&1 | grep -E "\| transformers.models.auto.auto_factory$"; }
want imports && step imports 90 bash -c "$(declare -f imp); imp; imp; python3 -c 'import transformers, os; d = os.path.dirname(transformers.__file__); print(\"pycache\", os.path.isdir(d + \"/__pycache__\"), os.access(d, os.W_OK))'; export PYTHONPYCACHEPREFIX=/tmp/pyc; imp; imp"
want valspeed && step valspeed 130 python3 bench/valspeed.py --model-dir "$m" --mmlu-dir "$mm" --budget-s 110 \
  --every-subject 4 --out "$W/valspeed.json" \
  --try eager:method=prefix-cache,batch_tokens=40960 --try eager:method=prefix-cache \
  --try eager:method=prefix-cache,batch_tokens=57344
python3 - "$W" > "$W/summary.txt" 2>&1 <<'PY'
import glob, json, sys
w = sys.argv[1]
for f in sorted(glob.glob(f"{w}/runs/*/result.json")):
    d = json.load(open(f)); p, m = d["passes"], d["metrics"]
    print(f.split("/")[-2].rsplit("_", 1)[-1], "e2e", round(m["e2e_time_s"], 1),
          {k: round(v, 2) for k, v in d["timings"].items()},
          "mem GiB", round(d["memory"]["peak_used_bytes"] / 2**30, 2))
    for k in ("val", "infer"):
        if k in p:
            print(f"  {k}: whole {p[k]['whole_time_s']:.1f} core {p[k]['core_time_s']:.1f} "
                  f"compile {p[k]['compile_time_s']:.1f} core tok/s {p[k]['core_tok_per_s']:,.0f}")
    a = d["accuracy"]["agreement_val_infer"]
    print("  val/infer same letter", a["same_letter_reference"], "top", a["same_top_token"])
for line in open(f"{w}/compile.jsonl") if glob.glob(f"{w}/compile.jsonl") else []:
    try:
        d = json.loads(line)
        print("compile", d["setting"][:60], round(d["compile_s"], 2), "pool", d["pool_ready_s"])
    except ValueError:
        print("compile (no JSON)", line[:200])
PY
pack
cat "$W/logs/steps.log" "$W/summary.txt"; head -c 2500 "$W/valspeed.json" 2>/dev/null
echo; echo "took $(( $(date +%s) - T0 )) s"
