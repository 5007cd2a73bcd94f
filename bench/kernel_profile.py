"""Where an engine's time goes: a kernel-time breakdown of N batches (one GPU, random weights).

Builds the model with random weights of the config in `--model-dir`, plans the real prompts of
a sample of subjects (`--every-subject`), compiles/warms the engine up, runs `--skip` batches
unprofiled, then profiles `--batches` batches with torch.profiler and prints:
- kernel time by category (matrix multiplies, attention, copies, elementwise/norm, other),
  with the share of all kernel time and, for the matrix multiplies, the TFLOP/s they reached
  (FLOPs of the aten matmul ops over the GEMM kernels' time);
- the top kernels by time;
- wall time of the profiled batches (synchronized) against their summed kernel time (the
  difference is launch and host overhead, or idle device).

    python bench/kernel_profile.py --model-dir DIR --mmlu-dir DIR --engine shared-prefix --batches 3
    python bench/kernel_profile.py --model-dir DIR --mmlu-dir DIR --engine eager:method=prefix-cache
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from valspeed import parse_try

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.model.load import load_model

# First match wins; names as CUDA kernels show them on NVIDIA (cuBLAS: gemm/nvjet/cutlass/
# xmma; FlexAttention: Inductor templates named after flex_attention; SDPA: fmha/flash/sdpa,
# cuDNN's include "wgmma", hence attention before matmul). Inductor's fused kernels that only
# mention a copy (`_to_copy`) are elementwise work, not copies.
CATEGORIES = [
    ("attention", re.compile(r"flex_attention|flash|fmha|sdpa|attention|attn", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|wgmma|splitk", re.I)),
    ("copy", re.compile(r"^Memcpy|^Memset|CatArray|direct_copy|copy_kernel", re.I)),
    (
        "elementwise/norm/reduce",
        re.compile(
            r"triton_|elementwise|vectorized|reduce|norm|"
            r"softmax|index|fill|gather",
            re.I,
        ),
    ),
]


def category(name: str) -> str:
    return next((c for c, rx in CATEGORIES if rx.search(name)), "other")


def breakdown(prof: torch.profiler.profile) -> dict:
    """Kernel time per category and per kernel (ms), and the matmul ops' FLOPs."""
    kernels: dict[str, float] = defaultdict(float)
    flops = 0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            if e.name.startswith("##"):  # a compiled graph's annotation, not a kernel
                continue
            kernels[e.name] += e.device_time / 1e3
        elif e.name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::_scaled_mm"):
            flops += e.flops or 0
    cats: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        cats[category(name)] += ms
    total = sum(cats.values()) or 1.0
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:15]
    # Host side: where the CPU spends its time (an idle device waits on it).
    host = sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)[:12]
    return {
        "kernel_ms": total,
        "matmul_flops": flops,
        "host_ops": [
            {"name": a.key[:110], "self_cpu_ms": a.self_cpu_time_total / 1e3, "calls": a.count}
            for a in host
        ],
        "categories": {
            c: {"ms": ms, "share": ms / total}
            for c, ms in sorted(cats.items(), key=lambda kv: -kv[1])
        },
        "top_kernels": [{"name": n[:110], "ms": ms, "category": category(n)} for n, ms in top],
    }


def run(engine, batches, skip: int, count: int) -> tuple[dict, float, int]:
    for b in batches[:skip]:
        engine.forward(engine.load(b))
    chosen = batches[skip : skip + count]
    inputs = [engine.load(b) for b in chosen]
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts, with_flops=True) as prof:
        t = time.perf_counter()
        for x in inputs:
            engine.forward(x)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    return breakdown(prof), wall, sum(b.work.tokens for b in chosen)


def print_table(doc: dict) -> None:
    b = doc["breakdown"]
    print(
        f"\n{doc['engine']} on {doc['device']}: {doc['batches']} batches, "
        f"{doc['computed_tokens']:,} computed tokens, wall {doc['wall_s'] * 1e3:.1f} ms, "
        f"kernels {b['kernel_ms']:.1f} ms"
    )
    print("| category | ms | share of kernel time |\n|---|---|---|")
    for c, v in b["categories"].items():
        print(f"| {c} | {v['ms']:.1f} | {v['share']:.1%} |")
    mm = b["categories"].get("matmul", {}).get("ms")
    if mm and b["matmul_flops"]:
        print(f"matmul: {b['matmul_flops'] / (mm / 1e3) / 1e12:.0f} TFLOP/s over GEMM kernel time")
    print("\ntop kernels:")
    for k in b["top_kernels"]:
        print(f"  {k['ms']:9.2f} ms  {k['category']:<24} {k['name']}")
    print("\ntop host operations (self CPU time):")
    for k in b["host_ops"]:
        print(f"  {k['self_cpu_ms']:9.2f} ms  {k['calls']:6d} calls  {k['name']}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--mmlu-dir", required=True)
    ap.add_argument(
        "--engine", default="shared-prefix", help="engine:opt=v,opt=v (as bench/valspeed.py --try)"
    )
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--every-subject", type=int, default=8)
    ap.add_argument("--skip", type=int, default=2, help="batches run before profiling")
    ap.add_argument("--batches", type=int, default=3, help="batches profiled")
    ap.add_argument("--out", help="write the full breakdown as JSON here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/kernel_profile.py: needs a CUDA device (it reads CUDA kernel times)")
    tok = load_tokenizer(args.model_dir)
    data = load_mmlu(args.mmlu_dir, "test")
    keep = set(data.subjects[:: args.every_subject])
    reqs = [Request(p.ids, p.prefix_len) for p in build_prompts(data, tok) if p.subject in keep]
    model, _ = load_model(args.model_dir, args.precision, "cuda", random_weights=True)
    name, opts = parse_try(args.engine)
    engine = engine_class(name)(model, engine_options(name, opts), "cuda")
    with torch.inference_mode():
        batches = engine.plan(reqs)
        if len(batches) < args.skip + args.batches:
            sys.exit(
                f"bench/kernel_profile.py: only {len(batches)} batches planned; lower --skip/"
                "--batches or --every-subject"
            )
        engine.warmup(batches)
        b, wall, tokens = run(engine, batches, args.skip, args.batches)
    doc = {
        "engine": args.engine,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "batches": args.batches,
        "computed_tokens": tokens,
        "wall_s": wall,
        "computed_tok_per_s": tokens / wall,
        "breakdown": b,
    }
    print_table(doc)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
