# Set-up shared by the device scripts; source it after setting WORK (the script's scratch folder).
# Inputs: CONFIG (case YAML, default the deepseek case), MODEL, MMLU (folders, default
# .devdata/...), DEVICE, PREC, OUT (where the tarball goes).
OUTD=${OUT:-/tmp/mmlubench-bench}
rm -rf "$WORK"; mkdir -p "$WORK/runs" "$OUTD"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
CONFIG=${CONFIG:-mmlubench/configs/deepseek_7b_mmlu.yaml}
MODEL=${MODEL:-.devdata/deepseek-llm-7b-base}
MMLU=${MMLU:-.devdata/mmlu}
DEVICE=${DEVICE:-cuda}
PREC=${PREC:-fp16}
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv | tee "$WORK/gpus.csv"
fi
# Arguments of every `mmlubench run` of the scripts: random weights of the real config.
common=(--config "$CONFIG" --random-weights --data-dir . --weight-dir "$MODEL" --mmlu-dir "$MMLU"
        --device "$DEVICE" --precision "$PREC" --output-dir "$WORK/runs" --no-progress)
