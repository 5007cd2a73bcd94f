"""The shared-prefix engine's decoder layers compiled during the val pass: in a helper process,
then loaded into this one.

A cold compile of the layers took 7-10 s of the infer pass on an H200 (deepseek-7B); with
Inductor's and Triton's on-disk caches filled it took ~4 s. The val pass runs the plain model
for about a minute before the infer pass compiles, with the host mostly waiting on the device.

1. A helper process builds the run's model with only as many decoder layers as there are
   kinds of layer (one for deepseek or Llama; more where sliding-window or dense and MoE
   layers alternate), on the run's device, with random weights, the same dtype and the same
   engine options, and compiles each kind on one pack of the same shape. Compiling is all it
   does: its backend is Inductor's own (torch.compile's wrapper, so the caches' keys are the
   run's), but the compiled graphs never run; empty outputs of the right shapes stand in for
   them, so the helper launches no kernels beside val's and holds little device memory (the
   layers, one pack's hidden states, the CUDA context: ~1.5 GB for deepseek-7B). Inductor's
   work, most of a cold compile, runs there and not under this process's GIL.
2. When the helper is done, a thread of this process builds the same small model and runs
   the engine's warm-up on it: Dynamo traces each kind of layer once and finds its graph in
   the caches the helper filled, and the compiled kernels run once (Triton times its
   candidate configurations then). That leaves the compiled layers in Dynamo's own cache,
   whose guards do not name a layer (every layer of a kind shares one graph), so the infer
   pass's layers run them without tracing or loading anything (its result.json's
   `compile_caches` then count 0 graphs traced).

Nothing depends on either: where the helper fails or is late, the infer pass compiles as it
would have without it. result.json's infer engine says what was done (`precompiled`).
This module starts and waits for both; engines/precompile_helper.py is the helper's work.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmlubench.helper_env import helper_env

WAIT_S = 15.0  # the most the infer pass waits for a helper still compiling, then goes on


@dataclass
class Helper:
    """A started helper process, where its report goes, and the thread that waits for it and
    then loads what it compiled (`report`: the helper's report and the load's, once done)."""

    process: subprocess.Popen
    report_file: str  # file the helper writes its JSON report to
    started: float = field(default_factory=time.perf_counter)
    loader: threading.Thread | None = None
    report: dict | None = None


_helper: Helper | None = None


def start(model_dir: str, device: str, dtype: str, options: Any) -> None:
    """Start the helper process (not waiting for it): the layers of the model in `model_dir`
    compiled with the shared-prefix `options`, in `dtype` on `device`; with the options'
    `precompile_load`, a thread that then loads them into this process (`load_compiled`)."""
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
    helper = _helper = Helper(process, report)
    atexit.register(_stop)  # a run that ends before its infer pass leaves no helper behind
    # daemon: a run that fails meanwhile exits without waiting for it
    helper.loader = threading.Thread(
        target=_follow,
        args=(helper, spec, options.precompile_load),
        name="precompile-load",
        daemon=True,
    )
    helper.loader.start()


def _follow(helper: Helper, spec: dict, load: bool) -> None:
    """The loader thread: the helper's report once it exits, then (`load`, where it compiled)
    what it compiled loaded here."""
    helper.process.wait()
    report = _read_report(helper)
    report["waited_s"] = round(time.perf_counter() - helper.started, 3)
    if load and report.get("outcome") == "compiled":
        report["loaded"] = load_compiled(spec)
    helper.report = report


def _read_report(helper: Helper) -> dict:
    try:
        with open(helper.report_file, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = None
    finally:
        _remove(helper.report_file)
    if not isinstance(report, dict):  # killed, or it could not write
        report = {"outcome": f"no report (exit status {helper.process.returncode})"}
    return report


def load_compiled(spec: dict) -> dict:
    """The helper's small model built here and the engine's warm-up run on it, in inference
    mode as the passes run: Dynamo traces its layers and takes their graphs from the caches,
    and keeps them for the run's layers. What it took and found (never raises: the infer
    pass then compiles itself)."""
    t0 = time.perf_counter()
    try:
        import torch

        from mmlubench.engines import precompile_helper as work
        from mmlubench.engines.shared_prefix import (
            SharedPrefixEngine,
            cache_counters,
            compiled_layers,
        )
        from mmlubench.engines.shared_prefix_options import SharedPrefixOptions

        options = SharedPrefixOptions(**{**spec["options"], "precompile": False})
        before = cache_counters()
        model, _ = work.shadow_model(spec["model_dir"], spec["device"], spec["dtype"])
        engine = SharedPrefixEngine(model, options, spec["device"])
        # The warm-up here does not run the kernels: they first run, and Triton times its
        # candidate configurations, in the infer pass's warm-up, on a device val no longer
        # shares.
        backend = work.skipping(options.compile_mode, options.compile_options)
        engine.compiled = compiled_layers(engine.layers, options, backend)
        with torch.inference_mode():
            requests = work.synthetic_requests(work.SHADOW_VOCAB, options.pack_tokens)
            engine.warmup(engine.plan(requests))
        backend.skipping = False  # from now on the graphs run: the run's layers call them
        after = cache_counters()
        del engine, model
        return {
            "outcome": "loaded",
            "s": round(time.perf_counter() - t0, 3),
            "compile_caches": {k: after[k] - before[k] for k in after},
        }
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        return {"outcome": f"failed: {type(e).__name__}: {first}"}


def _stop() -> None:
    global _helper
    helper, _helper = _helper, None
    if helper is not None:
        if helper.process.poll() is None:
            helper.process.kill()
            helper.process.wait()
        _remove(helper.report_file)


def finish(timeout_s: float = WAIT_S) -> dict | None:
    """Wait for the helper (at most `timeout_s`, then stop it) and for the load of what it
    compiled: what was done, for result.json (None: no helper was started)."""
    global _helper
    helper, _helper = _helper, None
    if helper is None:
        return None
    try:
        helper.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _helper = helper
        _stop()
        if helper.loader is not None:
            helper.loader.join()
        return {"outcome": f"still compiling after {timeout_s:.0f} s of waiting: stopped"}
    if helper.loader is not None:
        helper.loader.join()  # the load, a few seconds where the helper compiled
    return helper.report or _read_report(helper)


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)
