"""The precompile helper process's work (engines/precompile.py starts it and says why): the
run's model with one decoder layer of each kind, its layers compiled on one pack, not run.

`python -m mmlubench.engines.precompile_helper SPEC` (JSON: model_dir, device, dtype, options,
report) writes its report (JSON) to SPEC's `report` file.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


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
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, spec["dtype"]))
    model.eval().requires_grad_(False)
    if options.early_compile_workers:
        compile_pool.configure()  # the run's Inductor settings: the caches' keys include them
    engine = SharedPrefixEngine(model, options, spec["device"])
    backend = compile_only(options.compile_mode, options.compile_options, False)
    engine.compiled = compiled_layers(engine.layers, options, backend)
    built = time.perf_counter()
    # In inference mode, as the passes run (run/passes.py): the caches' keys depend on it.
    with torch.inference_mode():
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
