"""The NVIDIA plug-in: CUDA through torch.cuda, memory, power and energy through NVML.

The only module of the package that calls torch.cuda (tests/test_structure.py checks it). What
the runner asks of the device goes through torch.accelerator (device/accel.py); `device_ops`
gives torch.cuda's functions for any of them the installed torch's accelerator API lacks.

NVML (nvidia-ml-py) reports what nvidia-smi shows, which is the reference's `mem`: memory used
on the whole device, CUDA context and caching allocator included. Energy is NVML's total-energy
counter (millijoules since the driver loaded; Volta and newer). Without NVML (no library, no
permission) memory falls back to torch.cuda.mem_get_info and energy and power are null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mmlubench.device import accel
from mmlubench.device.vendors.base import Vendor

# torch.cuda's way to do each accel call, for a torch whose torch.accelerator lacks one.
CUDA_OPS: dict[str, Callable[[torch.device], Any]] = {
    "synchronize": lambda d: torch.cuda.synchronize(d),
    "reset_peak_memory": lambda d: torch.cuda.reset_peak_memory_stats(d),
    "peak_allocated_bytes": lambda d: torch.cuda.max_memory_allocated(d),
    "peak_reserved_bytes": lambda d: torch.cuda.max_memory_reserved(d),
    "empty_cache": lambda d: torch.cuda.empty_cache(),
    "device_count": lambda d: torch.cuda.device_count(),
    "set_device": lambda d: torch.cuda.set_device(d),
}


class NvidiaVendor(Vendor):
    name = "nvidia"
    device_types = ("cuda",)

    def __init__(self, device: torch.device | str = "cuda"):
        super().__init__(device)
        self.warnings: list[str] = []
        self._nvml = None
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            # NVML numbers devices physically; find ours by UUID (CUDA_VISIBLE_DEVICES-proof).
            uuid = str(torch.cuda.get_device_properties(self.index).uuid)
            try:
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except pynvml.NVMLError:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.memory_source = "nvml"
        except Exception as e:  # no NVML library, no permission: torch's figures, say why
            self.warnings.append(
                f"NVML unavailable ({type(e).__name__}: {e}): memory from "
                f"{self.memory_source}, no power or energy figures"
            )
            self._handle = None
        if self._handle is not None and self._read_energy_mj() is not None:
            self.energy_source = "nvml total energy counter"

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def device_ops(self) -> accel.DeviceOps | None:
        """torch.cuda's calls for those torch.accelerator cannot do here (none with torch >=
        2.8, where it has the memory calls too); None when it does them all."""
        missing = accel.missing_calls(self.device)
        if not missing:
            return None
        return accel.DeviceOps(**{name: CUDA_OPS[name] for name in missing})

    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.index)

    def device_count(self) -> int:
        return torch.cuda.device_count()

    def memory_used(self) -> tuple[int, int] | None:
        if self._handle is None:
            return super().memory_used()
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        return int(info.used), int(info.total)

    def _read_energy_mj(self) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError:  # pre-Volta GPUs, some virtualized ones
            return None

    def energy_j(self) -> float | None:
        if self._handle is None or self.energy_source is None:
            return None
        mj = self._read_energy_mj()
        return None if mj is None else mj / 1000.0

    def power_w(self) -> float | None:
        if self._handle is None:
            return None
        try:
            return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0  # milliwatts
        except self._nvml.NVMLError:
            return None

    def _nvml_read(self, fn: str, *args: Any) -> Any:
        """An NVML query, None without NVML or when the device does not answer it."""
        if self._handle is None:
            return None
        try:
            return getattr(self._nvml, fn)(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def sm_clock_mhz(self) -> float | None:
        if self._nvml is None:
            return None
        mhz = self._nvml_read("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_SM)
        return None if mhz is None else float(mhz)

    def limits(self) -> dict[str, float | None]:
        if self._nvml is None:
            return super().limits()
        mw = self._nvml_read("nvmlDeviceGetEnforcedPowerLimit")
        mhz = self._nvml_read("nvmlDeviceGetMaxClockInfo", self._nvml.NVML_CLOCK_SM)
        return {
            "power_limit_w": None if mw is None else mw / 1000.0,
            "max_sm_clock_mhz": None if mhz is None else float(mhz),
        }

    def versions(self) -> dict[str, Any]:
        driver = None
        if self._nvml is not None:
            try:
                v = self._nvml.nvmlSystemGetDriverVersion()
                driver = v.decode() if isinstance(v, bytes) else v
            except self._nvml.NVMLError:
                pass
        return {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver": driver,
        }
