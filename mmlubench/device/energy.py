"""Energy per pass from the vendor plug-in's counter: joules, average power, tokens per joule.

The counter is read when a pass starts and when it ends, after the device has finished its
work; a data-parallel pass sums the energy of all its devices (each rank reads its own). A
plug-in without a counter, or a pass resumed from an earlier session (whose energy was not
recorded), gives null figures: never an estimate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mmlubench.device.memory import MemorySampler
from mmlubench.device.vendors.base import Vendor


@dataclass
class EnergyReading:
    """One device's counter over one pass: joules used and the seconds between the reads; its
    power limit and median compute clock in that time (None: unknown)."""

    energy_j: float | None
    seconds: float
    source: str | None
    sm_clock_mhz_median: float | None = None  # over the sampler's samples in the pass
    power_limit_w: float | None = None


class EnergyWindow:
    """Reads the counter now; `stop()` reads it again (after a synchronize) and returns the
    difference, with the power limit and the median clock of `sampler`'s samples between."""

    def __init__(self, vendor: Vendor, sampler: MemorySampler | None = None):
        self.vendor, self.sampler = vendor, sampler
        vendor.synchronize()
        self.t0 = time.perf_counter()
        self.s0 = sampler.elapsed() if sampler is not None else 0.0
        self.e0 = vendor.energy_j()

    def stop(self) -> EnergyReading:
        self.vendor.synchronize()
        e1 = self.vendor.energy_j()
        seconds = time.perf_counter() - self.t0
        s = self.sampler
        clock = s.median_clock(self.s0, s.elapsed()) if s is not None else None
        limit = self.vendor.limits().get("power_limit_w")
        # no counter, or it was reset: no energy figure
        joules = None if self.e0 is None or e1 is None or e1 < self.e0 else e1 - self.e0
        return EnergyReading(joules, seconds, self.vendor.energy_source, clock, limit)


def pass_energy(
    readings: Sequence[EnergyReading | None], prompt_tokens: int, questions: int
) -> dict:
    """The energy figures of one pass from each device's reading (None: not measured).

    energy_j sums the devices; avg_power_w is that energy over the longest device's window
    (all devices together, like the pass's throughput over the slowest rank's time)."""
    measured = [r for r in readings if r is not None and r.energy_j is not None]
    if not readings or len(measured) != len(readings):
        source = next((r.source for r in readings if r is not None), None)
        return {
            "energy_j": None,
            "avg_power_w": None,
            "tokens_per_joule": None,
            "joules_per_question": None,
            "energy_source": source,
            "energy_window_s": None,
            "energy_per_device_j": None,
            **_clock_figures(readings),
        }
    energy = sum(r.energy_j for r in measured)
    seconds = max(r.seconds for r in measured)
    return {
        "energy_j": energy,
        "avg_power_w": energy / seconds if seconds > 0 else None,
        "tokens_per_joule": prompt_tokens / energy if energy > 0 else None,
        "joules_per_question": energy / questions if questions else None,
        "energy_source": measured[0].source,
        "energy_window_s": seconds,
        "energy_per_device_j": [r.energy_j for r in measured],
        **_clock_figures(readings),
    }


def _clock_figures(readings: Sequence[EnergyReading | None]) -> dict:
    """The power limit (summed over devices, like avg_power_w) and the median compute clock
    (mean over devices); null unless every device gave it."""
    limits = [r.power_limit_w for r in readings if r is not None and r.power_limit_w is not None]
    clocks = [
        r.sm_clock_mhz_median
        for r in readings
        if r is not None and r.sm_clock_mhz_median is not None
    ]
    every = len(readings) > 0
    return {
        "power_limit_w": sum(limits) if every and len(limits) == len(readings) else None,
        "sm_clock_mhz_median": (
            sum(clocks) / len(clocks) if every and len(clocks) == len(readings) else None
        ),
    }
