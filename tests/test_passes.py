"""pass_result.merge: one merge for the ranks of a data-parallel run and the sessions of a
resumed run; faults.wrap: the test hooks wrap the engine only when their variable names the pass."""

from __future__ import annotations

import numpy as np
import pytest

from mmlubench.engines.base import Work
from mmlubench.run import faults
from mmlubench.run.pass_result import PassResult, merge, require_complete


def part(rows: list[int], whole: float, core: float, compile_: float, n: int = 4) -> PassResult:
    p = PassResult.empty("infer", {"name": "eager", "options": {}}, n)
    for k, r in enumerate(rows):
        p.add(
            np.array([r]),
            np.array([10 + r]),
            np.full((1, 4), float(r)),
            100 + r,
            Work(tokens=100 + r, logit_rows=1, padded_tokens=100 + r),
            core / len(rows),
            (k + 1) * whole / len(rows),
        )
    p.whole_time_s, p.compile_time_s, p.plan_time_s = whole, compile_, 0.5
    p.oom_backoffs = [{"attempt": 0}] if rows == [0, 2] else []
    return p


def test_ranks_take_the_slowest_time_and_sessions_add_up():
    a, b = (
        part([0, 2], whole=4.0, core=2.0, compile_=1.0),
        part([1, 3], whole=6.0, core=1.0, compile_=3.0),
    )
    ranks = require_complete(merge([a, b], [0, 1], parallel=True, tag="rank"), "eager")
    assert ranks.top_ids.tolist() == [10, 11, 12, 13]
    assert ranks.choice_logits[:, 0].tolist() == [0, 1, 2, 3]
    assert ranks.prompt_tokens == 406 and ranks.work.tokens == 406 and ranks.batches == 4
    assert (ranks.whole_time_s, ranks.core_time_s, ranks.compile_time_s) == (6.0, 2.0, 3.0)
    assert [t[4] for t in ranks.timeline] == [0, 0, 1, 1]  # each batch names its rank
    assert ranks.oom_backoffs == [{"attempt": 0, "rank": 0}]
    assert [r["rank"] for r in ranks.per_rank] == [0, 1]
    assert [r["questions"] for r in ranks.per_rank] == [2, 2]

    sessions = merge([a, b], [0, 1], parallel=False, tag="session")
    assert (
        sessions.whole_time_s,
        sessions.core_time_s,
        sessions.compile_time_s,
        sessions.plan_time_s,
    ) == (10.0, 3.0, 4.0, 1.0)
    # One timeline: the second session's seconds follow the first session's whole time.
    assert [t[3] for t in sessions.timeline] == [2.0, 4.0, 4.0 + 3.0, 4.0 + 6.0]
    assert sessions.oom_backoffs == [{"attempt": 0, "session": 0}] and sessions.per_rank == []


def test_a_question_answered_twice_or_left_out_is_a_bug():
    with pytest.raises(RuntimeError, match="answered twice"):
        merge([part([0, 1], 1, 1, 0), part([1, 2], 1, 1, 0)], [0, 1], parallel=True, tag="rank")
    with pytest.raises(RuntimeError, match="left 2 question"):
        require_complete(part([0, 2], 1, 1, 0), "eager")
    single = part([0, 2], 1, 1, 0)
    assert merge([single], [0], parallel=True, tag="rank") is single


def test_fault_hooks_wrap_only_the_pass_they_name(monkeypatch):
    engine = object()
    monkeypatch.delenv(faults.OOM, raising=False)
    monkeypatch.delenv(faults.KILL, raising=False)
    assert faults.wrap(engine, "infer") is engine
    monkeypatch.setenv(faults.OOM, "val:1")
    assert faults.wrap(engine, "infer") is engine
    wrapped = faults.wrap(engine, "val")
    assert isinstance(wrapped, faults.FaultyEngine) and wrapped.oom == {1}
    monkeypatch.setenv(faults.KILL, "val:x")
    with pytest.raises(faults.RunError, match="MMLUBENCH_INJECT_KILL: expected PASS:BATCH"):
        faults.wrap(engine, "val")
