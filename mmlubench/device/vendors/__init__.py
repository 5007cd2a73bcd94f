"""Vendor plug-ins: which one serves a device, and checking the device string itself.

Built in: `cpu`, `nvidia` (NVML) and `generic` (any PyTorch backend that follows torch.cuda's
module API: XPU, NPU, MLU, MUSA, HPU, ROCm). A vendor adds its own plug-in without touching
mmlubench: a package that declares, in its pyproject.toml,

    [project.entry-points."mmlubench.vendors"]
    acme = "acme_mmlubench:AcmeVendor"      # a mmlubench.device.vendors.base.Vendor subclass

and, in the class's `config` attribute, its vendor config (device, engines and their options,
precision, peak FLOP/s per precision), which `--vendor acme` then applies (config/vendor_layer.py;
docs/VENDORS.md has the whole contract). The plug-in is chosen by the config key `vendor` (a
vendor YAML sets it), else by device type: the first plug-in that lists the type in
`device_types`, else `generic`.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points

import torch

from mmlubench.device import accel
from mmlubench.device.vendors.base import Vendor
from mmlubench.errors import ConfigError, RunError, short

ENTRY_POINT_GROUP = "mmlubench.vendors"
BUILTIN = {
    "cpu": "mmlubench.device.vendors.cpu:CpuVendor",
    "nvidia": "mmlubench.device.vendors.nvidia:NvidiaVendor",
    "generic": "mmlubench.device.vendors.base:Vendor",
}
# Device types whose PyTorch support lives in a separate package, for the error message.
TORCH_PLUGINS = {
    "npu": "torch_npu (Ascend)",
    "mlu": "torch_mlu (Cambricon)",
    "musa": "torch_musa (Moore Threads)",
    "hpu": "habana_frameworks (Gaudi)",
    "xpu": "a torch build with XPU support (Intel)",
}


def plugins() -> dict[str, str]:
    """{name: "module:Class"} of every plug-in: built-in ones, then installed entry points
    (an installed plug-in may replace a built-in one of the same name)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def load_plugin(name: str) -> type[Vendor]:
    """The plug-in class called `name`; a ConfigError names what is wrong."""
    known = plugins()
    if name not in known:
        raise ConfigError(
            f"no vendor plug-in {name!r} (known: "
            f"{', '.join(sorted(known))}; plug-ins register under the entry "
            f"point group {ENTRY_POINT_GROUP!r})"
        )
    module, _, attr = known[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"vendor plug-in {name!r} ({known[name]}) cannot be loaded: {type(e).__name__}: {e}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Vendor)):
        raise ConfigError(
            f"vendor plug-in {name!r} ({known[name]}) is not a "
            "mmlubench.device.vendors.base.Vendor subclass"
        )
    return cls


def plugin_for(device_type: str) -> str:
    """The name of the plug-in that serves `device_type` when no vendor is named."""
    if device_type == "cuda" and torch.version.hip is not None:
        return "generic"  # ROCm: torch.cuda works, NVML does not
    for name in plugins():
        if name in BUILTIN:
            continue
        if device_type in getattr(load_plugin(name), "device_types", ()):
            return name
    return {"cpu": "cpu", "cuda": "nvidia"}.get(device_type, "generic")


def open_vendor(device: str | torch.device, name: str | None = None) -> Vendor:
    """The plug-in object for one device: `name`'s plug-in, or the device type's.

    The operations the plug-in does its own way (`Vendor.device_ops`: its synchronize, or
    torch.cuda's functions where torch.accelerator lacks one) are registered with `accel`, so
    what the runner asks of the device (accel.synchronize around every timed call) goes through
    them."""
    device = torch.device(device)
    name = name or plugin_for(device.type)
    vendor = load_plugin(name)(device)
    accel.register(device.type, vendor.device_ops())
    return vendor


DEVICE_RE = re.compile(r"[a-z][a-z0-9_]*(:\d+)?")


def parse_device(device: str) -> torch.device:
    """The torch.device for `device`; ValueError (one line, what to do) if it is no device
    string or torch does not know its type (the vendor's PyTorch package is missing)."""
    if not DEVICE_RE.fullmatch(device):
        raise ValueError(
            f"expected a torch device such as 'cuda', 'cuda:1', 'xpu', 'npu:0' or "
            f"'cpu', got {short(device)}"
        )
    if ":" in device and len(device.partition(":")[2]) > 6:
        raise ValueError(f"device index out of range in {short(device, 40)}")
    try:
        return torch.device(device)
    except RuntimeError:
        kind = device.partition(":")[0]
        hint = TORCH_PLUGINS.get(kind, "the vendor's PyTorch plug-in")
        raise ValueError(
            f"torch {torch.__version__} does not know device type {kind!r} "
            f"(got {device!r}); install {hint}, or use --device cpu"
        ) from None


def check_device(device: str, vendor: str | None = None) -> torch.device:
    """The torch.device for `device`, once torch knows its type and sees such a device.

    A type torch does not know, no device of that type, or an index past the last device: an
    error in one line saying which and what to do."""
    try:
        dev = parse_device(device)
    except ValueError as e:
        raise ConfigError(f"key 'device': {e}") from None
    served = getattr(load_plugin(vendor), "device_types", ()) if vendor else ()
    if served and dev.type not in served:
        raise ConfigError(
            f"key 'vendor': plug-in {vendor!r} serves {', '.join(served)} devices, "
            f"not device {device!r} (set both, or neither)"
        )
    if dev.type == "cpu":
        return dev
    # accel: torch.accelerator, torch.cuda, or the ops a vendor plug-in registered.
    count = accel.device_count(dev.type)
    if count == 0:
        module = getattr(torch, dev.type, None)
        available = getattr(module, "is_available", None)
        count = int(module.device_count()) if available is not None and available() else 0
    if count == 0:
        raise RunError(
            f"device {device!r} asked for, but torch sees no {dev.type} device "
            f"(use --device cpu, or a build of torch for {dev.type})"
        )
    if dev.index is not None and dev.index >= count:
        raise RunError(
            f"device {device!r}: torch sees only {count} {dev.type} device(s) "
            f"(indices 0 to {count - 1})"
        )
    return dev
