"""The shared-prefix engine's decoder layers compiled in a helper process during the val pass.

A cold compile of the layers took 7-10 s of the infer pass on an H200 (deepseek-7B); with
Inductor's and Triton's on-disk caches filled it took ~4 s. The val pass runs the plain model
for about a minute before the infer pass compiles, with the host mostly waiting on the device.
This helper process builds the run's model with only as many decoder layers as there are kinds
of layer (one for deepseek or Llama; more where sliding-window or dense and MoE layers
alternate), on the run's device, with random weights, the same dtype and the same engine
options, and compiles each kind on one pack of the same shape. Compiling is all it does: its
backend is Inductor's own (torch.compile's wrapper, so the caches' keys are the run's), but
the compiled graphs never run; empty outputs of the right shapes stand in for them, so the
helper launches no kernels beside val's and holds little device memory (the layers, one pack's
hidden states, the CUDA context: ~1.5 GB for deepseek-7B). The infer pass then finds Inductor's
and Triton's caches filled and compiles from them.

Nothing depends on the helper: where it fails or is late, the infer pass compiles as it would
have without it. result.json's infer engine says what the helper did (`precompiled`).
This module starts and waits for the helper; engines/precompile_helper.py is its work.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmlubench.helper_env import helper_env

WAIT_S = 15.0  # the most the infer pass waits for a helper still compiling, then goes on


@dataclass
class Helper:
    """A started helper process and where its report goes."""

    process: subprocess.Popen
    report: str  # file the helper writes its JSON report to
    started: float = field(default_factory=time.perf_counter)


_helper: Helper | None = None


def start(model_dir: str, device: str, dtype: str, options: Any) -> None:
    """Start the helper process (not waiting for it): the layers of the model in `model_dir`
    compiled with the shared-prefix `options`, in `dtype` on `device`."""
    global _helper
    if _helper is not None:
        return
    fd, report = tempfile.mkstemp(prefix="mmlubench-precompile-", suffix=".json")
    os.close(fd)
    spec = {
        "model_dir": str(model_dir),
        "device": device,
        "dtype": dtype,
        "options": asdict(options),
        "report": report,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mmlubench.engines.precompile_helper", json.dumps(spec)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=helper_env(),
        start_new_session=True,  # a Ctrl-C of the run is not the helper's to handle
    )
    _helper = Helper(process, report)
    atexit.register(_stop)  # a run that ends before its infer pass leaves no helper behind


def _stop() -> None:
    global _helper
    helper, _helper = _helper, None
    if helper is not None:
        if helper.process.poll() is None:
            helper.process.kill()
            helper.process.wait()
        _remove(helper.report)


def finish(timeout_s: float = WAIT_S) -> dict | None:
    """Wait for the helper (at most `timeout_s`, then stop it): what it did, for result.json
    (None: no helper was started)."""
    global _helper
    helper, _helper = _helper, None
    if helper is None:
        return None
    try:
        helper.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _helper = helper
        _stop()
        return {"outcome": f"still compiling after {timeout_s:.0f} s of waiting: stopped"}
    try:
        with open(helper.report, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = {"outcome": f"no report (exit status {helper.process.returncode})"}
    finally:
        _remove(helper.report)
    report["waited_s"] = round(time.perf_counter() - helper.started, 3)
    return report


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)
