"""What a result document must hold beyond its key names: shapes, ranges and co-presence.

`sections` checks that every declared key is there with the right kind of value; these checks
say what a reader (report, compare, the HTML pages and charts) relies on besides: an infer pass,
the answer rule known and present in every pass (both rules for random weights, whose report
shows both), energy figures set together, sample and timeline rows of their fixed length, and
finite numbers everywhere. Each failure names the dotted key.
"""

from __future__ import annotations

import math
from typing import Any

from mmlubench.results.sections import BadKey

RULES = ("reference", "choices", "token")
ROW_LENGTH = {"timeline": 4, "samples": 2, "power_samples": 2, "sm_clock_samples": 2}
# Energy figures that exist only with a measured energy_j (and energy_j only with them).
ENERGY = ("avg_power_w", "tokens_per_joule", "joules_per_question", "energy_window_s")


def _rows(rows: list[list[float]], key: str) -> None:
    n = ROW_LENGTH[key.rsplit(".", 1)[-1]]
    for i, row in enumerate(rows):
        if len(row) < n:  # data-parallel timelines add the rank
            raise BadKey(
                f"{key}[{i}]", f"a row of at least {n} numbers expected, got {len(row)}, in"
            )


def _finite(value: Any, key: str) -> None:
    """Every number of a parsed JSON value finite (no Infinity/NaN), however nested."""
    stack = [(value, key)]
    while stack:
        v, k = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise BadKey(k, "not a finite number:")
        if isinstance(v, dict):
            stack.extend((x, f"{k}.{name}") for name, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{k}[{i}]") for i, x in enumerate(v))


def check(result: Any, data: dict[str, Any]) -> None:
    """Raise BadKey for the first thing a reader could not use."""
    _finite(data, "")
    if "infer" not in result.passes:
        raise BadKey("passes.infer", "missing key")
    if set(result.passes) - {"val", "infer"}:
        raise BadKey("passes", f"only val and infer are passes, got {sorted(result.passes)} in")
    rule = result.accuracy.rule
    if rule not in RULES:
        raise BadKey("accuracy.rule", f"one of {', '.join(RULES)} expected in")
    needed = {rule, "reference", "choices"} if result.random_weights else {rule}
    for name, p in result.passes.items():
        for r in sorted(needed - set(p.accuracy)):
            raise BadKey(f"passes.{name}.accuracy.{r}", "missing key")
        _rows(p.timeline, f"passes.{name}.timeline")
        measured = [k for k in ENERGY if getattr(p, k) is not None]
        if (p.energy_j is None) != (not measured) or (
            p.energy_j is not None and p.avg_power_w is None
        ):
            raise BadKey(
                f"passes.{name}.energy_j",
                "energy_j and avg_power_w go together (both measured or both null):",
            )
    for mem, key in [
        (result.memory, "memory"),
        *((m, f"memory.per_device[{i}]") for i, m in enumerate(result.memory.per_device or [])),
    ]:
        for field in ("samples", "power_samples", "sm_clock_samples"):
            _rows(getattr(mem, field), f"{key}.{field}")
