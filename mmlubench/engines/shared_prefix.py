"""`shared-prefix`: the reference's numbers with far less work, on the model's own modules.

All questions of a subject share their few-shot prefix (~540 of ~710 tokens). This engine packs
one copy of a prefix and many question suffixes into one fixed-length sequence and runs the HF
model itself on it, with a FlexAttention block mask: each suffix sees its prefix and itself,
causally, and its positions continue from the end of the prefix, so every question's
last-position logits are those of its whole prompt. Nothing of the architecture is written
here: embeddings, norms, RoPE, q/k norms, biases, soft-capping, MoE routing and the LM head are
the transformers modules', called through their own forward; this engine only plugs an
attention function into transformers' attention interface (engines/packed_attention.py) that
applies the pack's mask and the carry. Why it is fast:
- No padding inside a pack and no per-question prefix: ~5-6x fewer tokens through the model.
- One pack length (`pack_tokens`): one compiled shape of each decoder layer (regional
  compilation: every layer of one kind shares one graph), never recompiled. The block masks are
  rebuilt per pack from metadata buffers that keep their identity.
- The LM head runs only on the last position of each question (`logits_to_keep`).
- Each subject's prefix is computed once: a pack that continues a subject takes the prefix's
  keys/values from the carry the previous pack left in every layer.
- No cache object: HF builds none (`use_cache=False`); the carry lives in buffers of the
  attention modules, written in place inside the compiled graph.
The mask's block sparsity is computed on the host while planning (engines/packing.py).

Sliding-window layers (Gemma-2/3, Mistral-style, Qwen2 `use_sliding_window`) get a second block
mask whose window is counted in prompt positions, prefix included, as HF counts it for a prompt
run alone: the numbers are those of the whole prompt there too.

Exactness: a request's first `prefix_len` ids are shared only with requests whose first ids are
byte-identical; prefix_len 0 makes a request its own segment. The carry is named by its
prefix's ids: a pack whose carry-in the engine does not hold (a resume, a data-parallel share or
a split that starts mid-subject) first reruns the pack that computed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from mmlubench.engines import fp8, packed_attention, precompile
from mmlubench.engines.base import Batch, EarlyRun, Engine, Request
from mmlubench.engines.fused_projections import group_swaps
from mmlubench.engines.packing import Pack, plan_packs
from mmlubench.engines.shared_prefix_options import SharedPrefixOptions


class SharedPrefixEngine(Engine):
    name = "shared-prefix"
    Options = SharedPrefixOptions

    @classmethod
    def start_early(cls, options: Any, run: EarlyRun) -> None:
        # On a CPU the workers and the helper would compete with the run for its cores.
        if not options.compile or torch.device(run.device).type == "cpu":
            return
        if options.early_compile_workers:
            from mmlubench.engines import compile_pool

            compile_pool.start()
        if options.precompile and not run.first_pass:
            precompile.start(run.model_dir, run.device, run.dtype, options)

    def __init__(self, model: nn.Module, options: Any, device: str):
        super().__init__(model, options, device)
        packed_attention.check_model(model)
        self.layers = packed_attention.decoder_layers(model)
        self.windows = packed_attention.layer_windows(model.config, len(self.layers))
        # A config has one window size for all its sliding layers: each pack gets one window
        # mask for it (None: no sliding layers, no window mask).
        self.window = min((w for w in self.windows if w), default=None)
        T, C = options.pack_tokens, options.carry_tokens
        self.masks = packed_attention.MaskBuffers(T, C, self.device, window=self.window)
        # The carry: per layer, buffers of the prefix `self.held` names (None: nothing known).
        self.held: bytes | None = None
        self.attention = packed_attention.attach(
            self.layers, self.windows, C, self.device, model.dtype
        )
        if options.fp8:
            self.swaps = fp8.linear_swaps(self.layers, self.device)
        else:
            self.swaps = group_swaps(self.layers) if options.fuse_projections else []
        # What the helper process compiled during the pass before (None: no helper).
        self.precompiled = precompile.finish() if options.compile else None
        self.compiled = compiled_layers(self.layers, options)
        self.compile_caches: dict[str, int] | None = None  # the warm-up's cache hits, misses
        self.no_logits = torch.zeros(0, dtype=torch.long, device=self.device)

    def describe(self) -> dict:
        out = super().describe()
        if self.precompiled is not None:
            out["options"]["precompiled"] = self.precompiled
        if self.compile_caches is not None:
            out["options"]["compile_caches"] = self.compile_caches
        return out

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The HF model as this engine runs it: the packed attention function, the compiled
        layers and the fused (or, fp8, the quantized) projections; as it was afterwards, so
        that the val pass runs the plain model on the same weights."""
        with packed_attention.implementation(self.model), fp8.swapped(self.swaps):
            for layer, compiled in zip(self.layers, self.compiled, strict=True):
                layer._compiled_call_impl = compiled
            try:
                yield
            finally:
                for layer in self.layers:
                    layer._compiled_call_impl = None

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        o = self.options
        return plan_packs(
            requests,
            o.pack_tokens,
            o.max_questions,
            o.share_prefix,
            o.block_size,
            carry_tokens=o.carry_tokens,
            window=self.window,
        )

    def split(self, batch: Batch) -> list[Batch] | None:
        """Re-pack the rows with at most half as many questions per pack. The pack length is
        the compiled shape and stays `pack_tokens`: a smaller pack holds fewer questions (less
        attention work and fewer LM-head rows), not fewer positions. The parts are a chain of
        their own: the first one computes its prefix, later ones may carry it."""
        if len(batch.rows) < 2:
            return None
        o = self.options
        return plan_packs(
            batch.payload.requests,
            o.pack_tokens,
            (len(batch.rows) + 1) // 2,
            o.share_prefix,
            o.block_size,
            rows=batch.rows,
            carry_tokens=o.carry_tokens,
            window=self.window,
        )

    def warmup(self, batches: Sequence[Batch]) -> None:
        # Compile on the first pack: every pack has its shape and the mask's buffers keep their
        # identity, so nothing recompiles later.
        before = cache_counters() if self.options.compile else None
        for batch in batches[:1]:
            self.forward(self.load(batch))
        if before is not None:
            after = cache_counters()
            self.compile_caches = {k: after[k] - before[k] for k in after}

    def _put(self, pack: Pack) -> dict[str, Any]:
        dev = self.device

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(dev, non_blocking=True)

        out = np.zeros(0, np.int64) if pack.carry_out is None else pack.carry_out
        return {
            "ids": put(pack.ids)[None],
            "pos": put(pack.pos)[None],
            "meta": [put(a) for a in pack.mask_meta()],
            "last": put(pack.last),
            "blocks": [[put(a)[None, None] for a in b] for b in pack.all_blocks()],
            "carry_idx": put(out),
            "carry_out_key": pack.carry_out_key,
            "pack": pack,
        }

    def _recompute(self, pack: Pack) -> dict[str, Any]:
        """Inputs that rerun the pack which computed the prefix `pack` needs in its carry, as
        it ran then (the same positions in the same compiled shape: the same keys/values as a
        run that never broke the chain); its LM head does not run."""
        origin = pack.carry_origin
        return {
            **self._put(origin),
            "last": self.no_logits,
            "work": replace(origin.work, logit_rows=0),
        }

    def load(self, batch: Batch) -> dict[str, Any]:
        """The pack's device inputs. `batch.work` is reset to the pack's planned work here;
        `forward` adds to it the pack it reruns when the carry does not hold the prefix the
        pack needs (a chain broken by data-parallel dealing, a resume or a split)."""
        pack: Pack = batch.payload
        batch.work = replace(pack.work)
        inputs = self._put(pack)
        broken = pack.carry_in_key is not None and pack.carry_in_key != self.held
        inputs.update(batch=batch, recompute=self._recompute(pack) if broken else None)
        return inputs

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        pack: Pack = inputs["pack"]
        with self.active():
            if pack.carry_in_key is not None and pack.carry_in_key != self.held:
                first = inputs["recompute"] or self._recompute(pack)
                self._run(first)
                inputs["batch"].work += first["work"]
            return self._run(inputs)[0]

    def _run(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The HF model on one pack: logits [1, questions, vocab] at the `last` positions;
        leaves the pack's carry-out in the attention modules' buffers."""
        masks = self.masks.block_masks(inputs["meta"], inputs["blocks"], self.options.block_size)
        self.held = None  # until every layer's carry is replaced (an OOM may stop half-way)
        out = self.model(
            input_ids=inputs["ids"],
            position_ids=inputs["pos"],
            attention_mask=masks[0],
            use_cache=False,
            logits_to_keep=inputs["last"],
            **packed_attention.call_kwargs(
                masks, inputs["carry_idx"], self.options.attention_kernel_options
            ),
        )
        self.held = inputs["carry_out_key"]
        return out.logits


def compiled_layers(layers: Sequence[nn.Module], options: Any, backend: Any = None) -> list:
    """Each decoder layer's compiled call (None each without `options.compile`), through
    Inductor with the options' mode and settings, or through `backend`, which stands for
    them (the precompile helper's)."""
    if not options.compile:
        return [None] * len(layers)
    how = (
        {"backend": backend}
        if backend is not None
        else {"mode": options.compile_mode, "options": options.compile_options}
    )
    return [
        torch.compile(layer._call_impl, dynamic=False, fullgraph=True, **how) for layer in layers
    ]


def cache_counters() -> dict[str, int]:
    """Graphs Dynamo traced, and Inductor's and AOTAutograd's cache hits and misses, so far
    in this process: a compile that found its graphs in the on-disk caches (warm) or made
    them (cold), and how many graphs it traced for it (one per kind of layer)."""
    from torch._dynamo.utils import counters

    names = {  # (counter group, counter): the name result.json gives it
        ("stats", "unique_graphs"): "graphs_traced",
        ("inductor", "fxgraph_cache_hit"): "fxgraph_cache_hit",
        ("inductor", "fxgraph_cache_miss"): "fxgraph_cache_miss",
        ("aot_autograd", "autograd_cache_hit"): "autograd_cache_hit",
        ("aot_autograd", "autograd_cache_miss"): "autograd_cache_miss",
    }
    return {name: int(counters[group][key]) for (group, key), name in names.items()}
