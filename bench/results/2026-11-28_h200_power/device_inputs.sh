#!/usr/bin/env bash
# Ran at 3f56ae4; the attention_inputs option it sweeps was removed after this measurement
# (8a9f267), so it does not run on later commits.
# Run 2 of this folder (one GPU, ending inside BUDGET_S): how q/k/v reach FlexAttention.
# bench/attn_split.py timed FlexAttention alone on real packs at 1.4-1.6 ms per layer for packs
# whose engine profile shows 3.46 ms; this compares the engine's attention_inputs settings on
# the same sample in one process (valspeed) and profiles the kernels of two of them.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-300}))
W=/tmp/inputs; L="$W/logs"
source bench/device_jobs.sh
P=(--model-dir /tmp/ds --mmlu-dir /tmp/mmlu)
on 0 valspeed 150 python3 bench/valspeed.py "${P[@]}" --every-subject 6 --budget-s 130 \
  --out "$W/inputs.json" --try shared-prefix --try shared-prefix:attention_inputs=materialized \
  --try shared-prefix:attention_inputs=contiguous --try shared-prefix
for s in fused materialized; do
  on 0 profile-$s 50 python3 bench/kernel_profile.py "${P[@]}" --engine shared-prefix:attention_inputs=$s \
    --skip 2 --batches 3 --out "$W/profile-$s.json"
done
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -4; done
tar -czf "$OUT/inputs.tar.gz" -C "$W" .
python3 - "$W" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1] + "/inputs.json"))["rows"]:
    print(f"{r.get('prompt_tok_per_s', 0):>10.0f} tok/s  compile {r.get('compile_s', 0):5.1f} s  "
          f"{r.get('error') or r.get('skipped') or ''}  {r['try']}")
for s in ("fused", "materialized"):
    try:
        d = json.load(open(f"{sys.argv[1]}/profile-{s}.json"))["breakdown"]
    except OSError:
        continue
    print(s, {k: round(v["ms"], 1) for k, v in d["categories"].items()})
    for k in d["top_kernels"][:8]:
        print(f"   {k['ms']:8.1f} ms  {k['name'][:90]}")
PY
echo "call took $(( $(date +%s) - T0 )) s"
