"""What a run asks of the device outside the engines, in one place, for any accelerator.

The runner and the memory code never call a backend module (`torch.cuda`, `torch.xpu`, ...)
directly: they call these functions with the run's device. Each goes through `torch.accelerator`
(device-generic since torch 2.6, the memory calls since 2.8; mmlubench needs torch >= 2.11, which
has them all) when it drives the device's type, else does nothing (a CPU run: nothing to wait
for, no allocator statistics).

A vendor plug-in whose device torch does not drive through `torch.accelerator`, or that does a
call its own way, gives `DeviceOps` for its device type (`Vendor.device_ops`); the runner
registers them when it opens the plug-in, and registered operations win over the generic ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DeviceLike = torch.device | str


@dataclass(frozen=True)
class DeviceOps:
    """How to do each call on one device type (a vendor plug-in fills the ones it has)."""

    synchronize: Callable[[torch.device], None] | None = None
    reset_peak_memory: Callable[[torch.device], None] | None = None
    peak_allocated_bytes: Callable[[torch.device], int] | None = None
    peak_reserved_bytes: Callable[[torch.device], int] | None = None
    empty_cache: Callable[[torch.device], None] | None = None
    device_count: Callable[[torch.device], int] | None = None
    set_device: Callable[[torch.device], None] | None = None


# Each DeviceOps field and the torch.accelerator function that does it generically.
TORCH_CALLS = {
    "synchronize": "synchronize",
    "reset_peak_memory": "reset_peak_memory_stats",
    "peak_allocated_bytes": "max_memory_allocated",
    "peak_reserved_bytes": "max_memory_reserved",
    "empty_cache": "empty_cache",
    "device_count": "device_count",
    "set_device": "set_device_index",
}
_REGISTERED: dict[str, DeviceOps] = {}


def register(device_type: str, ops: DeviceOps | None) -> None:
    """Use `ops` for devices of `device_type` (e.g. a vendor's "npu"), instead of the generic
    torch.accelerator calls (the calls `ops` leaves None stay generic); None: generic again."""
    if ops is None:
        _REGISTERED.pop(device_type, None)
    else:
        _REGISTERED[device_type] = ops


def missing_calls(device: DeviceLike) -> list[str]:
    """The DeviceOps fields torch.accelerator cannot do for `device` in the installed torch
    (all of them where it does not drive the device's type; none for the CPU)."""
    dev = _device(device)
    if dev.type == "cpu":
        return []
    return [name for name, torch_name in TORCH_CALLS.items() if _generic(dev, torch_name) is None]


def _device(device: DeviceLike) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _generic(device: torch.device, torch_name: str) -> Callable | None:
    """torch.accelerator's function `torch_name` (or torch.accelerator.memory's) when the
    accelerator drives `device`'s type; None for the CPU, a device type torch.accelerator does
    not drive, or a call the installed torch lacks."""
    if device.type == "cpu":
        return None
    acc = getattr(torch, "accelerator", None)
    if acc is None or not acc.is_available():
        return None
    current = acc.current_accelerator()
    if current is None or current.type != device.type:
        return None
    fn = getattr(acc, torch_name, None)
    return fn if fn is not None else getattr(getattr(acc, "memory", None), torch_name, None)


def _run(name: str, device: DeviceLike, *, pass_device: bool = True):
    """Operation `name` on `device`: the registered one, else torch.accelerator's function for
    it (TORCH_CALLS) if there is one, called with the device, or with nothing for calls that
    act on the current device; None when there is nothing to call."""
    dev = _device(device)
    ops = _REGISTERED.get(dev.type)
    if ops is not None and getattr(ops, name) is not None:
        return getattr(ops, name)(dev)
    fn = _generic(dev, TORCH_CALLS[name])
    if fn is None:
        return None
    return fn(dev) if pass_device else fn()


def synchronize(device: DeviceLike) -> None:
    """Wait until every kernel queued on `device` has finished (no-op on the CPU)."""
    _run("synchronize", device)


def reset_peak_memory(device: DeviceLike) -> None:
    """Start torch's peak-memory statistics of `device` afresh (no-op on the CPU)."""
    _run("reset_peak_memory", device)


def peak_allocated_bytes(device: DeviceLike) -> int | None:
    """Most bytes torch's allocator held in tensors on `device` since the last reset; None on
    the CPU or where the device keeps no such statistic."""
    value = _run("peak_allocated_bytes", device)
    return None if value is None else int(value)


def peak_reserved_bytes(device: DeviceLike) -> int | None:
    """Most bytes torch's caching allocator reserved on `device` since the last reset; None on
    the CPU or where the device keeps no such statistic."""
    value = _run("peak_reserved_bytes", device)
    return None if value is None else int(value)


def empty_cache(device: DeviceLike) -> None:
    """Give the caching allocator's unused blocks back (after running out of memory, before a
    retry); no-op on the CPU. torch's call acts on the current device."""
    _run("empty_cache", device, pass_device=False)


def device_count(device_type: str) -> int:
    """How many devices of `device_type` this process sees (0 for a type nothing here knows;
    the CPU counts as 1)."""
    if device_type == "cpu":
        return 1
    value = _run("device_count", device_type, pass_device=False)
    return 0 if value is None else int(value)


def set_device(device: DeviceLike) -> None:
    """Make `device` (with an index, e.g. "cuda:1") the process's current device, so that
    kernels and allocations without an explicit device go there (no-op on the CPU)."""
    dev = _device(device)
    ops = _REGISTERED.get(dev.type)
    if ops is not None and ops.set_device is not None:
        ops.set_device(dev)
        return
    fn = _generic(dev, TORCH_CALLS["set_device"])
    if fn is not None and dev.index is not None:
        fn(dev.index)
