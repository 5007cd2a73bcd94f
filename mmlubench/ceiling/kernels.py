"""The ceiling's timed kernels: a GEMM (torch.mm, or torch._scaled_mm in e4m3 with row-wise
scales), FlexAttention on one pack, and a device copy, each timed the same way.

Timing: warm-up reps first (not timed), then one rep timed alone sets how many reps fill
`Budget.target_s`; those reps are queued back to back and timed one by one with device events
(`torch.Event`, any accelerator torch drives) or, where the device has none (the CPU), with
perf_counter around the vendor layer's synchronize (`accel.synchronize`). The median rep is the
figure. While the timed reps run, a thread reads the vendor plug-in's compute clock and power.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mmlubench.device import accel
from mmlubench.device.vendors.base import Vendor
from mmlubench.results.ceiling_sections import Reading

EVENT_TIMER, SYNC_TIMER = "torch.Event", "synchronize+perf_counter"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Budget:
    """Sizes and repetitions of the step on one kind of device."""

    square: int  # the square GEMM's M = N = K
    copy_bytes: int  # the copy's source size
    max_gemm_tokens: int  # rows of the model-shape GEMMs, at most (else the pack length)
    max_pack_tokens: int  # the attention pack's length, at most
    target_s: float  # time the timed reps of one kernel should fill
    min_reps: int
    max_reps: int
    warmup: int


# An accelerator: the pack length itself (the engine's shapes), 8192^3, a 1 GiB copy, ~0.2 s a
# kernel (a few seconds a precision with the attention kernel's compile). A CPU: GEMMs on 128
# rows, a pack of at most 1024 tokens, 256^3: its rates are the CPU's at those shapes, not at
# the pack length (a CPU takes minutes at a 7B model's real ones).
ACCELERATOR = Budget(8192, 1 << 30, 1 << 20, 1 << 20, 0.2, 5, 2000, 3)
CPU = Budget(256, 16 << 20, 128, 1024, 0.02, 2, 20, 1)


def budget_for(device: torch.device) -> Budget:
    return CPU if device.type == "cpu" else ACCELERATOR


class Poll:
    """Reads the plug-in's compute clock and power every `interval_s` in a thread (and once at
    the start and end), while a `with` block runs."""

    def __init__(self, vendor: Vendor | None, interval_s: float = 0.01):
        self.vendor, self.interval_s = vendor, interval_s
        self.clocks: list[float] = []
        self.powers: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def read(self) -> None:
        if self.vendor is None:
            return
        clock, power = self.vendor.sm_clock_mhz(), self.vendor.power_w()
        if clock is not None:
            self.clocks.append(float(clock))
        if power is not None:
            self.powers.append(float(power))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.read()

    def __enter__(self) -> Poll:
        self.read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.read()

    def medians(self) -> tuple[float | None, float | None]:
        return (
            statistics.median(self.clocks) if self.clocks else None,
            statistics.median(self.powers) if self.powers else None,
        )


def timer_kind(device: torch.device) -> str:
    """Device events where the device has them (not the CPU), else synchronize + perf_counter."""
    if device.type == "cpu":
        return SYNC_TIMER
    try:
        torch.Event(device=device, enable_timing=True)
    except (RuntimeError, TypeError, ValueError):
        return SYNC_TIMER
    return EVENT_TIMER


def rep_times(fn: Callable[[], object], device: torch.device, reps: int, timer: str) -> list[float]:
    """Seconds of each of `reps` back-to-back calls of `fn`."""
    if timer == EVENT_TIMER:
        marks = [torch.Event(device=device, enable_timing=True) for _ in range(reps + 1)]
        marks[0].record()
        for mark in marks[1:]:  # rep i runs between marks i and i+1: nothing else between
            fn()
            mark.record()
        marks[-1].synchronize()
        return [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(marks)]
    times = []
    for _ in range(reps):
        accel.synchronize(device)
        t = time.perf_counter()
        fn()
        accel.synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def measure(
    name: str,
    dtype: str,
    shape: list[int],
    fn: Callable[[], object],
    device: torch.device,
    vendor: Vendor | None,
    budget: Budget,
    timer: str,
    flops: float | None = None,
    moved_bytes: float | None = None,
) -> Reading:
    """One Reading of `fn`: warm-up reps, then as many timed reps as fill the budget."""
    for _ in range(budget.warmup):
        fn()
    (one,) = rep_times(fn, device, 1, timer)
    reps = min(budget.max_reps, max(budget.min_reps, math.ceil(budget.target_s / max(one, 1e-9))))
    with Poll(vendor) as poll:
        times = rep_times(fn, device, reps, timer)
    med = statistics.median(times)
    clock, power = poll.medians()
    return Reading(
        name=name,
        dtype=dtype,
        shape=shape,
        flops=flops,
        moved_bytes=moved_bytes,
        reps=reps,
        warmup_reps=budget.warmup + 1,
        median_time_s=med,
        min_time_s=min(times),
        flops_per_s=flops / med if flops is not None and med > 0 else None,
        bytes_per_s=moved_bytes / med if moved_bytes is not None and med > 0 else None,
        sm_clock_mhz_median=clock,
        power_w_median=power,
    )


def failed(name: str, dtype: str, shape: list[int], error: str) -> Reading:
    """The Reading of a kernel that could not run here (its figures null, the reason said)."""
    return Reading(
        name=name,
        dtype=dtype,
        shape=shape,
        flops=None,
        moved_bytes=None,
        reps=0,
        warmup_reps=0,
        median_time_s=None,
        min_time_s=None,
        flops_per_s=None,
        bytes_per_s=None,
        sm_clock_mhz_median=None,
        power_w_median=None,
        error=error,
    )


def fp8_support(device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """(the row-wise FP8 matmul's output dtype, None), or (None, why the device has none)."""
    from mmlubench.engines import fp8
    from mmlubench.errors import RunError

    try:
        fp8.check_device(device)
        return fp8.scaled_mm_out_dtype(device), None
    except RunError as e:
        return None, str(e)


def gemm(
    name: str,
    m: int,
    n: int,
    k: int,
    precision: str,
    device: torch.device,
    vendor: Vendor | None,
    budget: Budget,
    timer: str,
    fp8_out: torch.dtype | None = None,
) -> Reading:
    """out [M, N] = a [M, K] @ w[N, K]^T as a linear layer does; in fp8 through
    torch._scaled_mm with one fp32 scale per row of a and per output channel of w."""
    shape, flops = [m, n, k], 2.0 * m * n * k
    if precision != "fp8":
        dtype = DTYPES[precision]
        a = torch.randn(m, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        out = torch.empty(m, n, device=device, dtype=dtype)
        return measure(
            name,
            precision,
            shape,
            lambda: torch.mm(a, w.t(), out=out),
            device,
            vendor,
            budget,
            timer,
            flops=flops,
        )
    from mmlubench.engines.fp8 import E4M3, FAST_ACCUM

    a = torch.randn(m, k, device=device).to(E4M3)
    w = torch.randn(n, k, device=device).to(E4M3)
    sa, sw = torch.ones(m, 1, device=device), torch.ones(1, n, device=device)
    return measure(
        name,
        "float8_e4m3fn",
        shape,
        lambda: torch._scaled_mm(
            a, w.t(), scale_a=sa, scale_b=sw, out_dtype=fp8_out, use_fast_accum=FAST_ACCUM
        ),
        device,
        vendor,
        budget,
        timer,
        flops=flops,
    )


def copy(
    nbytes: int, device: torch.device, vendor: Vendor | None, budget: Budget, timer: str
) -> Reading:
    """dst.copy_(src) of `nbytes`: bandwidth counts the bytes read plus the bytes written."""
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return measure(
        "copy",
        "uint8",
        [nbytes],
        lambda: dst.copy_(src),
        device,
        vendor,
        budget,
        timer,
        moved_bytes=2.0 * nbytes,
    )
