#!/usr/bin/env bash
# One GPU run inside BUDGET_S seconds (deepseek-7B config, random weights, fp16):
# 1. the default case, full split, cold caches, first thing on the machine (`case`);
# 2. the start-up's parts, each timed in one process after the case (`startup`);
# 3. val (bench/valspeed.py, every 4th subject): batch_tokens 40960, 45056, 49152 (`valspeed`).
# Inputs: .devdata/bundle.tar.xz (its mmlu/). Output: $OUT/probe.tar.gz, rewritten after each step.
set -uo pipefail
T0=$(date +%s); END=$((T0 + ${BUDGET_S:-300}))
W=/tmp/probe; rm -rf "$W" /tmp/ic-*; mkdir -p "$W/runs" "$W/logs" "$W/data"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=true MMLUBENCH_GIT_COMMIT=${COMMIT:-unknown}
tar -xJf .devdata/bundle.tar.xz -C "$W/data" ./mmlu
nvidia-smi --query-gpu=index,name,memory.total,driver_version,power.limit --format=csv > "$W/gpus.csv"
nproc > "$W/versions.txt"
pack() { tar -czf "$OUT/probe.tar.gz" -C "$W" --exclude data . ; }
left() { local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; echo $l; }
step() {  # step NAME LIMIT CMD...
  local name=$1 lim=$2; shift 2
  timeout -k 10 -s INT "$(left "$lim")" "$@" > "$W/logs/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - T0 )) s" | tee -a "$W/logs/steps.log"
  pack
}
m="$PWD/tests/fixtures/tokenizers/deepseek-llm-7b-base"
mm="$W/data/mmlu"
TORCHINDUCTOR_CACHE_DIR=/tmp/ic-case/inductor TRITON_CACHE_DIR=/tmp/ic-case/triton \
  step case 170 python3 -m mmlubench run --random-weights --data-dir / --weight-dir "$m" \
  --mmlu-dir "$mm" --device cuda --output-dir "$W/runs" --no-progress --run-name case
step startup 40 python3 - <<'PY'
import time
t = time.perf_counter()
def lap(what):
    global t
    now = time.perf_counter(); print(f"{what:40s} {now - t:6.2f} s", flush=True); t = now
import torch; lap("import torch")
import mmlubench.run.runner; lap("import mmlubench.run.runner")
torch.cuda.init(); torch.cuda.mem_get_info(); lap("cuda init + mem_get_info")
from mmlubench.device.device import Device; lap("import Device")
d = Device.open("cuda", None, 5.0); lap("Device.open")
import torch._inductor.async_compile; lap("import torch._inductor.async_compile")
from mmlubench.engines import compile_pool; compile_pool.start(); lap("compile_pool.start")
import transformers; lap("import transformers")
import transformers.models.auto.auto_factory; lap("import auto_factory")
from transformers import AutoModelForCausalLM; lap("AutoModelForCausalLM")
import torch._dynamo; lap("import torch._dynamo")
d.close(); lap("Device.close")
PY
step valspeed 120 python3 bench/valspeed.py --model-dir "$m" --mmlu-dir "$mm" --budget-s 100 \
  --every-subject 4 --out "$W/valspeed.json" \
  --try eager:method=prefix-cache --try eager:method=prefix-cache,batch_tokens=40960 \
  --try eager:method=prefix-cache,batch_tokens=45056 --try eager:method=prefix-cache
python3 - "$W" > "$W/summary.txt" 2>&1 <<'PY'
import glob, json, sys
w = sys.argv[1]
for f in sorted(glob.glob(f"{w}/runs/*/result.json")):
    d = json.load(open(f)); p, m = d["passes"], d["metrics"]
    print("e2e", round(m["e2e_time_s"], 1), {k: round(v, 2) for k, v in d["timings"].items()},
          "mem GiB", round(d["memory"]["peak_used_bytes"] / 2**30, 2))
    for k in ("val", "infer"):
        print(f"  {k}: whole {p[k]['whole_time_s']:.1f} core {p[k]['core_time_s']:.1f} "
              f"compile {p[k]['compile_time_s']:.1f} core tok/s {p[k]['core_tok_per_s']:,.0f}")
for line in open(f"{w}/valspeed.json") if glob.glob(f"{w}/valspeed.json") else []:
    pass
if glob.glob(f"{w}/valspeed.json"):
    for r in json.load(open(f"{w}/valspeed.json"))["rows"]:
        print(r["try"], round(r.get("prompt_tok_per_s", 0)), r.get("torch_peak_gib"), r.get("error", ""))
PY
pack
cat "$W/logs/steps.log" "$W/logs/startup.log" "$W/summary.txt"
echo "took $(( $(date +%s) - T0 )) s"
