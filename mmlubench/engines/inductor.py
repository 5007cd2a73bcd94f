"""`inductor`: the reference method, the whole HF model through `torch.compile`.

As FlagPerf's inductor engine: mode and dynamic from the config (reduce-overhead, dynamic by
default), batch 1, logits at every position, and a warm-up of `warmup_times` extra calls on
each of the first `warmup_iters` prompts, which the runner times as compile time and keeps out
of core time. As in the reference, recompilations and CUDA-graph recordings for prompt lengths
first seen after the warm-up stay inside core time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmlubench.engines.base import Batch
from mmlubench.engines.eager import EagerEngine
from mmlubench.engines.inductor_options import check_compile_options


@dataclass
class InductorOptions:
    mode: str | None = field(
        default="reduce-overhead",
        metadata={
            "help": ("torch.compile mode: null (default), reduce-overhead, max-autotune, ...")
        },
    )
    dynamic: bool | None = field(
        default=True, metadata={"help": ("torch.compile dynamic shapes (null: automatic)")}
    )
    warmup_iters: int = field(
        default=10, metadata={"help": ("prompts warmed up before timing (the reference's warm-up)")}
    )
    warmup_times: int = field(default=10, metadata={"help": "extra calls on each of them"})
    batch_size: int = field(default=1, metadata={"help": "prompts per call"})
    batch_tokens: int = field(
        default=32768,
        metadata={"help": ("most positions in one padded batch (rows x longest prompt)")},
    )
    full_logits: bool = field(
        default=True, metadata={"help": ("logits at every position as the reference computes them")}
    )

    def check(self) -> None:
        check_compile_options(None, self.mode)
        if self.warmup_iters < 0 or self.warmup_times < 0:
            raise ValueError("warmup_iters and warmup_times must be >= 0")
        if self.batch_size < 1 or self.batch_tokens < 1:
            raise ValueError("batch_size and batch_tokens must be >= 1")


class InductorEngine(EagerEngine):
    name = "inductor"
    Options = InductorOptions

    def __init__(self, model: torch.nn.Module, options: Any, device: str):
        super().__init__(model, options, device)
        torch._dynamo.reset()
        self.call = torch.compile(model, mode=options.mode, dynamic=options.dynamic)

    def warmup(self, batches: Sequence[Batch]) -> None:
        for batch in batches[: self.options.warmup_iters]:
            inputs = self.load(batch)
            for _ in range(self.options.warmup_times):
                self.forward(inputs)
