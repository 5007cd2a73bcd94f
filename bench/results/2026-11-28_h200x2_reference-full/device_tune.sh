#!/usr/bin/env bash
# The exploring run of 2026-11-28 (this folder), on a 2-GPU machine, ending inside BUDGET_S:
#   GPU 0: 1. bench/smol_fp8.sh: the real SmolLM2-135M in fp16 and fp8 over the full test split
#             (its GGUF came in three parts over the calls before: .devdata/xfer)
#          2. bench/valspeed.py: FlexAttention kernel options of the infer engine on a sample
#   GPU 1: the reference method over all 14042 questions, part 1: stopped by SIGINT at the
#          deadline; its run folder comes back for `run --resume` in the next call.
# The reference run uses a frozen copy of the code (.devdata/refcode2 = `git archive` of the
# commit in its COMMIT file), so that both parts of it run the same code. Model and MMLU folders
# sit at fixed paths (/tmp/ds, /tmp/mmlu): the run's config names them and a resume on another
# machine finds them there again. Everything comes back in one tarball.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-480}))
W=/tmp/tune; L="$W/logs"
source bench/device_jobs.sh
mkdir -p /tmp/ref/runs
K='shared-prefix:attention_kernel_options='
( cd .devdata/refcode2 && export MMLUBENCH_GIT_COMMIT=$(cat COMMIT) PYTHONPATH=$PWD &&
    on 1 reference-full $(( ${BUDGET_S:-480} - 25 )) python3 -m mmlubench run --random-weights --data-dir / \
    --weight-dir /tmp/ds --mmlu-dir /tmp/mmlu --device cuda --engine inductor --no-validation \
    --output-dir /tmp/ref/runs --run-name reference-full --no-progress ) &
( on 0 smol 230 env BUDGET_S=220 OUT="$W/smol" bash bench/smol_fp8.sh
  on 0 flex 400 python3 bench/valspeed.py --model-dir /tmp/ds --mmlu-dir /tmp/mmlu --every-subject 6 \
    --budget-s 170 --out "$W/flex.json" --try shared-prefix \
    --try "$K{BLOCK_M: 128, BLOCK_N: 128, num_warps: 8, num_stages: 2}" \
    --try "$K{BLOCK_M: 64, BLOCK_N: 64, num_warps: 4, num_stages: 3}" \
    --try "$K{BLOCK_M: 64, BLOCK_N: 128, num_warps: 4, num_stages: 3}" \
    --try "$K{BLOCK_M: 128, BLOCK_N: 64, num_warps: 4, num_stages: 3}" \
    --try "$K{USE_TMA: true}" \
    --try "shared-prefix:block_size=64,attention_kernel_options={BLOCK_M: 64, BLOCK_N: 64, num_warps: 4, num_stages: 3}" \
    --try shared-prefix ) &
wait
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class|^  warnings" "$f" | tail -8; done
cp -r /tmp/ref "$W/ref"
tar -czf "$OUT/tune.tar.gz" -C "$W" .
python3 - "$W/flex.json" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
except (OSError, ValueError, KeyError):
    sys.exit("no flex.json")
for r in rows:
    print(f"{r.get('prompt_tok_per_s', 0):>10.0f} tok/s  compile {r.get('compile_s', 0):5.1f} s  "
          f"{r.get('error') or r.get('skipped') or ''}  {r['try']}")
EOF
echo "call took $(( $(date +%s) - T0 )) s"
