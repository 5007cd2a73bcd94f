"""The CPU plug-in: nothing to synchronize, no device memory apart from the host's, no counter."""

from __future__ import annotations

import torch

from mmlubench.device.vendors.base import Vendor, cpu_name


class CpuVendor(Vendor):
    name = "cpu"
    device_types = ("cpu",)

    def __init__(self, device: torch.device | str = "cpu"):
        super().__init__(device)
        self.memory_source = None  # host memory is no device memory: `mem` stays null

    def synchronize(self) -> None:
        """CPU ops run synchronously."""

    def device_ops(self) -> None:
        """Nothing to do on the CPU: accel's calls are no-ops there."""
        return None

    def device_name(self) -> str:
        return cpu_name()

    def device_count(self) -> int:
        return 0

    def memory_used(self) -> tuple[int, int] | None:
        return None
