"""Device memory as the reference reports it: memory *used* on the whole device (CUDA context and
caching allocator included) as NVML sees it, sampled in a background thread, over device total.

The reference samples nvidia-smi every 5 s; the interval is configurable, and the runner also
takes a sample at each pass boundary so a short peak between samples is less likely missed.
torch's own peak allocation is reported beside it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class MemoryReport:
    device_index: int | None
    peak_used_bytes: int | None
    total_bytes: int | None
    torch_peak_allocated_bytes: int | None
    torch_peak_reserved_bytes: int | None
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, used)
    source: str = "nvml"

    def to_json(self) -> dict:
        return {
            "device_index": self.device_index,
            "peak_used_bytes": self.peak_used_bytes,
            "total_bytes": self.total_bytes,
            "torch_peak_allocated_bytes": self.torch_peak_allocated_bytes,
            "torch_peak_reserved_bytes": self.torch_peak_reserved_bytes,
            "source": self.source,
            "samples": [[round(t, 3), u] for t, u in self.samples],
        }


class MemorySampler:
    """Samples NVML used memory of one CUDA device every `interval_s` until stopped.

    On a CPU run (or without NVML) it records nothing and reports nulls.
    """

    def __init__(self, device: str, interval_s: float = 5.0):
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.total: int | None = None
        self.index: int | None = None
        self.warning: str | None = None
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        if not device.startswith("cuda"):
            return
        try:
            import pynvml
            import torch

            idx = torch.device(device).index
            self.index = torch.cuda.current_device() if idx is None else idx
            pynvml.nvmlInit()
            # NVML numbers devices physically; find ours by UUID (CUDA_VISIBLE_DEVICES-proof).
            uuid = str(torch.cuda.get_device_properties(self.index).uuid)
            try:
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except pynvml.NVMLError:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.total = int(pynvml.nvmlDeviceGetMemoryInfo(self._handle).total)
        except Exception as e:  # no NVML library, no permission: report null, say why
            self.warning = f"NVML memory sampling unavailable: {type(e).__name__}: {e}"
            self._handle = None

    def sample(self) -> None:
        if self._handle is None:
            return
        import pynvml

        used = int(pynvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        self.samples.append((time.perf_counter() - self._t0, used))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> MemorySampler:
        if self._handle is not None:
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="mem-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> MemoryReport:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        peak_alloc = peak_reserved = None
        if self.index is not None:
            from mmlubench import accel

            peak_alloc = accel.peak_allocated_bytes(f"cuda:{self.index}")
            peak_reserved = accel.peak_reserved_bytes(f"cuda:{self.index}")
        return MemoryReport(
            device_index=self.index,
            peak_used_bytes=max((u for _, u in self.samples), default=None),
            total_bytes=self.total,
            torch_peak_allocated_bytes=peak_alloc,
            torch_peak_reserved_bytes=peak_reserved,
            samples=list(self.samples),
            source="nvml" if self._handle is not None else "none",
        )
