"""Resume: the run's event log, and how the sessions of a run combine.

A run folder (rundir.py) holds, from the start of a single-process run:
- fingerprint.json  hashes of what the run computes (fingerprint.py), checked before resuming;
- progress.jsonl    one JSON line per event, appended, flushed and fsynced before the run goes on:
    session      a process started (or resumed) the run
    pass_start   a pass planned its batches and warmed up (engine, plan and compile seconds)
    batch        a batch finished: the rows it answered, their top ids and choice logits, their
                 prompt tokens, the work and the core seconds of the batch
    oom_backoff  a batch ran out of device memory and was split
    pass_end     a pass finished (whole seconds, torch peak memory)
  Every line carries its session number, `t_s` (seconds since its pass started, where it
  belongs to a pass) and `e2e_s` (seconds since its session's command started). A line torn
  by a crash (no final newline) is dropped when resuming; a question is recorded once.

Each earlier session's records of a pass become one PassResult; the pass is those and this
session's, joined by pass_result.merge (the merge of data-parallel ranks, with times added up).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

from mmlubench import safefile
from mmlubench.engines.base import Work
from mmlubench.errors import RunError
from mmlubench.run.fingerprint import differences
from mmlubench.run.pass_result import PassResult, Record, merge, no_record
from mmlubench.run.progress_check import Limits, check_record
from mmlubench.run.rundir import FINGERPRINT, PROGRESS

TIMING_RULE = (
    "core_time_s of a pass = sum of the core times recorded for its batches in all sessions; "
    "whole_time_s, compile_time_s, plan_time_s and e2e_time_s = sums over the sessions, where "
    "a session that ended without a result counts up to its last record in progress.jsonl "
    "(work after it was lost and redone later); memory figures and timings.* are the last "
    "session's"
)
# The keys each kind of record must have (besides kind, session and e2e_s).
FIELDS = {
    "session": ("started",),
    "pass_start": ("pass", "engine", "compile_time_s", "t_s"),
    "batch": (
        "pass",
        "rows",
        "top_ids",
        "choice_logits",
        "prompt_tokens",
        "work",
        "core_time_s",
        "t_s",
    ),
    "oom_backoff": ("pass", "backoff", "t_s"),
    "pass_end": ("pass", "whole_time_s", "t_s"),
}


def read_records(path: Path, lim: Limits) -> list[dict]:
    """The complete lines of progress.jsonl, each checked (progress_check.py). A torn last line
    (a crash while writing it) is cut off the file, so that appending starts on a fresh line."""
    safefile.refuse_link(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        fd = safefile.open_fd(path, "r+")
        os.ftruncate(fd, end)
        os.close(fd)
    records = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:  # ValueError: also a 5000-digit number
            raise RunError(f"{path}:{n}: corrupt progress record: {str(e)[:200]}") from None
        check_record(rec, f"{path}:{n}", lim)
        records.append(rec)
    return records


class NoLog:
    """The log of a run that keeps none (data-parallel runs): records and remembers nothing."""

    session = 0

    def recorder(self, pass_name: str) -> Record:
        return no_record

    def earlier(self, pass_name: str) -> list[tuple[int, PassResult]]:
        """(session, what it answered) of each earlier session that ran the pass."""
        return []

    def combine(self, earlier: list[tuple[int, PassResult]], now: PassResult | None) -> PassResult:
        """The whole pass: the earlier sessions' parts and this session's `now` (None when
        the earlier sessions answered every question)."""
        parts = [*earlier, *([(self.session, now)] if now is not None else [])]
        return merge([p for _, p in parts], [s for s, _ in parts], parallel=False, tag="session")

    def summary(self, e2e_s: float) -> tuple[dict | None, float]:
        """The "resume" section of result.json (None: the run was done in one session) and
        the run's e2e time over all sessions."""
        return None, e2e_s

    def close(self) -> None:
        pass


