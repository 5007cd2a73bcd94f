"""Every record of progress.jsonl checked, field by field, when the log is read.

An edited or damaged log must stop a resume before any work, naming the file and line: a
wrong type (`t_s: "abc"`), an impossible value (a top id beyond the vocabulary, a negative
time, a row outside the run) or a missing field would otherwise give wrong predictions, a
result.json that `report` rejects, or a crash after every remaining batch was computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from mmlubench.engines.base import Work
from mmlubench.errors import RunError

PASSES = ("val", "infer")
BACKOFF = {
    "attempt": int,
    "questions": int,
    "prompt_tokens": int,
    "first_question": str,
    "split_into": list,
}


@dataclass(frozen=True)
class Limits:
    """What a record of this run may hold: rows < questions, top ids < vocab."""

    questions: int
    vocab: int


def _count(v: Any, limit: int | None = None) -> bool:
    return type(v) is int and v >= 0 and (limit is None or v < limit)


def _seconds(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and v >= 0


def _logits(v: Any, n: int) -> bool:
    return (
        isinstance(v, list)
        and len(v) == n
        and all(
            isinstance(row, list)
            and len(row) == 4
            and all(type(x) in (int, float) and math.isfinite(x) for x in row)
            for row in v
        )
    )


def _engine(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("name"), str)
        and isinstance(v.get("options", {}), dict)
    )


def _backoff(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(v.get(k), t) and not isinstance(v.get(k), bool) for k, t in BACKOFF.items()
    )


def _checks(rec: dict, lim: Limits) -> dict[str, tuple[bool, Callable[[Any], bool], str]]:
    """{field: (required, test, what it must be)} of the record's kind."""
    seconds = (True, _seconds, "a finite number of seconds >= 0")
    opt_seconds = (False, _seconds, "a finite number of seconds >= 0")
    common = {"session": (True, _count, "a session number >= 0"), "e2e_s": seconds}
    by_kind = {
        "batch": _batch_checks(rec, lim, seconds),
        "session": {
            "started": (True, lambda v: isinstance(v, str), "text"),
            "pid": (False, _count, "a process id"),
        },
        "pass_start": {
            "engine": (True, _engine, "an engine description"),
            "compile_time_s": seconds,
            "plan_time_s": opt_seconds,
            "t_s": seconds,
            "planned_batches": (False, _count, "a count"),
            "todo_batches": (False, _count, "a count"),
        },
        "oom_backoff": {"backoff": (True, _backoff, "a back-off description"), "t_s": seconds},
        "pass_end": {
            "whole_time_s": seconds,
            "t_s": seconds,
            "torch_peak_allocated_bytes": (
                False,
                lambda v: v is None or _count(v),
                "a byte count or null",
            ),
        },
    }
    checks = {**common, **by_kind[rec["kind"]]}
    if rec["kind"] != "session":
        checks["pass"] = (True, lambda v: v in PASSES, " or ".join(PASSES))
    return checks


def _batch_checks(
    rec: dict, lim: Limits, seconds: tuple[bool, Callable[[Any], bool], str]
) -> dict[str, tuple[bool, Callable[[Any], bool], str]]:
    """The checks of a `batch` record's own fields (`_checks`)."""
    rows = rec.get("rows") if isinstance(rec.get("rows"), list) else []
    work = {f.name for f in fields(Work)}
    return {
        "rows": (
            True,
            lambda v: (
                isinstance(v, list)
                and all(_count(r, lim.questions) for r in v)
                and len(set(v)) == len(v)
            ),
            f"distinct question numbers < {lim.questions}",
        ),
        "top_ids": (
            True,
            lambda v: (
                isinstance(v, list) and len(v) == len(rows) and all(_count(i, lim.vocab) for i in v)
            ),
            f"one token id < {lim.vocab} per row",
        ),
        "choice_logits": (True, lambda v: _logits(v, len(rows)), "four finite logits per row"),
        "prompt_tokens": (True, _count, "a count"),
        "work": (
            True,
            lambda v: (
                isinstance(v, dict)
                and set(v) | {"window_pairs"} == work
                and all(_count(x) or (k == "window_pairs" and x is None) for k, x in v.items())
            ),
            f"counts of {', '.join(sorted(work))} (window_pairs null or left out)",
        ),
        "core_time_s": seconds,
        "t_s": seconds,
    }


def check_record(rec: Any, where: str, lim: Limits) -> None:
    """Raise RunError `where: corrupt progress record: ...` unless `rec` is a well-formed
    record of this run."""

    def bad(msg: str) -> RunError:
        return RunError(
            f"{where}: corrupt progress record: {msg} (the log was edited or "
            "damaged; start a new run)"
        )

    if not isinstance(rec, dict):
        raise bad(f"expected an object, got {type(rec).__name__}")
    kinds = ("session", "pass_start", "batch", "oom_backoff", "pass_end")
    if rec.get("kind") not in kinds:
        raise bad(f"field 'kind' must be one of {', '.join(kinds)}")
    for name, (required, ok, what) in _checks(rec, lim).items():
        if name not in rec:
            if required:
                raise bad(f"field {name!r} is missing")
            continue
        value = rec[name]
        if type(value) is int and value.bit_length() > 64:  # 10**30: never formatted whole
            raise bad(f"field {name!r} must be {what}, got an integer of {value.bit_length()} bits")
        if not ok(value):
            shown = repr(value)
            raise bad(
                f"field {name!r} must be {what}, got "
                f"{shown if len(shown) <= 40 else shown[:40] + '...'}"
            )


def model_vocab(weight_dir, tokenizer) -> int:
    """How many token ids the model scores: config.json's vocab_size (the tokenizer's length
    where config.json gives none)."""
    import json
    from pathlib import Path

    try:
        size = json.loads((Path(weight_dir) / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError, AttributeError):
        size = None
    return size if type(size) is int and size > 0 else len(tokenizer)
