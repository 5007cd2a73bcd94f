"""The shared-prefix engine's four GEMMs alone: how fast cuBLAS and cuBLASLt run them, one at a
time and back to back as the decoder layers do, with the SM clock and board power sampled
while the back-to-back sequence runs (a drop in clock under load shows up here).

Shapes from the model's config.json for one pack of `--tokens` rows: fused q/k/v, the output
projection with its residual add (addmm), fused gate/up, the down projection with its add.

    python bench/gemm_shapes.py --model-dir /tmp/ds --out gemm.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attn_split import timed  # the CUDA-event timer, one warm call first


def tflops(flops: float, fn, reps: int) -> float:
    return flops / timed(fn, reps) / 1e12


def sustained(gemms: list, layers: int) -> dict:
    """The layer sequence `layers` times; clock (MHz) and power (W) sampled while it runs."""
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(layers):
        for _, fn in gemms:
            fn()
    end.record()
    clocks, power = [], []
    while not end.query():
        clocks.append(torch.cuda.clock_rate())
        power.append(torch.cuda.power_draw() / 1e3)
        time.sleep(0.05)
    torch.cuda.synchronize()
    flops = layers * sum(f for f, _ in gemms)
    return {
        "tflop_per_s": flops / (start.elapsed_time(end) / 1e3) / 1e12,
        "sm_clock_mhz": clocks,
        "power_w": power,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--layers", type=int, default=60)
    ap.add_argument("--out")
    args = ap.parse_args()
    with open(f"{args.model_dir}/config.json") as f:
        cfg = json.load(f)
    D, inter = cfg["hidden_size"], cfg["intermediate_size"]
    H = cfg["num_attention_heads"]
    kv = (cfg.get("num_key_value_heads") or H) * (D // H)
    T, dev, dt = args.tokens, "cuda", torch.float16
    x = torch.randn(T, D, device=dev, dtype=dt)
    h = torch.randn(T, inter, device=dev, dtype=dt)
    w_qkv = torch.randn(D + 2 * kv, D, device=dev, dtype=dt) * 0.02
    w_o = torch.randn(D, D, device=dev, dtype=dt) * 0.02
    w_gu = torch.randn(2 * inter, D, device=dev, dtype=dt) * 0.02
    w_down = torch.randn(D, inter, device=dev, dtype=dt) * 0.02
    gemms = [
        ("qkv", 2 * T * D * (D + 2 * kv), lambda: x @ w_qkv.t()),
        ("o+add", 2 * T * D * D, lambda: torch.addmm(x, x, w_o.t())),
        ("gate_up", 2 * T * D * 2 * inter, lambda: x @ w_gu.t()),
        ("down+add", 2 * T * inter * D, lambda: torch.addmm(x, h, w_down.t())),
    ]
    doc = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for lib in ("cublas", "cublaslt"):
        torch.backends.cuda.preferred_blas_library(lib)
        row = {"library": lib}
        for name, flops, fn in gemms:
            row[name] = tflops(flops, fn, 20)
        s = sustained([(f, fn) for _, f, fn in gemms], args.layers)
        row["sequence"] = s["tflop_per_s"]
        row["sm_clock_mhz"] = s["sm_clock_mhz"]
        row["power_w"] = s["power_w"]
        doc["rows"].append(row)
        clk = row["sm_clock_mhz"]
        print(
            f"{lib:9} "
            + " ".join(f"{n} {row[n]:6.1f}" for n, _, _ in gemms)
            + f"  sequence {row['sequence']:6.1f} TFLOP/s  clock {min(clk, default=0)}-"
            f"{max(clk, default=0)} MHz  power max {max(row['power_w'], default=0):.0f} W",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
