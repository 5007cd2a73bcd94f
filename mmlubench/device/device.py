"""The run's device: the one object the runner and the passes hold for what a run asks of the
device outside the engines.

`Device.open` opens the vendor plug-in (which registers its own ways of synchronizing and of
counting memory with accel.py), records the environment (machine, driver, versions) and starts
sampling memory, power and the compute clock; `close` stops the sampling and returns its
report. In between: `synchronize` around every timed call, torch's peak memory per pass,
`sample` at pass boundaries, an `energy_window` per pass (its energy, power limit and median
clock). A `Device` made from a torch device alone (what `passes.run_pass` makes when it is
given none) has no plug-in: it synchronizes and reads torch's memory statistics only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mmlubench.device import accel, environment, vendors
from mmlubench.device.energy import EnergyWindow
from mmlubench.device.memory import MemoryReport, MemorySampler
from mmlubench.device.vendors.base import Vendor


@dataclass
class Device:
    """One device of a run: its torch device, and (opened) its plug-in, sampler, environment."""

    torch_device: torch.device
    vendor: Vendor | None = None
    sampler: MemorySampler | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def check(device: str, vendor: str | None = None) -> torch.device:
        """Refuse a device torch does not know or does not see, before any work (one line)."""
        return vendors.check_device(device, vendor)

    @classmethod
    def open(cls, device: str, vendor: str | None, sample_interval_s: float) -> Device:
        """The run's device: `vendor`'s plug-in (None: the device type's), the environment,
        then memory, power and clock sampled every `sample_interval_s` from now on."""
        plugin = vendors.open_vendor(device, vendor)
        env = environment.collect(device, plugin)
        sampler = MemorySampler(plugin, sample_interval_s).start()
        return cls(plugin.device, plugin, sampler, env)

    @classmethod
    def of(cls, device: torch.device | str) -> Device:
        """A device without a plug-in: synchronize and torch's memory statistics only."""
        return cls(device if isinstance(device, torch.device) else torch.device(device))

    @staticmethod
    def count(device_type: str) -> int:
        """How many devices of `device_type` this process sees (the CPU counts as one)."""
        return accel.device_count(device_type)

    def make_current(self) -> None:
        """Make this the process's current device (a rank's own, under torchrun)."""
        accel.set_device(self.torch_device)

    def synchronize(self) -> None:
        """Wait until every kernel queued on the device has finished (before reading a clock)."""
        accel.synchronize(self.torch_device)

    def reset_peak_memory(self) -> None:
        """Start torch's peak-memory statistics afresh (at the start of a pass)."""
        accel.reset_peak_memory(self.torch_device)

    def peak_allocated_bytes(self) -> int | None:
        """Most bytes torch held in tensors since the last reset (None: not counted here)."""
        return accel.peak_allocated_bytes(self.torch_device)

    def empty_cache(self) -> None:
        """Give the caching allocator's unused blocks back (after running out of memory)."""
        accel.empty_cache(self.torch_device)

    def sample(self) -> None:
        """One memory, power and clock sample now (at a pass boundary: a short peak between
        two periodic samples is less likely missed)."""
        if self.sampler is not None:
            self.sampler.sample()

    def energy_window(self) -> EnergyWindow:
        """Reads the energy counter now; its `stop()` gives the pass's energy reading."""
        if self.vendor is None:
            raise RuntimeError("an energy window needs the device opened with Device.open")
        return EnergyWindow(self.vendor, self.sampler)

    @property
    def warnings(self) -> list[str]:
        """What the plug-in could not measure, for the result's warnings."""
        return [self.sampler.warning] if self.sampler and self.sampler.warning else []

    def close(self) -> MemoryReport | None:
        """Stop sampling and close the plug-in: the memory report (None: never opened)."""
        if self.sampler is None or self.vendor is None:
            return None
        memory = self.sampler.stop()
        self.vendor.close()
        return memory
