"""A pass's result: its answers in question order and its figures (`PassResult`), and the one
merge of parts that answered disjoint questions: the ranks of a data-parallel run, the sessions
of a resumed run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmlubench.engines.base import Work

# A pass's log of events (resume.RunLog.record, or a no-op): kind, then the event's fields.
Record = Callable[..., None]


def no_record(kind: str, **fields: object) -> None:
    """The `record` hook of a pass that keeps no log."""


@dataclass
class PassResult:
    """A pass's answers (in question order; top id -1: not answered by this part) and its
    figures, named as result.json's `passes.<name>` names them."""

    name: str
    engine: dict
    top_ids: np.ndarray
    choice_logits: np.ndarray
    prompt_tokens: int = 0
    batches: int = 0
    whole_time_s: float = 0.0
    core_time_s: float = 0.0
    compile_time_s: float = 0.0
    plan_time_s: float = 0.0
    work: Work = field(default_factory=Work)
    # One entry per batch: [questions, prompt tokens, core seconds, seconds since pass start]
    # (data parallel: the rank appended).
    timeline: list[list[float]] = field(default_factory=list)
    torch_peak_allocated_bytes: int | None = None
    oom_backoffs: list[dict] = field(default_factory=list)
    per_rank: list[dict] = field(default_factory=list)
    # The sample questions' whole logits (results/logit_sample.py).
    sample_logits: dict[int, np.ndarray] = field(default_factory=dict)
    # log of the softmax denominator of each question's last-position logits (scoring.Reduced)
    logsumexp: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    @classmethod
    def empty(cls, name: str, engine: dict, n: int) -> PassResult:
        return cls(
            name,
            engine,
            np.full(n, -1, dtype=np.int64),
            np.full((n, 4), np.nan, dtype=np.float32),
            logsumexp=np.full(n, np.nan, dtype=np.float32),
        )

    @property
    def answered(self) -> np.ndarray:
        return self.top_ids >= 0

    def add(
        self,
        rows: np.ndarray,
        top_ids: np.ndarray,
        choice_logits: np.ndarray,
        prompt_tokens: int,
        work: Work,
        core_s: float,
        t_s: float,
        logsumexp: np.ndarray | None = None,
    ) -> None:
        """Take one computed batch's answers and figures."""
        self.top_ids[rows] = top_ids
        self.choice_logits[rows] = choice_logits
        if logsumexp is not None:
            self.logsumexp[rows] = logsumexp
        self.prompt_tokens += prompt_tokens
        self.batches += 1
        self.core_time_s += core_s
        self.work += work
        self.timeline.append([len(rows), prompt_tokens, core_s, t_s])

    def figures(self) -> dict:
        """The pass's figures without the answers (per rank, per session)."""
        return {
            "questions": int(self.answered.sum()),
            "batches": self.batches,
            "prompt_tokens": self.prompt_tokens,
            "computed_tokens": self.work.tokens,
            "whole_time_s": self.whole_time_s,
            "core_time_s": self.core_time_s,
            "compile_time_s": self.compile_time_s,
            "plan_time_s": self.plan_time_s,
            "torch_peak_allocated_bytes": self.torch_peak_allocated_bytes,
        }


def merge(
    parts: Sequence[PassResult], labels: Sequence[int], *, parallel: bool, tag: str
) -> PassResult:
    """One pass from parts that answered disjoint questions: the ranks of a data-parallel run
    (`parallel`: times are the slowest rank's, as throughput = all tokens / slowest time) or
    the sessions of a resumed run (times add up; each session's timeline follows the ones
    before). `labels` are the parts' rank or session numbers, written under `tag`."""
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]
    out = PassResult.empty(last.name, last.engine, len(last.top_ids))
    total = max if parallel else sum
    offset = 0.0
    for label, p in zip(labels, parts, strict=True):
        rows = np.flatnonzero(p.answered)
        if out.answered[rows].any():
            raise RuntimeError(f"{p.name} pass: a question was answered twice ({tag}s merged)")
        out.top_ids[rows], out.choice_logits[rows] = p.top_ids[rows], p.choice_logits[rows]
        out.logsumexp[rows] = p.logsumexp[rows]
        out.prompt_tokens += p.prompt_tokens
        out.batches += p.batches
        out.work += p.work
        out.timeline += [[*t, label] if parallel else [*t[:3], t[3] + offset] for t in p.timeline]
        offset += p.whole_time_s
        out.oom_backoffs += [{**b, tag: label} for b in p.oom_backoffs]
        out.sample_logits.update(p.sample_logits)
    for key in ("whole_time_s", "core_time_s", "compile_time_s", "plan_time_s"):
        setattr(out, key, total(getattr(p, key) for p in parts))
    peaks = [p.torch_peak_allocated_bytes for p in parts if p.torch_peak_allocated_bytes]
    out.torch_peak_allocated_bytes = max(peaks) if peaks else None
    out.per_rank = (
        [{"rank": r, **p.figures()} for r, p in zip(labels, parts, strict=True)]
        if parallel
        else [r for p in parts for r in p.per_rank]
    )
    return out


def require_complete(p: PassResult, engine_name: str) -> PassResult:
    missing = np.flatnonzero(~p.answered)
    if len(missing):
        raise RuntimeError(f"engine {engine_name} left {len(missing)} question(s) unanswered")
    return p
