"""The vendor plug-in interface, and its device-generic default.

A plug-in is a `Vendor` subclass: one object per device of a run, asked for what PyTorch itself
does not say the same way on every accelerator: synchronize, device name, device-wide memory
used, and an energy counter. The default works for any device whose PyTorch backend follows
torch.cuda's module API (torch.xpu, torch.npu, torch.mlu, torch.musa, torch.hpu, ROCm's
torch.cuda) and reports null for what it cannot know: never a guess.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch

from mmlubench.device import accel


def backend_module(device_type: str) -> ModuleType | None:
    """torch.<type> for an accelerator (torch.cuda, torch.xpu, torch.npu once torch_npu is
    loaded, ...); None for the CPU or a backend without a module."""
    if device_type == "cpu":
        return None
    return getattr(torch, device_type, None)


def cpu_name() -> str:
    """The CPU's marketing name (Linux), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


class Vendor:
    """Device-generic behaviour; a plug-in overrides what its device does differently.

    Class attributes say what a plug-in is: `name` (as given to the `vendor` config key),
    `device_types` (torch device types it serves when no vendor is named) and `config`, the
    config layer `--vendor NAME` applies (the vendor YAML's keys: device, precision, engine
    options, peak FLOP/s per precision): a mapping, or the path of a YAML file (relative to the
    plug-in's module); None = only `vendor: NAME`. Instance attributes say where its memory and
    energy figures come from (`memory_source`, `energy_source`; None = not measured);
    result.json records them.
    """

    name: ClassVar[str] = "generic"
    device_types: ClassVar[tuple[str, ...]] = ()
    config: ClassVar[Mapping[str, Any] | str | Path | None] = None

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.module = backend_module(self.device.type)
        has_info = getattr(self.module, "mem_get_info", None) is not None
        self.memory_source: str | None = (
            f"torch.{self.device.type}.mem_get_info" if has_info else None
        )
        self.energy_source: str | None = None

    @property
    def index(self) -> int | None:
        """The device's index (the current one when the device string has none)."""
        if self.device.index is not None or self.module is None:
            return self.device.index
        current = getattr(self.module, "current_device", None)
        return int(current()) if current is not None else 0

    def synchronize(self) -> None:
        """Wait until the device has finished all queued work."""
        sync = getattr(self.module, "synchronize", None)
        if sync is not None:
            sync(self.device)

    def device_ops(self) -> accel.DeviceOps | None:
        """The operations (accel.DeviceOps) this plug-in does its own way, registered with
        `accel` for the run so that what the runner asks of the device goes through them; None:
        all generic (torch.accelerator). By default: its `synchronize`, where a subclass
        overrides it."""
        if type(self).synchronize is Vendor.synchronize:
            return None
        return accel.DeviceOps(synchronize=lambda _: self.synchronize())

    def device_name(self) -> str:
        get = getattr(self.module, "get_device_name", None)
        if get is None:
            return self.device.type if self.module is not None else cpu_name()
        return str(get(self.index))

    def device_count(self) -> int:
        count = getattr(self.module, "device_count", None)
        return int(count()) if count is not None else 0

    def memory_used(self) -> tuple[int, int] | None:
        """(used, total) bytes of the whole device, all processes; None if unknown.

        Device-wide like nvidia-smi's figure (context and caching allocator included), from
        the backend's mem_get_info (free, total), where the backend offers it."""
        info = getattr(self.module, "mem_get_info", None)
        if info is None:
            return None
        free, total = info(self.index)
        return int(total) - int(free), int(total)

    def energy_j(self) -> float | None:
        """A monotonic counter of the energy the device used, in joules; None if none."""
        return None

    def power_w(self) -> float | None:
        """The device's power draw now, in watts; None if unknown."""
        return None

    def sm_clock_mhz(self) -> float | None:
        """The compute clock now, in MHz; None if unknown."""
        return None

    def limits(self) -> dict[str, float | None]:
        """What bounds the device's speed: `power_limit_w` (the enforced board power limit)
        and `max_sm_clock_mhz`; None where unknown. A device held at its power limit runs
        below its top clock, and its peak FLOP/s (the MFU's denominator) with it."""
        return {"power_limit_w": None, "max_sm_clock_mhz": None}

    def versions(self) -> dict[str, Any]:
        """Driver and runtime versions for result.json's environment section."""
        return {}

    def close(self) -> None:
        """Release what the plug-in opened (a management library handle)."""
