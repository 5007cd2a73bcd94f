"""Keep the last-position logits of a pass, for parity checks (the runner keeps none).

    engine = KeepLogits(engine, len(requests))
    result = run_pass(name, engine, requests, choice_ids, progress=False)
    engine.logits  # [questions, vocab] fp32 on the host, in question order

Works with the out-of-memory back-off (the parts of a split batch fill their own rows). The
copy to the host happens inside the engine call, so the pass's core time is not the engine's.
"""

from __future__ import annotations

from typing import Any

import torch

from mmlubench.engines.base import Batch, Engine


class KeepLogits:
    """`engine`, keeping a host copy of every row of logits it returns."""

    def __init__(self, engine: Engine, questions: int):
        self.inner = engine
        self.questions = questions
        self.logits: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:  # everything else is the engine's own
        return getattr(self.inner, name)

    def load(self, batch: Batch) -> tuple[list[int], Any]:
        return batch.rows, self.inner.load(batch)

    def forward(self, inputs: tuple[list[int], Any]) -> torch.Tensor:
        rows, device_inputs = inputs
        out = self.inner.forward(device_inputs)
        if self.logits is None:
            self.logits = torch.full((self.questions, out.shape[1]), float("nan"))
        self.logits[rows] = out.float().cpu()
        return out
