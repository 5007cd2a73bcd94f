# Sourced by the scripts of this folder (device_tune.sh, device_flex.sh, device_measure.sh)
# after they set T0 and END (the deadline, epoch seconds), W (scratch folder) and L (its logs).
# Puts the model config/tokenizer and MMLU (dev/ + test/) at the fixed paths /tmp/ds and
# /tmp/mmlu, which a resumable run's config names on every machine; records the machine and
# the code; defines `on`, which runs one job on one GPU under the deadline.
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true PYTHONPATH=$PWD
export MMLUBENCH_GIT_COMMIT=$(cat .devdata/COMMIT 2>/dev/null)
rm -rf "$W" /tmp/ds /tmp/mmlu; mkdir -p "$L" /tmp/mmlu
cp -r tests/fixtures/tokenizers/deepseek-llm-7b-base /tmp/ds
tar -xJf .devdata/xfer/mmlu.tar.xz -C /tmp/mmlu
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$W/gpus.csv"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' > "$W/versions.txt"
echo "$MMLUBENCH_GIT_COMMIT" > "$W/commit.txt"
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
on() {  # on GPU LOG CAP CMD...: run with a timeout of min(CAP, time left), skip when none left
  local gpu=$1 log=$2 t; t=$(left "$3"); shift 3
  if [ "$t" -lt 20 ]; then echo "skipped $log: no time left" >> "$L/$log.log"; return; fi
  echo "start $log t=$(( $(date +%s) - T0 ))s timeout ${t}s" >> "$L/$log.log"
  CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$gpu timeout -k 30 -s INT "$t" "$@" >> "$L/$log.log" 2>&1
  echo "end $log rc=$? t=$(( $(date +%s) - T0 ))s" >> "$L/$log.log"
}
