"""A pass's progress on stderr: a tqdm bar on a terminal, plain periodic lines otherwise (a log
file or a pipe would get tqdm's carriage-return frames piled into one huge line).

Both show one throughput, named as the table names it: p_<pass>_core, prompt tokens per core
second (the synchronized engine calls), over the questions answered so far.
"""

from __future__ import annotations

import sys
import time
from typing import IO

PLAIN_INTERVAL_S = 30.0  # seconds between two plain lines


class Progress:
    """`update` after each batch with the pass's totals so far; `close` at the end."""

    def __init__(
        self,
        name: str,
        engine: str,
        total_tokens: int,
        enabled: bool = True,
        stream: IO[str] | None = None,
        interval_s: float = PLAIN_INTERVAL_S,
    ):
        self.name, self.label, self.total = name, f"{name} ({engine})", total_tokens
        self.enabled, self.interval_s = enabled, interval_s
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_tokens, unit="tok", desc=self.label, unit_scale=True, file=self.stream
            )

    def rate(self, prompt_tokens: int, core_s: float) -> str:
        return (
            f"p_{self.name}_core {prompt_tokens / core_s:,.0f} tok/s"
            if core_s
            else f"p_{self.name}_core -"
        )

    def update(self, tokens: int, prompt_tokens: int, core_s: float) -> None:
        """`tokens` new prompt tokens answered; the pass's prompt tokens and core seconds."""
        self.done += tokens
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(tokens)
            self.bar.set_postfix_str(self.rate(prompt_tokens, core_s))
            return
        now = time.perf_counter()
        if now - self.last >= self.interval_s or self.done >= self.total:
            self.last = now
            share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            print(
                f"{self.label}: {self.done:,}/{self.total:,} prompt tokens{share}, "
                f"{self.rate(prompt_tokens, core_s)}, {now - self.start:,.0f} s",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
