"""FP8 smoke test on one GPU: one pack through the shared-prefix engine in fp16 and in fp8.

Builds the model of `--model-dir`'s config.json with random weights (mmlubench.model, fp16,
optionally only `--layers` decoder layers), plans synthetic MMLU-shaped requests (a shared
few-shot prefix per subject, question suffixes) into packs of `--pack-tokens`, and runs the
first pack through the engine twice: fp16, then fp8 (engines/fp8.py). Prints for each: compile
time, time per pack (median of `--iters`), achieved TFLOP/s and MFU against its own peak, CUDA
kernels launched per pack; then the fp8/fp16 speed ratio and the relative L2 error of fp8's
last-position logits against fp16's. Exits 1 with a FAILED line naming the step on any error,
NaN or absurd difference (a wrong scale or layout gives rel L2 ~1); 2 without a CUDA GPU.

    python bench/fp8_smoke.py --model-dir .devdata/deepseek-llm-7b-base
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.model.load import load_model
from mmlubench.results.metrics import ModelShape, peak_flops, work_flops

# fp8's logits against fp16's: two unrelated vectors of equal norm are ~1.41 apart; random
# weights of the 7B config give 0.64 mean, 0.73 max at 30 layers (quantization error compounds
# with depth: 0.15 at 1 layer, H200, 2026-11-28). Beyond this limit it is a bug, not rounding.
REL_L2_LIMIT = 1.0
# The FP8 kernel against the fp32 matmul of the same quantized operands: 1.4e-3 measured (fast
# accumulation); a layout or scale error gives ~1.
KERNEL_LIMIT = 1e-2


def fail(step: str, message: str) -> None:
    print(f"FAILED at {step}: {message}", flush=True)
    sys.exit(1)


def requests(vocab: int, tokens: int, seed: int = 0) -> list[Request]:
    """MMLU-shaped requests: subjects of a 540-token prefix and 40 questions of 100-250 tokens,
    enough of them to fill more than `tokens`."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(r.ids) for r in out) < 2 * tokens:
        prefix = rng.integers(10, vocab, 540)
        for _ in range(40):
            suffix = rng.integers(10, vocab, int(rng.integers(100, 250)))
            out.append(Request(np.concatenate([prefix, suffix]).astype(np.int32), 540))
    return out


