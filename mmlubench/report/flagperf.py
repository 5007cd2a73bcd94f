"""A run as FlagPerf reports a case (`mmlubench report RUN --format flagperf`), so its figures
paste into FlagPerf's tables.

FlagPerf's inference/run_inference.py (FlagOpen/FlagPerf, commit 1b5a0303) logs one
`Finish Info` dict at the end of a case with FINISH_INFO's keys; inference/run.py then reads
that line back, adds HOST_KEYS (memory from the vendor monitor, and *MFU = flops / peak) and
prints every key as `key.ljust(43) + " : " + str(value).ljust(23)`. Both are written here with
the same key names, units and rounding. FlagPerf's "(qps)" throughputs of the MMLU cases are
prompt tokens per second (benchmarks/deepseek_7b_mmlu/pytorch/forward.py, cal_perf).
"""

from __future__ import annotations

from mmlubench.display import GIB
from mmlubench.results.document import Result

# inference/run_inference.py, the `infer_info` dict logged as "Finish Info", in its order.
FINISH_INFO = [
    "vendor",
    "compiler",
    "precision",
    "batchsize",
    "flops",
    "e2e_time(second)",
    "p_validation_whole(qps)",
    "p_validation_core(qps)",
    "p_inference_whole(qps)",
    "*p_inference_core(qps)",
    "val_average_acc",
    "infer_average_acc",
]
# inference/run.py, added on the host after parsing that line.
HOST_KEYS = ["vendor_usage(GiB)", "vendor_max_mem(GiB)", "*MFU"]


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _vendor(result: Result) -> str:
    """The vendor plug-in's name where the run recorded one, else the device type."""
    if result.environment.vendor:
        return result.environment.vendor
    device = result.environment.device.split(":")[0]
    return "nvidia" if device == "cuda" else device


def finish_info(result: Result) -> dict[str, object]:
    """FlagPerf's `Finish Info` dict for this run (FINISH_INFO's keys, FlagPerf's rounding)."""
    m, infer = result.metrics, result.infer
    # FlagPerf: flops = eval(flops) * p_inference_core, and *MFU = flops / peak. Here the
    # tokens the engine computed per core second stand for p_inference_core, so flops / peak
    # is the run's MFU; for engines that compute every prompt token (the reference method)
    # both are the same number.
    flops = None
    if m.flops_per_token is not None and infer.computed_tok_per_s is not None:
        flops = m.flops_per_token * infer.computed_tok_per_s
    return dict(
        zip(
            FINISH_INFO,
            [
                _vendor(result),
                infer.engine.name,
                m.precision,
                infer.engine.options.get("batch_size"),  # None: the engine packs, no fixed batch
                flops,
                round(m.e2e_time_s, 3),
                _round(m.p_val_whole_tok_per_s, 3),
                _round(m.p_val_core_tok_per_s, 3),
                _round(m.p_infer_whole_tok_per_s, 3),
                _round(m.p_infer_core_tok_per_s, 3),
                _round(m.acc_val, 3),
                _round(m.acc_infer, 3),
            ],
            strict=True,
        )
    )


def host_info(result: Result) -> dict[str, object]:
    """What FlagPerf's run.py adds: peak used and total memory (GiB, 2 decimals) and *MFU."""
    m = result.metrics
    used = None if m.mem_peak_used_bytes is None else round(m.mem_peak_used_bytes / GIB, 2)
    total = None if m.mem_total_bytes is None else round(m.mem_total_bytes / GIB, 2)
    mfu = None if m.mfu is None else f"{round(m.mfu * 100, 1)}%"
    return dict(zip(HOST_KEYS, [used, total, mfu], strict=True))


def format_flagperf(result: Result) -> str:
    """The `Finish Info` line (FlagPerf's run.py parses it back with ast.literal_eval), then
    every key padded as run.py prints it."""
    info = finish_info(result)
    lines = [f"Finish Info {info!r}"]
    for key, value in {**info, **host_info(result)}.items():
        lines.append((str(key).ljust(43) + " : " + str(value).ljust(23)).rstrip())
    return "\n".join(lines)
