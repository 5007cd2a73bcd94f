#!/usr/bin/env bash
# The measuring run of 2026-11-28 (this folder), on a 2-GPU machine, ending inside BUDGET_S:
#   GPU 0: 1. the deepseek case, defaults, fp16 (cold Inductor cache)
#          2. its infer pass again on the same machine (`--no-validation`): the warm compile
#          3. the case in fp8 WITH its fp16 val pass: in-run agreement and letter-logit L2
#          4. bench/kernel_profile.py on the infer engine
#   GPU 1: 1. `run --resume` of the reference method's full run (the run folder that
#             bench/device_flex.sh brought back, carried as .devdata/refrun), with the frozen code
#             it started with (.devdata/refcode2): its third part
#          2. the reference method on the fixed 342-question sample (same call as the case)
# Model and MMLU folders sit at the fixed paths the reference run's config names. Everything
# comes back in one tarball; a short table is printed last.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-500}))
W=/tmp/measure; L="$W/logs"
source bench/device_jobs.sh
rm -rf /tmp/ref; mkdir -p "$W/runs"
c=(--random-weights --data-dir / --weight-dir /tmp/ds --mmlu-dir /tmp/mmlu --device cuda --output-dir "$W/runs" --no-progress)
P=(--model-dir /tmp/ds --mmlu-dir /tmp/mmlu)
( if [ -d .devdata/refrun/runs ]; then
    cp -r .devdata/refrun /tmp/ref
    ( cd .devdata/refcode2 && export MMLUBENCH_GIT_COMMIT=$(cat COMMIT) PYTHONPATH=$PWD &&
      on 1 reference-resume 230 python3 -m mmlubench run --resume "$(ls -d /tmp/ref/runs/*reference-full | head -1)" --no-progress )
  fi
  on 1 reference 200 python3 -m mmlubench run "${c[@]}" --engine inductor --limit 6 \
    --set engines.eager.method=reference --run-name reference ) &
( on 0 fast 200 python3 -m mmlubench run "${c[@]}" --run-name fast
  on 0 fast-warm 80 python3 -m mmlubench run "${c[@]}" --no-validation --run-name fast-warm
  on 0 fp8 150 python3 -m mmlubench run "${c[@]}" --precision fp8 --run-name fp8
  on 0 profile-infer 50 python3 bench/kernel_profile.py "${P[@]}" --engine shared-prefix --skip 2 --batches 3 --out "$W/profile-infer.json" ) &
wait
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -6; done
cp -r /tmp/ref "$W/ref" 2>/dev/null
done_runs=$(for r in "$W"/runs/*/ /tmp/ref/runs/*/; do [ -f "$r/result.json" ] && echo "$r"; done)
par=(); [ -f "$W/parity.json" ] && par=(--parity "$W/parity.json")
# bench.json's speed-up pairs are chosen later, on the host; here: the table of every pass.
python3 bench/summarize.py --runs $done_runs "${par[@]}" --out "$W/all-runs.json" > "$W/summary.txt" 2>&1
tar -czf "$OUT/measure.tar.gz" -C "$W" .
cat "$W/summary.txt"
echo "call took $(( $(date +%s) - T0 )) s"
