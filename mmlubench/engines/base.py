"""What every engine is: a planner of batches and a function from token ids to logits.

The runner calls, for one pass:
    batches = engine.plan(requests)      # host-side, outside the core timer
    engine.warmup(batches)               # compile / warm-up, timed apart
    for batch in batches:
        inputs = engine.load(batch)      # host-to-device copy, outside the core timer
        logits = engine.forward(inputs)  # timed between two device synchronizations
and gets one row of last-position logits per request of the batch, in `batch.rows` order.
If a batch runs out of device memory, the runner asks `engine.split(batch)` for smaller
batches of the same rows and runs those instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch


@dataclass(eq=False)
class Request:
    """Token ids of one prompt; its first `prefix_len` ids may be shared with other requests
    that have the same leading ids (0 = nothing to share)."""

    ids: np.ndarray
    prefix_len: int = 0


@dataclass
class Work:
    """What a batch makes the model compute, for FLOP accounting.

    tokens: token positions run through the decoder layers (padding excluded);
    attention_pairs: (query, key) pairs attended, summed over the batch (padding excluded);
    logit_rows: rows the LM head is applied to; padded_tokens: positions incl. padding;
    window_pairs: pairs attended in each sliding-window layer, where the engine skips the pairs
    outside the window (None: as many as attention_pairs, i.e. the window is not exploited).
    """

    tokens: int = 0
    attention_pairs: int = 0
    logit_rows: int = 0
    padded_tokens: int = 0
    window_pairs: int | None = None

    def __iadd__(self, other: Work) -> Work:
        if self.window_pairs is not None or other.window_pairs is not None:
            self.window_pairs = (
                self.attention_pairs if self.window_pairs is None else self.window_pairs
            ) + (other.attention_pairs if other.window_pairs is None else other.window_pairs)
        self.tokens += other.tokens
        self.attention_pairs += other.attention_pairs
        self.logit_rows += other.logit_rows
        self.padded_tokens += other.padded_tokens
        return self


@dataclass(eq=False)
class Batch:
    """Requests computed together. `rows` index the request list, in output-row order."""

    rows: list[int]
    prompt_tokens: int
    work: Work
    payload: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class EarlyRun:
    """What an engine's early start knows of the run."""

    device: str  # the run's device, e.g. cuda:0
    model_dir: str  # the model folder
    dtype: str  # the model's torch dtype, e.g. float16
    first_pass: bool  # the engine's pass is the run's first: nothing runs before it


def causal_pairs(n: int, context: int = 0) -> int:
    """Pairs attended by n causal queries that also see `context` earlier keys."""
    return n * context + n * (n + 1) // 2


class Engine(ABC):
    """Base of all engines. Subclasses set `name` and a typed `Options` dataclass."""

    name: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, model: torch.nn.Module, options: Any, device: str):
        self.model = model
        self.options = options
        self.device = torch.device(device)
        self.vocab_size = int(model.config.vocab_size)

    @classmethod  # noqa: B027 - an optional hook
    def start_early(cls, options: Any, run: EarlyRun) -> None:
        """Work to start ahead of the engine's pass (e.g. compile workers), in a thread of
        its own while the pass before runs (run/pass_steps.py)."""

    @abstractmethod
    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        """Group requests into batches (host only, no device work)."""

    def warmup(self, batches: Sequence[Batch]) -> None:  # noqa: B027 - optional hook
        """Compile and warm up; the runner times this apart from core time."""

    def split(self, batch: Batch) -> list[Batch] | None:
        """Smaller batches that together hold exactly the rows of `batch` (which ran out of
        device memory), each with fewer rows; None if this engine cannot split a batch."""
        return None

    @abstractmethod
    def load(self, batch: Batch) -> Any:
        """Build the device inputs of a batch."""

    @abstractmethod
    def forward(self, inputs: Any) -> torch.Tensor:
        """Last-position logits, one row per request of the batch: [len(batch.rows), vocab]."""

    def describe(self) -> dict:
        """Engine name and options for result.json."""
        from dataclasses import asdict

        return {"name": self.name, "options": asdict(self.options)}
