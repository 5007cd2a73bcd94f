"""The device's own measured ceiling: what this chip does at this model's shapes, right now.

For each precision: the dense GEMM rate at the model's own shapes (the decoder's projections
at the pack length, the LM head on a pack's question rows), at a large square product, and
FlexAttention's rate on one real pack; and the device's copy bandwidth. Each kernel is timed
apart (kernels.py: warm-up reps excluded, median of reps, device events where the device
has them) with the vendor plug-in's compute clock and power read while it ran.

`run` measures it after its passes (outside e2e_time) for the run's precision, on
accelerators unless `ceiling: false` (`--no-ceiling`); on the CPU only with `ceiling: true`,
and then with small shapes (kernels.CPU). `attach` puts it in the result document with
each pass's `ceiling_fraction`. `mmlubench ceiling` alone prints the device's table
(report/ceiling.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mmlubench.ceiling import attention as attn
from mmlubench.ceiling import kernels
from mmlubench.device import accel
from mmlubench.device.vendors.base import Vendor
from mmlubench.engines.base import Request
from mmlubench.results.ceiling_sections import (
    Ceiling,
    ModelDims,
    PrecisionCeiling,
    Reading,
    at_ceiling,
    fraction,
)

if TYPE_CHECKING:
    from mmlubench.config.config import Config
    from mmlubench.results.document import Result

# deepseek-llm-7b-base's config.json (the packaged case's model): the shapes when none is given.
DEFAULT_DIMS = ModelDims(
    layers=30, hidden=4096, intermediate=11008, heads=32, kv_heads=32, head_dim=128, vocab=102400
)
DEFAULT_SOURCE = "deepseek-llm-7b-base (built in)"


@dataclass(frozen=True)
class PackOptions:
    """The shared-prefix engine's options the attention pack follows."""

    pack_tokens: int = 32768
    max_questions: int = 1024
    block_size: int = 128
    kernel_options: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> PackOptions:
        from mmlubench.engines import engine_options

        o = engine_options("shared-prefix", cfg.engines.get("shared-prefix") or {}, "config")
        return cls(o.pack_tokens, o.max_questions, o.block_size, o.attention_kernel_options)


