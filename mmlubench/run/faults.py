"""Test hooks that make a run fail on purpose at a chosen batch. Never set them in real runs.

MMLUBENCH_INJECT_OOM="infer:0,val:3"  torch.OutOfMemoryError instead of running the engine on
    that batch attempt of that pass (0-based; retries of split batches count), so the
    out-of-memory back-off can be tested on a CPU.
MMLUBENCH_INJECT_KILL="infer:2"       the process SIGKILLs itself when batch attempt 3 of the
    infer pass begins, that is right after attempt 2 was recorded in progress.jsonl, so
    `run --resume` can be tested on a run killed at a known point (name an attempt that is not
    the pass's last).

Both work by wrapping the pass's engine (`wrap`); without the variables the engine is not
wrapped and the run path holds no trace of them.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import torch

from mmlubench.engines.base import Batch, Engine
from mmlubench.errors import RunError

OOM = "MMLUBENCH_INJECT_OOM"
KILL = "MMLUBENCH_INJECT_KILL"


def attempts(var: str, pass_name: str) -> frozenset[int]:
    """The batch attempts of `pass_name` that the hook `var` names (empty when unset)."""
    out = set()
    for item in os.environ.get(var, "").split(","):
        if not item.strip():
            continue
        name, _, k = item.strip().partition(":")
        if not k.isdigit():
            raise RunError(
                f"environment variable {var}: expected PASS:BATCH items such as "
                f"'infer:0', got {item!r}"
            )
        if name == pass_name:
            out.add(int(k))
    return frozenset(out)


def kill_self() -> None:
    """Die as a crash would: no cleanup, no exit handlers, nothing flushed."""
    os.kill(os.getpid(), signal.SIGKILL)


class FaultyEngine:
    """An engine that fails where the hooks say: every `load` is one batch attempt."""

    def __init__(self, inner: Engine, oom: frozenset[int], kill: frozenset[int]):
        self.inner = inner
        self.oom = oom
        self.kill = kill
        self.attempt = -1

    def __getattr__(self, name: str) -> Any:  # everything else is the engine's own
        return getattr(self.inner, name)

    def load(self, batch: Batch) -> Any:
        self.attempt += 1
        if self.attempt - 1 in self.kill:  # the attempt before has been recorded
            kill_self()
        if self.attempt in self.oom:
            raise torch.OutOfMemoryError(f"injected by {OOM} (test hook)")
        return self.inner.load(batch)


def wrap(engine: Engine, pass_name: str) -> Engine:
    """`engine`, wrapped in the fault hooks when a hook names this pass."""
    oom, kill = attempts(OOM, pass_name), attempts(KILL, pass_name)
    if not (oom or kill):
        return engine
    return FaultyEngine(engine, oom, kill)  # type: ignore[return-value]
