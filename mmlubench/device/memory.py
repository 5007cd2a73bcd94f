"""Device memory, power and energy as the vendor plug-in measures them.

Memory is what the reference reports: memory *used* on the whole device (context and caching
allocator included, as nvidia-smi sees it) over device total, sampled in a background thread.
The reference samples nvidia-smi every 5 s; the interval is configurable, and the runner also
takes a sample at each pass boundary so a short peak between samples is less likely missed.
Power and the compute clock are sampled beside memory (a device at its power limit lowers its
clock: a pass's median clock says how far below its top clock it ran). Energy is the plug-in's
own counter read at the start and end of each pass (`EnergyWindow`); a plug-in without one
gives null, never an estimate. torch's own peak allocation is reported beside the device-wide
figure.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

from mmlubench.device import accel
from mmlubench.device.vendors.base import Vendor


@dataclass
class MemoryReport:
    device_index: int | None
    peak_used_bytes: int | None
    total_bytes: int | None
    torch_peak_allocated_bytes: int | None
    torch_peak_reserved_bytes: int | None
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, used)
    source: str = "none"  # what measured `used`: "nvml", "torch.xpu.mem_get_info", ...
    power_samples: list[tuple[float, float]] = field(default_factory=list)  # (s, watts)
    clock_samples: list[tuple[float, float]] = field(default_factory=list)  # (s, SM MHz)
    vendor: str | None = None

    def to_json(self) -> dict:
        return {
            "device_index": self.device_index,
            "peak_used_bytes": self.peak_used_bytes,
            "total_bytes": self.total_bytes,
            "torch_peak_allocated_bytes": self.torch_peak_allocated_bytes,
            "torch_peak_reserved_bytes": self.torch_peak_reserved_bytes,
            "source": self.source,
            "vendor": self.vendor,
            "samples": [[round(t, 3), u] for t, u in self.samples],
            "power_samples": [[round(t, 3), round(w, 2)] for t, w in self.power_samples],
            "sm_clock_samples": [[round(t, 3), c] for t, c in self.clock_samples],
        }


def _torch_peaks(vendor: Vendor) -> tuple[int | None, int | None]:
    """torch's peak allocated / reserved bytes on the device (accel: null where not counted)."""
    if vendor.device.type == "cpu":
        return None, None
    return accel.peak_allocated_bytes(vendor.device), accel.peak_reserved_bytes(vendor.device)


class MemorySampler:
    """Samples the device's used memory and power every `interval_s` until stopped.

    When the plug-in measures neither (a CPU run), it records nothing and reports nulls.
    """

    def __init__(self, vendor: Vendor, interval_s: float = 5.0):
        self.vendor = vendor
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.power: list[tuple[float, float]] = []
        self.clock: list[tuple[float, float]] = []
        self.total: int | None = None
        self.warning: str | None = "; ".join(getattr(vendor, "warnings", [])) or None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()
        self.active = vendor.memory_source is not None or vendor.power_w() is not None

    def sample(self) -> None:
        """Take one memory and power sample now (from any thread)."""
        if not self.active:
            return
        t = time.perf_counter() - self._t0
        mem = self.vendor.memory_used() if self.vendor.memory_source is not None else None
        watts, mhz = self.vendor.power_w(), self.vendor.sm_clock_mhz()
        with self._lock:
            if mem is not None:
                self.samples.append((t, mem[0]))
                self.total = mem[1]
            if watts is not None:
                self.power.append((t, watts))
            if mhz is not None:
                self.clock.append((t, mhz))

    def elapsed(self) -> float:
        """Seconds since the sampler started (the samples' time axis)."""
        return time.perf_counter() - self._t0

    def median_clock(self, start: float, end: float) -> float | None:
        """Median of the clock samples taken in [start, end] (elapsed() times); None if none.
        The median, not the mean: a pass's first samples fall in its compile or warm-up, when
        the device idles at a higher clock."""
        with self._lock:
            inside = [c for t, c in self.clock if start <= t <= end]
        return statistics.median(inside) if inside else None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> MemorySampler:
        if self.active:
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="mem-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> MemoryReport:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        peak_alloc, peak_reserved = _torch_peaks(self.vendor)
        return MemoryReport(
            device_index=self.vendor.index,
            peak_used_bytes=max((u for _, u in self.samples), default=None),
            total_bytes=self.total,
            torch_peak_allocated_bytes=peak_alloc,
            torch_peak_reserved_bytes=peak_reserved,
            samples=list(self.samples),
            source=self.vendor.memory_source if self.samples else "none",
            power_samples=list(self.power),
            clock_samples=list(self.clock),
            vendor=self.vendor.name,
        )
