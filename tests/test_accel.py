"""device/accel.py: what the runner and the memory code ask of the device, generic over
accelerators."""

from __future__ import annotations

import types

import pytest
import torch

from mmlubench.device import accel


def test_cpu_calls_do_nothing_and_report_no_statistics():
    for device in ("cpu", torch.device("cpu")):
        assert accel.synchronize(device) is None
        accel.reset_peak_memory(device)
        accel.empty_cache(device)
        assert accel.peak_allocated_bytes(device) is None
        assert accel.peak_reserved_bytes(device) is None
    assert accel.device_count("cpu") == 1
    accel.set_device("cpu")


def fake_accelerator(calls: list) -> types.SimpleNamespace:
    """torch.accelerator as a build with a CUDA device would have it, recording each call."""
    return types.SimpleNamespace(
        is_available=lambda: True,
        current_accelerator=lambda: torch.device("cuda"),
        synchronize=lambda d: calls.append(("synchronize", d)),
        reset_peak_memory_stats=lambda d: calls.append(("reset", d)),
        max_memory_allocated=lambda d: 123,
        max_memory_reserved=lambda d: 456,
        empty_cache=lambda: calls.append(("empty_cache",)),
        device_count=lambda: 3,
        set_device_index=lambda i: calls.append(("set_device", i)),
    )


def test_torch_accelerator_is_used_for_its_device_type(monkeypatch):
    calls: list = []
    monkeypatch.setattr(torch, "accelerator", fake_accelerator(calls))
    dev = torch.device("cuda:1")
    accel.synchronize("cuda:1")
    accel.reset_peak_memory(dev)
    accel.empty_cache(dev)
    assert calls == [("synchronize", dev), ("reset", dev), ("empty_cache",)]
    assert accel.peak_allocated_bytes(dev) == 123 and accel.peak_reserved_bytes(dev) == 456
    assert accel.device_count("cuda") == 3
    calls.clear()
    accel.set_device("cuda:2")
    assert calls == [("set_device", 2)]
    calls.clear()
    accel.synchronize("cpu")  # the CPU never goes to the accelerator
    assert calls == [] and accel.peak_allocated_bytes("cpu") is None


def test_registered_ops_win_and_missing_ones_fall_back(monkeypatch):
    calls: list = []
    monkeypatch.setattr(torch, "accelerator", fake_accelerator(calls))
    monkeypatch.setattr(accel, "_REGISTERED", {})
    accel.register(
        "cuda",
        accel.DeviceOps(
            synchronize=lambda d: calls.append(("vendor", d)), peak_allocated_bytes=lambda d: 7
        ),
    )
    accel.synchronize("cuda")
    assert calls == [("vendor", torch.device("cuda"))]
    assert accel.peak_allocated_bytes("cuda") == 7
    assert accel.peak_reserved_bytes("cuda") == 456  # not registered: torch.accelerator's


def test_memory_calls_found_in_torch_accelerator_memory(monkeypatch):
    calls: list = []
    acc = fake_accelerator(calls)
    del acc.max_memory_allocated
    acc.memory = types.SimpleNamespace(max_memory_allocated=lambda d: 321)
    monkeypatch.setattr(torch, "accelerator", acc)
    monkeypatch.setattr(accel, "_REGISTERED", {})
    assert accel.peak_allocated_bytes("cuda:0") == 321
    assert accel.missing_calls("cuda:0") == []


def test_no_torch_cuda_fallback(monkeypatch):
    """Where torch.accelerator does not drive the device, accel calls nothing, torch.cuda
    included: what is missing comes from the vendor plug-in's device_ops, or stays null."""
    calls: list = []
    monkeypatch.setattr(
        torch,
        "accelerator",
        types.SimpleNamespace(is_available=lambda: False, current_accelerator=lambda: None),
    )
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("cuda sync"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 99)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(accel, "_REGISTERED", {})
    accel.synchronize("cuda")
    accel.set_device("cuda:1")
    assert accel.peak_allocated_bytes("cuda") is None and accel.device_count("cuda") == 0
    assert calls == []
    assert accel.missing_calls("cuda") == list(accel.TORCH_CALLS)
    assert accel.missing_calls("cpu") == []
    accel.register("cuda", accel.DeviceOps(device_count=lambda d: 2))
    assert accel.device_count("cuda") == 2
    accel.register("cuda", None)  # generic again
    assert accel.device_count("cuda") == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_device():
    x = torch.ones(1024, device="cuda")
    accel.reset_peak_memory("cuda")
    (x * 2).sum().item()
    accel.synchronize("cuda")
    assert accel.peak_allocated_bytes("cuda") >= 4096
