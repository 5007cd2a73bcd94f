"""`eager`: the plain Hugging Face model, not compiled (the reference's `val` pass).

With batch_size 1 and full_logits it is exactly the reference method: one prompt per call,
logits at every position. The default batches length-sorted prompts with left padding, an
attention mask and matching position ids, and asks the model for the last position's logits
only (`logits_to_keep=1`): the same numbers for the questions, far less work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmlubench.engines.base import Batch, Engine, Request, Work, causal_pairs, renumber


@dataclass
class EagerOptions:
    # Most prompts in one batch; 1 means no padding at all (the reference).
    batch_size: int = 32
    # Most positions in one padded batch (rows x longest prompt): bounds activation memory.
    batch_tokens: int = 32768
    # Compute logits at every position as the reference does (only the last one is used).
    full_logits: bool = False

    def check(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {self.batch_tokens}")


def plan_padded(requests: Sequence[Request], batch_size: int, batch_tokens: int,
                full_logits: bool) -> list[Batch]:
    """Batch size 1 keeps request order; larger batches group length-sorted requests
    (longest first, so an out-of-memory shows at once) under both limits."""
    lengths = [len(r.ids) for r in requests]
    if batch_size == 1:
        groups = [[i] for i in range(len(requests))]
    else:
        order = sorted(range(len(requests)), key=lambda i: (-lengths[i], i))
        groups, current = [], []
        for i in order:
            longest = lengths[current[0]] if current else lengths[i]
            full = len(current) >= batch_size or (len(current) + 1) * longest > batch_tokens
            if current and full:
                groups.append(current)
                current = []
            current.append(i)
        if current:
            groups.append(current)
    batches = []
    for rows in groups:
        n = [lengths[i] for i in rows]
        work = Work(
            tokens=sum(n),
            attention_pairs=sum(causal_pairs(k) for k in n),
            logit_rows=sum(n) if full_logits else len(rows),
            padded_tokens=len(rows) * max(n),
        )
        batches.append(Batch(rows=rows, prompt_tokens=sum(n), work=work))
    return batches


class EagerEngine(Engine):
    name = "eager"
    Options = EagerOptions

    def __init__(self, model: torch.nn.Module, options: Any, device: str):
        super().__init__(model, options, device)
        self.call = model  # the inductor engine swaps in the compiled model
        self._requests: Sequence[Request] = ()

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        self._requests = requests
        o = self.options
        return plan_padded(requests, o.batch_size, o.batch_tokens, o.full_logits)

    def split(self, batch: Batch) -> list[Batch] | None:
        """Re-plan the rows with half the batch size and half the padded positions."""
        rows = batch.rows
        if len(rows) < 2:
            return None
        sub = [self._requests[i] for i in rows]
        return renumber(plan_padded(sub, (len(rows) + 1) // 2,
                                    max(1, batch.work.padded_tokens // 2),
                                    self.options.full_logits), rows)

    def load(self, batch: Batch) -> dict[str, torch.Tensor]:
        seqs = [self._requests[i].ids for i in batch.rows]
        if len(seqs) == 1:  # the reference's call: token ids only
            ids = torch.from_numpy(np.asarray(seqs[0], dtype=np.int64))[None]
            return {"input_ids": ids.to(self.device)}
        width = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = s  # left padding: every row ends at the last column
            mask[r, width - len(s):] = 1
        # Positions count real tokens only, so a padded row sees the positions it would alone.
        pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
        return {
            "input_ids": torch.from_numpy(ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
            "position_ids": torch.from_numpy(pos).to(self.device),
        }

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        keep = 0 if self.options.full_logits else 1  # 0 = logits at every position
        out = self.call(**inputs, use_cache=False, logits_to_keep=keep)
        return out.logits[:, -1, :]