def _guard(name: str, dtype: str, shape: list[int], run: Any) -> Reading:
    """run(), or a failed Reading saying why the kernel could not run (out of memory, no
    kernel for this dtype on this device, a compile failure): the other figures still count."""
    try:
        return run()
    except (RuntimeError, ValueError, NotImplementedError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return kernels.failed(name, dtype, shape, f"{type(e).__name__}: {first}"[:300])


def _rate(readings: Iterable[Reading], weights: Iterable[float]) -> float | None:
    """FLOPs over time of readings each run `weight` times (None if one is missing)."""
    flops = seconds = 0.0
    for r, w in zip(readings, weights, strict=True):
        if r.flops is None or not r.median_time_s:
            return None
        flops, seconds = flops + w * r.flops, seconds + w * r.median_time_s
    return flops / seconds if seconds > 0 else None


def measure_precision(
    precision: str,
    dims: ModelDims,
    tokens: int,
    pack: Any,
    opts: PackOptions,
    device: torch.device,
    vendor: Vendor | None,
    budget: kernels.Budget,
    timer: str,
) -> tuple[PrecisionCeiling, float]:
    """Every rate in one precision, and the attention kernel's compile seconds."""
    fp8_out, why = kernels.fp8_support(device) if precision == "fp8" else (None, None)
    dense = "fp16" if precision == "fp8" else precision  # fp8 runs its LM head in fp16
    label = "float8_e4m3fn" if precision == "fp8" else precision

    def gemm(name: str, m: int, n: int, k: int, prec: str) -> Reading:
        if prec == "fp8" and why:
            return kernels.failed(name, label, [m, n, k], why)
        return _guard(
            name,
            prec,
            [m, n, k],
            lambda: kernels.gemm(name, m, n, k, prec, device, vendor, budget, timer, fp8_out),
        )

    decoder = [gemm(n, *mnk, precision) for n, mnk in dims.decoder_gemms(tokens).items()]
    rows = len(pack.last) if pack is not None else max(1, tokens // 100)
    lm_head = gemm("lm_head", rows, dims.vocab, dims.hidden, dense)
    s = budget.square
    square = gemm("square", s, s, s, precision)
    readings, compile_s = [*decoder, lm_head, square], 0.0
    att = None
    if pack is not None:
        kernel_options = None if device.type == "cpu" else opts.kernel_options
        shape = [len(pack.ids), dims.heads, dims.kv_heads, dims.head_dim]
        result: list[float] = []

        def run() -> Reading:
            reading, seconds = attn.attention(
                dims, pack, opts.block_size, dense, device, vendor, budget, timer, kernel_options
            )
            result.append(seconds)
            return reading

        att = _guard("attention", dense, shape, run)
        readings.append(att)
        compile_s = sum(result)
    return PrecisionCeiling(
        precision=precision,
        gemm_model_flops_per_s=_rate([*decoder, lm_head], [dims.layers] * 4 + [1]),
        gemm_decoder_flops_per_s=_rate(decoder, [1] * 4),
        gemm_lm_head_flops_per_s=lm_head.flops_per_s,
        gemm_square_flops_per_s=square.flops_per_s,
        attention_flops_per_s=att.flops_per_s if att is not None else None,
        readings=readings,
    ), compile_s


def choose_pack(
    requests: Sequence[Request] | None, source: str, opts: PackOptions, budget: kernels.Budget
) -> tuple[Any, str]:
    """One real pack of `requests` (those that fit), else of the synthetic layout."""
    tokens = min(opts.pack_tokens, budget.max_pack_tokens)
    pack = (
        attn.pick_pack(requests, tokens, opts.max_questions, opts.block_size) if requests else None
    )
    if pack is None:
        source = "a synthetic layout of MMLU's shape"
        pack = attn.pick_pack(
            attn.synthetic_requests(), tokens, opts.max_questions, opts.block_size
        )
    return pack, source


def measure_device(
    device: torch.device,
    vendor: Vendor | None,
    precisions: Sequence[str],
    dims: ModelDims,
    model_source: str,
    requests: Sequence[Request] | None,
    source: str,
    opts: PackOptions,
) -> Ceiling:
    """The whole ceiling of `device` in each of `precisions`."""
    start = time.perf_counter()
    budget, timer = kernels.budget_for(device), kernels.timer_kind(device)
    pack, source = choose_pack(requests, source, opts, budget)
    tokens = min(opts.pack_tokens, budget.max_gemm_tokens)
    copy = _guard(
        "copy",
        "uint8",
        [budget.copy_bytes],
        lambda: kernels.copy(budget.copy_bytes, device, vendor, budget, timer),
    )
    per, compile_s = {}, 0.0
    for precision in precisions:
        per[precision], seconds = measure_precision(
            precision, dims, tokens, pack, opts, device, vendor, budget, timer
        )
        compile_s += seconds
    accel.empty_cache(device)
    limits = vendor.limits() if vendor is not None else {}
    return Ceiling(
        device=str(device),
        device_name=vendor.device_name() if vendor else None,
        vendor=vendor.name if vendor else None,
        timer=timer,
        model_source=model_source,
        model=dims.to_json(),
        gemm_tokens=tokens,
        square=budget.square,
        pack=attn.describe(pack, source, opts.block_size) if pack is not None else None,
        precisions=per,
        bandwidth_bytes_per_s=copy.bytes_per_s,
        copy=copy,
        power_limit_w=limits.get("power_limit_w"),
        max_sm_clock_mhz=limits.get("max_sm_clock_mhz"),
        attention_compile_s=compile_s if pack is not None else None,
        time_s=time.perf_counter() - start,
    )


def enabled(cfg: Config) -> bool:
    """`ceiling: true/false`, else (null) on accelerators only."""
    setting = getattr(cfg, "ceiling", None)
    return setting if setting is not None else torch.device(cfg.device).type != "cpu"


def for_run(cfg: Config, model_config: Any, requests: Sequence[Request]) -> Ceiling | None:
    """The run's ceiling in its precision, on its device (None when not enabled)."""
    if not enabled(cfg):
        return None
    from mmlubench.device import vendors

    # fp8 runs the val pass in fp16: its fraction is against the fp16 rates.
    precisions = [cfg.precision] + (["fp16"] if cfg.precision == "fp8" and cfg.validation else [])
    vendor = vendors.open_vendor(cfg.device, cfg.vendor)
    try:
        with torch.inference_mode():
            return measure_device(
                torch.device(cfg.device),
                vendor,
                precisions,
                ModelDims.from_config(model_config),
                f"the run's model ({cfg.weight_path / 'config.json'})",
                requests,
                "the run's prompts",
                PackOptions.from_config(cfg),
            )
    finally:
        vendor.close()


def attach(result: Result, ceiling: Ceiling | None) -> Result:
    """`result` with its `ceiling` section and each pass's time at the ceiling and
    `ceiling_fraction` (unchanged when nothing was measured)."""
    if ceiling is None:
        return result
    result.ceiling = ceiling
    dims = ModelDims(**ceiling.model)
    for name, p in result.passes.items():
        precision = result.metrics.precision
        if precision == "fp8" and name != "infer":  # only the infer engine runs fp8
            precision = "fp16"
        rates = ceiling.precisions.get(precision)
        at = (
            at_ceiling(
                dims,
                rates,
                p.computed_tokens,
                p.attention_pairs,
                p.logit_rows,
                result.metrics.devices,
            )
            if rates is not None
            else None
        )
        p.at_ceiling, p.ceiling_fraction = at, fraction(at, p.core_time_s)
    return result
