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
have without it. result.json's infer engine says what the helper did (`precompile`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WAIT_S = 60.0  # the most the infer pass waits for a helper still compiling, then goes on


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
        [sys.executable, "-m", "mmlubench.engines.precompile", json.dumps(spec)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        start_new_session=True,  # a Ctrl-C of the run is not the helper's to handle
    )
    _helper = Helper(process, report)


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
        helper.process.kill()
        helper.process.wait()
        _remove(helper.report)
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


def layers_to_cover(layers: list, windows: list) -> int:
    """How many leading decoder layers hold one of each kind: the same module types and
    the same window (each kind compiles to its own graph)."""

    def kind(i: int) -> tuple:
        types = tuple(type(m).__name__ for m in layers[i].modules())
        return types, windows[i]

    first: dict[tuple, int] = {}
    for i in range(len(layers)):
        first.setdefault(kind(i), i)
    return max(first.values()) + 1


def synthetic_requests(vocab: int, pack_tokens: int) -> list:
    """Requests that fill more than one pack: subjects of a shared prefix (512 tokens, less
    in packs under 2048) and questions of a quarter to three eighths of its length after it, ids
    drawn below `vocab`."""
    import numpy as np

    from mmlubench.engines.base import Request

    rng = np.random.default_rng(0)
    p = min(512, pack_tokens // 4)
    requests, tokens = [], 0
    while tokens < 2 * pack_tokens:
        prefix = rng.integers(1, vocab, p)
        for _ in range(64):
            suffix = rng.integers(1, vocab, int(rng.integers(p // 4, 3 * p // 8)))
            requests.append(Request(np.concatenate([prefix, suffix]), p))
            tokens += len(suffix)
    return requests


def main(spec: dict) -> dict:
    """The helper's work: returns its report."""
    t0 = time.perf_counter()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from mmlubench.engines import compile_pool, packed_attention
    from mmlubench.engines.shared_prefix import SharedPrefixEngine, compiled_layers
    from mmlubench.engines.shared_prefix_options import SharedPrefixOptions
    from mmlubench.model.load import DTYPES

    options = SharedPrefixOptions(**spec["options"])
    config = AutoConfig.from_pretrained(spec["model_dir"], trust_remote_code=False)
    with torch.device("meta"):
        whole = AutoModelForCausalLM.from_config(config)
    layers = packed_attention.decoder_layers(whole)
    windows = packed_attention.layer_windows(config, len(layers))
    keep = layers_to_cover(layers, windows)
    del whole, layers
    # Only the layers compile; the embedding and LM head are left small (ids below 256).
    config.num_hidden_layers = keep
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = config.layer_types[:keep]
    config.vocab_size = 256
    if (getattr(config, "pad_token_id", None) or 0) >= 256:
        config.pad_token_id = None
    with torch.device(spec["device"]):
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[spec["dtype"]])
    model.eval().requires_grad_(False)
    if options.early_compile_workers:
        compile_pool.configure()  # the run's Inductor settings: the caches' keys include them
    engine = SharedPrefixEngine(model, options, spec["device"])
    backend = compile_only(options.compile_mode, options.compile_options, False)
    engine.compiled = compiled_layers(engine.layers, options, backend)
    built = time.perf_counter()
    engine.warmup(engine.plan(synthetic_requests(256, options.pack_tokens)))
    return {
        "outcome": "compiled",
        "layers": keep,
        "graphs": backend.graphs,
        "build_s": round(built - t0, 3),
        "compile_s": round(time.perf_counter() - built, 3),
    }


def _compile_only_class():
    import torch

    class CompileOnly(torch._TorchCompileInductorWrapper):
        """torch.compile's own Inductor backend, except that the compiled graph does not
        run: its outputs are empty tensors of the graph's output shapes."""

        graphs = 0  # graphs compiled

        def __call__(self, model_, inputs_, *args, **kwargs):
            super().__call__(model_, inputs_, *args, **kwargs)  # fills Inductor's caches
            self.graphs += 1
            outputs = model_.graph.find_nodes(op="output")[0].args[0]
            fakes = [n.meta.get("example_value") if hasattr(n, "meta") else n for n in outputs]

            def run(*_: Any) -> tuple:
                return tuple(
                    torch.empty_strided(f.shape, f.stride(), dtype=f.dtype, device=f.device)
                    if isinstance(f, torch.Tensor)
                    else f
                    for f in fakes
                )

            return run

    return CompileOnly


def compile_only(mode: str | None, options: dict | None, dynamic: bool) -> Any:
    """The compile-only backend (its class made on first use: only the helper imports
    torch)."""
    return _compile_only_class()(mode, options, dynamic)


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    try:
        report = main(spec)
    except BaseException as e:  # the report says what went wrong
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        report = {"outcome": f"failed: {type(e).__name__}: {first}"}
    with open(spec["report"], "w", encoding="utf-8") as f:
        json.dump(report, f)
