"""`eager`: the plain Hugging Face model, not compiled (the reference's `val` pass).

Three ways to call it (option `method`), all the unmodified HF model in eager mode:
- `prefix-cache` (default): each distinct few-shot prefix is computed once with `use_cache=True`
  (HF's own DynamicCache); then length-sorted batches of question suffixes run against that
  cache (expanded per row), with an attention mask over prefix + suffix, position ids
  continuing from the prefix and the last position's logits only. Prompts with nothing to share
  (prefix_len 0) run whole in padded batches. See engines/prefix_cache.py; with `kv_store`
  (default) the cache's layers are buffers kept across batches (engines/prefix_kv.py).
- `padded`: length-sorted whole prompts in left-padded batches, last-position logits only.
- `reference`: the reference's own method: one prompt per call, logits at every position.

Sliding-window layers: a suffix batch against a shared prefix cache has padding between the
prefix and each suffix, and transformers counts a sliding window in cache positions, padding
included; so where a window is shorter than the longest prompt, `prefix-cache` plans the
`padded` method instead (left padding shifts every position alike: the window is exact), and
says so in result.json (the engine's `method_used` and `method_why`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmlubench.engines.base import Batch, Engine, Request
from mmlubench.engines.batching import (
    BATCH_COST_TOKENS,
    Suffixes,
    padded_inputs,
    plan_padded,
    plan_prefix_cache,
    split_suffixes,
    suffix_inputs,
)
from mmlubench.engines.prefix_cache import PrefixStore

METHODS = ("prefix-cache", "padded", "reference")


@dataclass
class EagerOptions:
    method: str = field(
        default="prefix-cache",
        metadata={
            "help": (
                "prefix-cache: each few-shot prefix once through HF's DynamicCache, then batches "
                "of "
                "question suffixes against it; padded: whole prompts in left-padded batches; "
                "reference: one prompt per call, logits at every position (the reference's val)"
            )
        },
    )
    batch_size: int = field(
        default=128, metadata={"help": ("most questions in one batch (reference: always 1)")}
    )
    batch_tokens: int = field(
        default=40960,
        metadata={
            "help": (
                "most positions in one batch: rows x (prefix + longest suffix) with prefix-cache, "
                "rows x longest prompt when padded; bounds activation and KV-cache memory"
            )
        },
    )
    batch_cost_tokens: int = field(
        default=BATCH_COST_TOKENS,
        metadata={
            "help": (
                "prefix-cache: what one more batch costs, in padded suffix tokens; each "
                "prefix's suffixes are cut into the batches of least padding plus this per "
                "batch (engines/batching.py says how the default was measured)"
            )
        },
    )
    full_logits: bool = field(
        default=False,
        metadata={
            "help": (
                "logits at every position as the reference computes them (only the last is used); "
                "needs method padded (method reference sets it)"
            )
        },
    )
    kv_store: bool = field(
        default=True,
        metadata={
            "help": (
                "prefix-cache: keep key/value buffers from batch to batch that hold the prefix "
                "once "
                "per row and take each batch's suffixes in place (engines/prefix_kv.py); false: "
                "HF's DynamicCache concatenates the prefix into every row at every batch"
            )
        },
    )
    free_between_prefixes: bool = field(
        default=True,
        metadata={
            "help": (
                "prefix-cache: hand the allocator's cached blocks back to the device before each "
                "new "
                "prefix (keeps device-wide memory near torch's peak; costs cudaMalloc/cudaFree "
                "time)"
            )
        },
    )
    cudnn_attention: bool = field(
        default=False,
        metadata={
            "help": (
                "let PyTorch's SDPA pick its cuDNN backend; off by default: it prepares a plan for "
                "every new input shape, and nearly every batch here has a new one (flash, "
                "memory-efficient and math backends stay allowed)"
            )
        },
    )

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.batch_cost_tokens < 0:
            raise ValueError(f"batch_cost_tokens must be >= 0, got {self.batch_cost_tokens}")
        if self.full_logits and self.method == "prefix-cache":
            raise ValueError(
                "full_logits needs method padded (the reference's own val "
                "method is method: reference)"
            )
        if self.method == "reference":  # what the reference does, whatever else was set
            self.batch_size, self.full_logits = 1, True


class EagerEngine(Engine):
    name = "eager"
    Options = EagerOptions

    def __init__(self, model: torch.nn.Module, options: Any, device: str):
        super().__init__(model, options, device)
        self.call = model  # the inductor engine swaps in the compiled model
        self.prefixes = PrefixStore(
            model,
            getattr(options, "kv_store", False),
            getattr(options, "batch_tokens", 0),
            getattr(options, "free_between_prefixes", True),
        )
        from mmlubench.engines.packed_attention import layer_windows

        config = model.config
        windows = layer_windows(config, getattr(config, "num_hidden_layers", 0) or 0)
        self.window = min((w for w in windows if w), default=None)
        self.why: str | None = None  # why prefix-cache ran as padded, if it did

    @property
    def method(self) -> str:
        return getattr(self.options, "method", "padded")

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        o = self.options
        longest = max((len(r.ids) for r in requests), default=0)
        if self.method == "prefix-cache" and self.window and self.window < longest:
            self.why = (
                f"a sliding window of {self.window} tokens is shorter than the longest "
                f"prompt ({longest}); a prefix cache with padding after the prefix "
                "would shift it"
            )
        elif self.method == "prefix-cache":
            cost = getattr(o, "batch_cost_tokens", BATCH_COST_TOKENS)
            return plan_prefix_cache(requests, o.batch_size, o.batch_tokens, cost)
        return plan_padded(requests, o.batch_size, o.batch_tokens, o.full_logits)

    def describe(self) -> dict:
        out = super().describe()
        if self.why:
            out["options"].update(method_used="padded", method_why=self.why)
        return out

    def split(self, batch: Batch) -> list[Batch] | None:
        """Re-plan the rows with half the batch size and half the positions."""
        if len(batch.rows) < 2:
            return None
        size = (len(batch.rows) + 1) // 2
        if isinstance(batch.payload, Suffixes):
            return split_suffixes(batch, size)
        tokens = max(1, batch.work.padded_tokens // 2)
        return plan_padded(
            batch.payload.requests, size, tokens, self.options.full_logits, rows=batch.rows
        )

    def load(self, batch: Batch) -> dict[str, Any]:
        if isinstance(batch.payload, Suffixes):
            return suffix_inputs(batch.payload, self.device)
        return padded_inputs([r.ids for r in batch.payload.requests], self.device)

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        with sdpa_backends(getattr(self.options, "cudnn_attention", True)):
            if "prefix" in inputs:
                return self.prefixes.forward(inputs)
            keep = 0 if self.options.full_logits else 1  # 0 = logits at every position
            out = self.call(**inputs, use_cache=False, logits_to_keep=keep)
            return out.logits[:, -1, :]


def sdpa_backends(cudnn: bool) -> contextlib.AbstractContextManager:
    """The SDPA backends the HF model may use: all (`cudnn`), or all but cuDNN's. The
    inductor engine (the reference method) has no such option and keeps PyTorch's choice."""
    if cudnn:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )
