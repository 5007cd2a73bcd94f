"""Test hooks that make a run fail on purpose at a chosen batch. Never set them in real runs.

MMLUBENCH_INJECT_OOM="infer:0,val:3"  the runner raises torch.OutOfMemoryError instead of running
    the engine on that batch attempt of that pass (0-based; retries of split batches count), so
    the out-of-memory back-off can be tested on a CPU.
MMLUBENCH_INJECT_KILL="infer:2"       the process SIGKILLs itself right after batch attempt 2 of
    the infer pass has been recorded in progress.jsonl, so `run --resume` can be tested on a run
    killed at a known point.
"""

from __future__ import annotations

import os
import signal

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
            raise RunError(f"environment variable {var}: expected PASS:BATCH items such as "
                           f"'infer:0', got {item!r}")
        if name == pass_name:
            out.add(int(k))
    return frozenset(out)


def kill_self() -> None:
    """Die as a crash would: no cleanup, no exit handlers, nothing flushed."""
    os.kill(os.getpid(), signal.SIGKILL)
