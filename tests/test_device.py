"""device/device.py: the one object the runner and the passes hold for the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlubench.device.device import Device
from mmlubench.device.memory import MemoryReport
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.run.passes import run_pass


class CountingDevice(Device):
    """A CPU Device that counts what the pass asks of it."""

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))
        self.calls: list[str] = []

    def synchronize(self) -> None:
        self.calls.append("synchronize")

    def reset_peak_memory(self) -> None:
        self.calls.append("reset")

    def peak_allocated_bytes(self) -> int | None:
        self.calls.append("peak")
        return 123


def test_a_device_of_a_torch_device_alone_measures_nothing_of_its_own() -> None:
    dev = Device.of("cpu")
    assert dev.torch_device == torch.device("cpu") and dev.vendor is None
    dev.synchronize()
    dev.sample()
    assert dev.peak_allocated_bytes() is None  # the CPU keeps no allocator statistics
    assert dev.warnings == [] and dev.close() is None
    with pytest.raises(RuntimeError, match=r"Device\.open"):
        dev.energy_window()


def test_an_opened_device_has_its_plugin_environment_and_memory_report() -> None:
    dev = Device.open("cpu", None, 60.0)
    try:
        assert dev.vendor is not None and dev.vendor.name == "cpu"
        assert dev.environment["device_name"] and "torch" in dev.environment
        reading = dev.energy_window().stop()
        assert reading.energy_j is None  # the CPU plug-in has no counter: never an estimate
    finally:
        memory = dev.close()
    assert isinstance(memory, MemoryReport) and memory.vendor == "cpu"
    assert Device.count("cpu") == 1 and Device.check("cpu") == torch.device("cpu")


def test_the_pass_synchronizes_through_the_device_it_is_given(tiny_model) -> None:
    """Two synchronizations around each timed call, torch's peak read once, all through the
    run's Device (the null engine: 3 batches)."""
    engine = engine_class("null")(tiny_model, engine_options("null", {"batch_size": 2}), "cpu")
    requests = [Request(np.arange(1, 6 + i, dtype=np.int64), 0) for i in range(5)]
    dev = CountingDevice()
    out = run_pass("infer", engine, requests, [1, 2, 3, 4], progress=False, device=dev)
    assert dev.calls == ["reset"] + ["synchronize"] * 6 + ["peak"]
    assert out.torch_peak_allocated_bytes == 123 and out.batches == 3