def model_dir(src: str, layers: int | None) -> str:
    """`src`, or a temporary copy of its config.json with `layers` decoder layers."""
    if layers is None:
        return src
    cfg = json.loads((Path(src) / "config.json").read_text())
    cfg["num_hidden_layers"] = layers
    tmp = Path(tempfile.mkdtemp(prefix="fp8-smoke-"))
    (tmp / "config.json").write_text(json.dumps(cfg))
    return str(tmp)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(name: str, model, batch, options: dict, iters: int, device: str) -> dict:
    """Compile/warm up on the pack, then time it `iters` times; logits and the kernels of one
    profiled forward ({name: (launches, ms)})."""
    step = f"{name}: engine set-up"
    try:
        engine = engine_class("shared-prefix")(
            model, engine_options("shared-prefix", options), device
        )
        with torch.inference_mode():
            step = f"{name}: compile and warm-up (engine.warmup)"
            t = time.perf_counter()
            engine.warmup([batch])
            sync(device)
            compile_s = time.perf_counter() - t
            step = f"{name}: timed forwards"
            inputs = engine.load(batch)
            times = []
            for _ in range(iters):
                sync(device)
                t = time.perf_counter()
                logits = engine.forward(inputs)
                sync(device)
                times.append(time.perf_counter() - t)
            step = f"{name}: profiled forward"
            kind = "CUDA" if device.startswith("cuda") else "CPU"
            with torch.profiler.profile(
                activities=[getattr(torch.profiler.ProfilerActivity, kind)]
            ) as p:
                engine.forward(inputs)
                sync(device)
    except Exception as e:  # the lead sends this output back: say where and what
        traceback.print_exc()
        fail(step, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
    launches, ms = Counter(), Counter()
    for e in p.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            launches[e.name] += 1
            ms[e.name] += e.device_time / 1e3
    out_dtype = getattr(engine.layer_fn.keywords.get("linear"), "keywords", {}).get("out_dtype")
    return {
        "compile_s": compile_s,
        "pack_s": statistics.median(times),
        "times_s": times,
        "logits": logits.float().cpu(),
        "kernels": sum(launches.values()),
        "by_kernel": {k: (launches[k], ms[k]) for k in launches},
        "scaled_mm_out": str(out_dtype) if out_dtype else None,
    }


def kernel_lines(r: dict, other: dict, top: int = 8) -> list[str]:
    """The kernels of `r` by time, marking those `other` (the fp16 run) does not launch."""
    rows = sorted(r["by_kernel"].items(), key=lambda kv: -kv[1][1])[:top]
    return [
        f"    {ms:8.2f} ms {n:4d}x {'NEW ' if k not in other['by_kernel'] else ''}{k[:110]}"
        for k, (n, ms) in rows
    ]


def report(name: str, r: dict, flops: float, device: str, precision: str, layers: int) -> None:
    tflops = flops / r["pack_s"] / 1e12
    peak = peak_flops(device, precision)
    mfu = f"{100 * tflops * 1e12 / peak:.1f}% of {peak / 1e12:.0f}" if peak else "peak unknown"
    print(
        f"{name}: compile+warm-up {r['compile_s']:.1f} s, {r['pack_s'] * 1e3:.1f} ms per pack "
        f"(runs {', '.join(f'{t * 1e3:.1f}' for t in r['times_s'])}), {tflops:.0f} TFLOP/s "
        f"({mfu}), {r['kernels']} CUDA kernels per pack ({r['kernels'] / layers:.1f} per "
        f"layer)" + (f", _scaled_mm writes {r['scaled_mm_out']}" if r["scaled_mm_out"] else ""),
        flush=True,
    )


def check_kernel(dev: str, k: int, n: int) -> None:
    """fp8_linear (the FP8 kernel) against fp8_linear_reference on one GEMM of the model's
    shapes: the recipe's arithmetic, without the compounding of a deep random network."""
    from mmlubench.engines import fp8

    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(4096, k, device=dev, generator=g).half()
    w = (torch.randn(n, k, device=dev, generator=g) * 0.02).half()
    try:
        w_q, w_s = fp8.quantize_weight(w)
        out = fp8.scaled_mm_out_dtype(torch.device(dev))
        got = fp8.fp8_linear(x, w_q, w_s, out_dtype=out).float()
    except Exception as e:
        traceback.print_exc()
        fail("kernel check (fp8_linear)", f"{type(e).__name__}: {e}")
    ref = fp8.fp8_linear_reference(x.float(), w_q, w_s)
    exact = x.float() @ w.float().t()
    kernel = ((got - ref).norm() / ref.norm()).item()
    quant = ((ref - exact).norm() / exact.norm()).item()
    print(
        f"kernel check, x [4096, {k}] N(0,1), w [{n}, {k}] N(0,0.02): FP8 kernel vs fp32 "
        f"matmul of the same quantized operands rel L2 {kernel:.2e}; the quantized product "
        f"vs the exact one {quant:.2e} (e4m3's rounding); writes {out}",
        flush=True,
    )
    if not kernel < KERNEL_LIMIT:
        fail(
            "kernel check",
            f"rel L2 {kernel:.3e} >= {KERNEL_LIMIT}: the FP8 kernel does not "
            "compute the recipe (operand layout or scales)",
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", default=".devdata/deepseek-llm-7b-base")
    ap.add_argument("--layers", type=int, help="decoder layers (default: the config's)")
    ap.add_argument("--pack-tokens", type=int, default=32768)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script (fp8 fails)")
    args = ap.parse_args()
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("fp8_smoke: needs a CUDA GPU (torch sees none)")
        sys.exit(2)
    device = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    if dev.startswith("cuda"):
        print(
            f"{device}, compute capability {torch.cuda.get_device_capability()}, torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}",
            flush=True,
        )
    try:
        model, info = load_model(
            model_dir(args.model_dir, args.layers),
            "fp16" if dev.startswith("cuda") else "fp32",
            dev,
            random_weights=True,
            progress=False,
        )
    except Exception as e:
        traceback.print_exc()
        fail("model build", f"{type(e).__name__}: {e}")
    shape = ModelShape.from_config(model.config)
    engine = engine_class("shared-prefix")(
        model, engine_options("shared-prefix", {"pack_tokens": args.pack_tokens}), dev
    )
    batch = engine.plan(requests(shape.vocab, args.pack_tokens))[0]
    del engine
    w = batch.work
    flops = work_flops(shape, w.tokens, w.attention_pairs, w.logit_rows)
    print(
        f"model: {shape.layers} layers, hidden {shape.hidden}, {info.n_params / 1e9:.2f} B "
        f"params; pack: {args.pack_tokens} positions, {w.tokens} computed tokens, "
        f"{len(batch.rows)} questions, {flops / 1e12:.1f} TFLOP",
        flush=True,
    )
    base = {"pack_tokens": args.pack_tokens}
    if dev.startswith("cuda"):
        check_kernel(dev, shape.hidden, model.model.layers[0].mlp.gate_proj.weight.shape[0])
    fp16 = run("fp16", model, batch, base, args.iters, dev)
    report("fp16", fp16, flops, device, "fp16", shape.layers)
    print("\n".join(kernel_lines(fp16, fp16)), flush=True)
    fp8 = run("fp8", model, batch, {**base, "fp8": True}, args.iters, dev)
    report("fp8 ", fp8, flops, device, "fp8", shape.layers)
    print("\n".join(kernel_lines(fp8, fp16)), flush=True)
    a, b = fp16["logits"], fp8["logits"]
    if not torch.isfinite(b).all():
        fail("fp8 logits", f"{int((~torch.isfinite(b)).sum())} non-finite values")
    rel = (b - a).norm(dim=-1) / a.norm(dim=-1)
    same = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    print(
        f"fp8 vs fp16: {fp16['pack_s'] / fp8['pack_s']:.2f}x faster per pack; last-position "
        f"logits rel L2 mean {rel.mean():.3e} max {rel.max():.3e}, same argmax "
        f"{100 * same:.1f}% ({len(rel)} questions); {fp8['kernels'] - fp16['kernels']} more "
        "kernel launches per pack in fp8 (0: the activation quantization is fused into the "
        "kernels fp16 runs anyway)",
        flush=True,
    )
    if rel.max() > REL_L2_LIMIT:
        fail(
            "fp8 vs fp16",
            f"rel L2 {rel.max():.3f} > {REL_L2_LIMIT}: fp8 does not compute "
            "what fp16 does (scale or layout error?)",
        )
    print("fp8 smoke: OK")


if __name__ == "__main__":
    main()
