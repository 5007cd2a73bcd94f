#!/usr/bin/env bash
# The measuring run of 2026-11-28 (bench/results/2026-11-28_h200_power), one GPU, ending inside BUDGET_S: the deepseek
# case with defaults (cold Inductor cache), then its infer pass again (warm compile), with the
# memory/power/clock sampler every second so each pass's median compute clock has ~40 samples.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-330}))
W=/tmp/clock; L="$W/logs"
source bench/device_jobs.sh
mkdir -p "$W/runs"
c=(--random-weights --data-dir / --weight-dir /tmp/ds --mmlu-dir /tmp/mmlu --device cuda --output-dir "$W/runs" --no-progress --mem-sample-interval 1)
on 0 fast 210 python3 -m mmlubench run "${c[@]}" --run-name fast
on 0 fast-warm 90 python3 -m mmlubench run "${c[@]}" --no-validation --run-name fast-warm
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | grep -E "energy|e2e|end |p_infer|infer" | tail -6; done
done_runs=$(for r in "$W"/runs/*/; do [ -f "$r/result.json" ] && echo "$r"; done)
python3 bench/summarize.py --runs $done_runs --out "$W/all-runs.json" > "$W/summary.txt" 2>&1
tar -czf "$OUT/clock.tar.gz" -C "$W" .
cat "$W/summary.txt"
echo "call took $(( $(date +%s) - T0 )) s"
