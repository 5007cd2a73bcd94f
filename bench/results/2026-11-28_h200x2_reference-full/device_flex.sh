#!/usr/bin/env bash
# The second exploring run of 2026-11-28 (this folder), 2 GPUs, ending inside BUDGET_S:
#   GPU 0: bench/valspeed.py with Inductor's prologue fusion on and off (the profile's attention
#          kernel is a FlexAttention template with the q/k RoPE and the carry's cat fused into
#          its loads), then bench/kernel_profile.py of the best setting
#   GPU 1: `run --resume` of the reference method's full run that bench/device_tune.sh stopped
#          (carried as .devdata/refrun), with the frozen code it started with (.devdata/refcode2)
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-300}))
W=/tmp/flex; L="$W/logs"
source bench/device_jobs.sh
rm -rf /tmp/ref && cp -r .devdata/refrun /tmp/ref
( cd .devdata/refcode2 && export MMLUBENCH_GIT_COMMIT=$(cat COMMIT) PYTHONPATH=$PWD &&
  on 1 reference-resume $(( ${BUDGET_S:-300} - 15 )) python3 -m mmlubench run --resume "$(ls -d /tmp/ref/runs/*reference-full | head -1)" --no-progress ) &
NP='compile_options={prologue_fusion: false}'
( on 0 flex 200 python3 bench/valspeed.py --model-dir /tmp/ds --mmlu-dir /tmp/mmlu --every-subject 6 \
    --budget-s 150 --out "$W/flex.json" --try shared-prefix --try "shared-prefix:$NP" \
    --try "shared-prefix:$NP,block_size=64,attention_kernel_options={BLOCK_M: 64, BLOCK_N: 64, num_warps: 4, num_stages: 3}" \
    --try "shared-prefix:block_size=64,attention_kernel_options={BLOCK_M: 64, BLOCK_N: 64, num_warps: 4, num_stages: 3}"
  on 0 profile 60 python3 bench/kernel_profile.py --model-dir /tmp/ds --mmlu-dir /tmp/mmlu \
    --engine "shared-prefix:$NP" --skip 2 --batches 3 --out "$W/profile-noprologue.json" ) &
wait
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -5; done
cp -r /tmp/ref "$W/ref"; tar -czf "$OUT/flex.tar.gz" -C "$W" .
python3 - "$W/flex.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    print(f"{r.get('prompt_tok_per_s', 0):>10.0f} tok/s  compile {r.get('compile_s', 0):5.1f} s  "
          f"{r.get('error') or r.get('skipped') or ''}  {r['try']}")
PY
echo "call took $(( $(date +%s) - T0 )) s"
