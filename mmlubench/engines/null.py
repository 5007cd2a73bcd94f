"""`null`: runs no model. Its pass measures the harness's own overhead (planning, copies,
scoring, bookkeeping); its logits are zeros, so its predictions mean nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmlubench.engines.base import Batch, Engine, Request, Work


@dataclass
class NullOptions:
    batch_size: int = field(default=1, metadata={"help": "questions per (empty) batch"})

    def check(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class NullEngine(Engine):
    name = "null"
    Options = NullOptions

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        bs = self.options.batch_size
        return [
            Batch(
                rows=list(range(s, min(s + bs, len(requests)))),
                prompt_tokens=sum(len(r.ids) for r in requests[s : s + bs]),
                work=Work(),
                payload=list(requests[s : s + bs]),
            )
            for s in range(0, len(requests), bs)
        ]

    def load(self, batch: Batch) -> Any:
        ids = np.concatenate([r.ids for r in batch.payload])
        return len(batch.rows), torch.from_numpy(ids.astype(np.int64)).to(self.device)

    def forward(self, inputs: Any) -> torch.Tensor:
        n, _ = inputs
        return torch.zeros(n, self.vocab_size, device=self.device)
