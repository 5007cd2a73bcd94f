"""The few device calls a run makes outside the engines, in one place, for any accelerator.

The runner and the memory code never call `torch.cuda` directly: they call these functions with
the run's device. Each goes through `torch.accelerator` (device-generic since torch 2.6; the
memory calls since 2.8/2.9) where the installed torch offers it, else `torch.cuda` for a CUDA
device, else does nothing (a CPU run: nothing to wait for, no allocator statistics).

A vendor plug-in whose device torch does not know as its accelerator can `register` its own
`DeviceOps` for its device type; registered operations win over the generic ones.
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


_REGISTERED: dict[str, DeviceOps] = {}


def register(device_type: str, ops: DeviceOps) -> None:
    """Use `ops` for devices of `device_type` (e.g. a vendor's "npu"), instead of the generic
    torch.accelerator / torch.cuda calls."""
    _REGISTERED[device_type] = ops


def _device(device: DeviceLike) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _generic(device: torch.device) -> object | None:
    """torch.accelerator when it drives `device`, torch.cuda for a CUDA device without it,
    None for the CPU (or a device nothing here knows)."""
    if device.type == "cpu":
        return None
    acc = getattr(torch, "accelerator", None)
    if acc is not None and acc.is_available():
        current = acc.current_accelerator()
        if current is not None and current.type == device.type:
            return acc
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda
    return None


def _run(name: str, torch_name: str, device: DeviceLike, *, pass_device: bool = True):
    """Operation `name` on `device`: the registered one, else the generic module's function
    `torch_name` if it has one (called with the device, or with nothing for calls that act on
    the current device); None when there is nothing to call."""
    dev = _device(device)
    ops = _REGISTERED.get(dev.type)
    if ops is not None and getattr(ops, name) is not None:
        return getattr(ops, name)(dev)
    module = _generic(dev)
    fn = getattr(module, torch_name, None) if module is not None else None
    if fn is None:
        return None
    return fn(dev) if pass_device else fn()


def synchronize(device: DeviceLike) -> None:
    """Wait until every kernel queued on `device` has finished (no-op on the CPU)."""
    _run("synchronize", "synchronize", device)


def reset_peak_memory(device: DeviceLike) -> None:
    """Start torch's peak-memory statistics of `device` afresh (no-op on the CPU)."""
    _run("reset_peak_memory", "reset_peak_memory_stats", device)


def peak_allocated_bytes(device: DeviceLike) -> int | None:
    """Most bytes torch's allocator held in tensors on `device` since the last reset; None on
    the CPU or where the device keeps no such statistic."""
    value = _run("peak_allocated_bytes", "max_memory_allocated", device)
    return None if value is None else int(value)


def peak_reserved_bytes(device: DeviceLike) -> int | None:
    """Most bytes torch's caching allocator reserved on `device` since the last reset; None on
    the CPU or where the device keeps no such statistic."""
    value = _run("peak_reserved_bytes", "max_memory_reserved", device)
    return None if value is None else int(value)


def empty_cache(device: DeviceLike) -> None:
    """Give the caching allocator's unused blocks back (after running out of memory, before a
    retry); no-op on the CPU. torch's call acts on the current device."""
    _run("empty_cache", "empty_cache", device, pass_device=False)


def device_count(device_type: str) -> int:
    """How many devices of `device_type` this process sees (0 for a type nothing here knows;
    the CPU counts as 1)."""
    if device_type == "cpu":
        return 1
    value = _run("device_count", "device_count", device_type, pass_device=False)
    return 0 if value is None else int(value)


def set_device(device: DeviceLike) -> None:
    """Make `device` (with an index, e.g. "cuda:1") the process's current device, so that
    kernels and allocations without an explicit device go there (no-op on the CPU)."""
    dev = _device(device)
    ops = _REGISTERED.get(dev.type)
    if ops is not None and ops.set_device is not None:
        ops.set_device(dev)
        return
    module = _generic(dev)
    if module is torch.cuda:
        torch.cuda.set_device(dev)
    elif module is not None:
        module.set_device_index(dev.index)
