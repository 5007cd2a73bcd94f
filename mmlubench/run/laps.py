"""The run's steps as laps of one clock: `timings` in result.json.

Each step outside the passes' whole times is a lap: the seconds since the lap before, the first
from the command's start (e2e_time's own). A pass's whole time is skipped (the pass times it),
so the laps and the passes' whole times together are e2e_time, with nothing left unattributed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from mmlubench.results.document import timing_keys


class Laps:
    """Seconds per step, by timings key (results.document.timing_keys)."""

    def __init__(self, start: float) -> None:
        self.last = start
        self.seconds: dict[str, float] = {}

    def lap(self, key: str) -> None:
        """The time since the last lap (or skip) is step `key`'s."""
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self.last
        self.last = now

    def skip(self) -> None:
        """The time since the last lap is timed elsewhere (a pass's whole time)."""
        self.last = time.perf_counter()

    def timings(self, passes: Iterable[str], plan_s: dict[str, float]) -> dict[str, float]:
        """The timings section: every declared key, in run order, with each pass's planning
        seconds (`plan_s`, inside its whole time); a lap of an undeclared key is an error."""
        passes = list(passes)
        laps = {**self.seconds, **{f"{name}_plan_s": plan_s[name] for name in passes}}
        keys = timing_keys(passes)
        if set(laps) != set(keys):
            raise RuntimeError(f"timings: laps {sorted(laps)} but declared keys {keys}")
        return {key: laps[key] for key in keys}