class RunLog(NoLog):
    """progress.jsonl open for appending, and the records of the sessions before this one."""

    def __init__(
        self, run_dir: Path, questions: int, e2e_start: float, records: list[dict] | None = None
    ):
        self.path = Path(run_dir) / PROGRESS
        self.questions = questions
        self.records = records or []
        self.session = 1 + max((r["session"] for r in self.records), default=-1)
        self.e2e_start = e2e_start
        self.current: dict[str, dict] = {}  # this session's figures of each pass
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._file = safefile.open_file(self.path, "a")  # kept open; never through a link
        self._write({"kind": "session", "started": self.started, "pid": os.getpid()})

    @classmethod
    def resume(cls, run_dir: Path, fp: dict, e2e_start: float, vocab: int) -> RunLog:
        """Go on with an interrupted run, if its fingerprint matches `fp` (else RunError)."""
        path = Path(run_dir) / FINGERPRINT
        try:
            then = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(then, dict) or not isinstance(then.get("world_size", 1), int):
                raise ValueError("not a fingerprint document")
        except (OSError, ValueError) as e:
            raise RunError(f"{path}: cannot read the run's fingerprint: {e}") from None
        if then.get("world_size", 1) > 1:
            raise RunError(
                f"{run_dir}: this run was data parallel ({then['world_size']} "
                "ranks); data-parallel runs keep no progress and cannot be resumed"
            )
        try:
            why = differences(then, fp)
        except (KeyError, TypeError, AttributeError) as e:
            raise RunError(
                f"{path}: not a fingerprint document ({type(e).__name__}: {e})"
            ) from None
        if why:
            raise RunError(
                f"{run_dir}: cannot resume, this is not the same run: "
                + " | ".join(why)
                + " (start a new run instead)"
            )
        records = read_records(Path(run_dir) / PROGRESS, Limits(fp["questions"], vocab))
        return cls(run_dir, fp["questions"], e2e_start, records)

    def _write(self, record: dict) -> None:
        rec = {
            "session": self.session,
            **record,
            "e2e_s": round(time.perf_counter() - self.e2e_start, 6),
        }
        try:
            self._file.write(json.dumps(rec, allow_nan=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())  # on disk before the next batch starts
        except OSError as e:  # a full disk: one line (what was recorded before is kept)
            raise safefile.output_error(self.path, e, "record progress") from None

    def recorder(self, pass_name: str) -> Record:
        """The `record` hook of passes.run_pass for one pass."""
        return lambda kind, **fields: self._write({"kind": kind, "pass": pass_name, **fields})

    def _session_pass(self, pass_name: str, session: int) -> PassResult:
        recs = [r for r in self.records if r.get("pass") == pass_name and r["session"] == session]
        of = {kind: [r for r in recs if r["kind"] == kind] for kind in FIELDS}
        starts, ends = of["pass_start"], of["pass_end"]
        p = PassResult.empty(pass_name, starts[-1]["engine"] if starts else {}, self.questions)
        for r in of["batch"]:
            try:
                rows = np.asarray(r["rows"], dtype=np.int64).reshape(-1)
                ids = np.asarray(r["top_ids"], dtype=np.int64)
                logits = np.asarray(r["choice_logits"], dtype=np.float32)
                ok = (
                    ids.shape == rows.shape
                    and logits.shape == (len(rows), 4)
                    and (
                        not len(rows)
                        or (
                            rows.min() >= 0
                            and rows.max() < self.questions
                            and not p.answered[rows].any()
                        )
                    )
                )
                if ok:
                    lse = r.get("logsumexp")  # older logs: none (log-likelihoods null)
                    p.add(
                        rows,
                        ids,
                        logits,
                        r["prompt_tokens"],
                        Work(**r["work"]),
                        r["core_time_s"],
                        r["t_s"],
                        None if lse is None else np.asarray(lse, dtype=np.float32),
                    )
            except (TypeError, ValueError):  # wrong types or lengths
                ok = False
            if not ok:
                raise RunError(
                    f"{self.path}: corrupt progress: a {pass_name} batch of session "
                    f"{session} records a row twice, out of range, or answers that "
                    "do not match its rows"
                )
        p.compile_time_s = sum(r["compile_time_s"] for r in starts)
        p.plan_time_s = sum(r.get("plan_time_s", 0.0) for r in starts)
        p.whole_time_s = ends[-1]["whole_time_s"] if ends else max(r["t_s"] for r in recs)
        p.torch_peak_allocated_bytes = ends[-1].get("torch_peak_allocated_bytes") if ends else None
        p.oom_backoffs = [r["backoff"] for r in recs if r["kind"] == "oom_backoff"]
        return p

    def earlier(self, pass_name: str) -> list[tuple[int, PassResult]]:
        sessions = sorted({r["session"] for r in self.records if r.get("pass") == pass_name})
        out = [(s, self._session_pass(pass_name, s)) for s in sessions]
        seen = np.zeros(self.questions, dtype=bool)
        for s, p in out:
            if (seen & p.answered).any():
                raise RunError(
                    f"{self.path}: corrupt progress: session {s} answers a "
                    f"{pass_name} question that an earlier session answered"
                )
            seen |= p.answered
        return out

    def combine(self, earlier: list[tuple[int, PassResult]], now: PassResult | None) -> PassResult:
        if now is not None:
            self.current[now.name] = now.figures()
        return super().combine(earlier, now)

    def summary(self, e2e_s: float) -> tuple[dict | None, float]:
        if self.session == 0:
            return None, e2e_s
        sessions = []
        for s in sorted({r["session"] for r in self.records}):
            recs = [r for r in self.records if r["session"] == s]
            start = next((r for r in recs if r["kind"] == "session"), {})
            passes = {
                name: self._session_pass(name, s).figures()
                for name in dict.fromkeys(r["pass"] for r in recs if "pass" in r)
            }
            sessions.append(
                {
                    "session": s,
                    "started": start.get("started"),
                    "completed": False,
                    "e2e_time_s": max(r["e2e_s"] for r in recs),
                    "passes": passes,
                }
            )
        sessions.append(
            {
                "session": self.session,
                "started": self.started,
                "completed": True,
                "e2e_time_s": e2e_s,
                "passes": self.current,
            }
        )
        total = sum(s["e2e_time_s"] for s in sessions)
        return {"resumed": True, "sessions": sessions, "timing_rule": TIMING_RULE}, total

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a full disk: the failed write said so already
            self._file.close()
