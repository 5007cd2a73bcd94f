"""Out of device memory: the smaller batches a pass runs instead of one that did not fit."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from mmlubench.engines.base import Batch, Engine
from mmlubench.errors import RunError

log = logging.getLogger("mmlubench")

# What torch's CPU allocator raises when host memory runs out (a RuntimeError, not
# torch.OutOfMemoryError): on a CPU that is the device's memory.
CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory (CUDA and other accelerators:
    torch.OutOfMemoryError; a CPU: its allocator's RuntimeError)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and CPU_ALLOCATOR_FAILURE in str(error)
    )


def back_off(name: str, engine: Engine, batch: Batch, labels: Sequence[str]) -> list[Batch]:
    """The smaller batches to run instead of `batch`, which ran out of device memory.
    A single question that does not fit, or an engine that cannot split, is a RunError."""
    label = [labels[i] for i in batch.rows]
    if len(batch.rows) == 1:
        raise RunError(
            f"{name} pass: question {label[0]} ({batch.prompt_tokens} tokens) does "
            f"not fit in device memory even alone (engine {engine.name}; "
            "lower the engine's batch or pack size, or max_seq_len)"
        )
    parts = engine.split(batch)
    if not parts:
        raise RunError(
            f"{name} pass: out of device memory on a batch of {len(label)} questions "
            f"({', '.join(label[:5])}{', ...' if len(label) > 5 else ''}), and engine "
            f"{engine.name} cannot split a batch: lower its batch size"
        )
    if sorted(r for p in parts for r in p.rows) != sorted(batch.rows) or max(
        len(p.rows) for p in parts
    ) >= len(batch.rows):
        raise RuntimeError(
            f"engine {engine.name} split a batch into parts that do not hold "
            "exactly its rows in smaller batches"
        )
    log.warning(
        "%s pass: out of device memory on a batch of %d questions (%s ...); retrying "
        "it as %d smaller batches",
        name,
        len(label),
        label[0],
        len(parts),
    )
    return parts
