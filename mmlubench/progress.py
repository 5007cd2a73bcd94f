"""The run's progress log, so that a run killed halfway can go on (`mmlubench run --resume`).

A run folder holds, from the start of the run:
- config.yaml       the validated config (the base config of `--resume`);
- fingerprint.json  hashes of the config, the prompt token ids and the model (fingerprint.py);
- progress.jsonl    one JSON line per event, appended, flushed and fsynced before the run goes on:
    session      a process started (or resumed) the run
    pass_start   a pass planned its batches and warmed up (engine, compile seconds)
    batch        a batch finished: the rows it answered with their top ids and choice logits,
                 their prompt tokens, the work and the core seconds of the batch
    oom_backoff  a batch ran out of device memory and was split
    pass_end     a pass finished (whole seconds, torch peak memory)
  Every line carries its session number, `t_s` (seconds since its pass started, where it
  belongs to a pass) and `e2e_s` (seconds since its session's command started). A line torn
  by a crash (no final newline) is dropped when resuming; a question is recorded once.

Timings of a resumed run (also written into result.json under "resume"): a pass's core time
is the sum of the core times recorded for its batches in every session; its whole and compile
times, and the run's e2e time, are sums over the sessions, where a session that ended without a
result counts up to its last record (work after it was lost, and redone in a later session).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from mmlubench import fingerprint
from mmlubench.engines.base import Work
from mmlubench.errors import RunError
from mmlubench.results import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from mmlubench.config import Config
    from mmlubench.runner import PassResult

CONFIG = "config.yaml"
FINGERPRINT = "fingerprint.json"
PROGRESS = "progress.jsonl"
TIMING_RULE = (
    "core_time_s of a pass = sum of the core times recorded for its batches in all sessions; "
    "whole_time_s, compile_time_s and e2e_time_s = sums over the sessions, where a session "
    "that ended without a result counts up to its last record in progress.jsonl (work after "
    "it was lost and redone later); memory figures and timings.* are the last session's"
)


# The keys each kind of record must have (besides kind, session and e2e_s).
FIELDS = {
    "session": ("started",),
    "pass_start": ("pass", "engine", "compile_s", "t_s"),
    "batch": ("pass", "rows", "top_ids", "choice_logits", "prompt_tokens", "work", "core_s",
              "t_s"),
    "oom_backoff": ("pass", "backoff", "t_s"),
    "pass_end": ("pass", "whole_s", "t_s"),
}


def resume_config_path(run_dir: str | Path) -> Path:
    """RUN_DIR/config.yaml, the base config of a resumed run; errors name the folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder to resume")
    if (run_dir / "result.json").is_file():
        raise RunError(f"{run_dir}: this run is finished (result.json exists); "
                       "nothing to resume")
    path = run_dir / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir}: not a resumable run folder (no {CONFIG})")
    return path


def write_run_files(run_dir: Path, cfg: Config, fp: dict) -> None:
    """config.yaml (the validated config) and fingerprint.json of a new run."""
    write_text_atomic(Path(run_dir) / CONFIG,
                      lambda f: yaml.safe_dump(cfg.to_dict(), f, sort_keys=False))
    write_json_atomic(Path(run_dir) / FINGERPRINT, fp)


def read_records(path: Path) -> list[dict]:
    """The complete lines of progress.jsonl. A torn last line (a crash while writing it) is
    cut off the file, so that appending starts on a fresh line."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    records = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{path}:{n}: corrupt progress record: {e}") from None
        need = ("kind", "session", "e2e_s", *FIELDS.get(
            rec.get("kind") if isinstance(rec, dict) else None, ("?",)))
        if not isinstance(rec, dict) or any(k not in rec for k in need):
            raise RunError(f"{path}:{n}: corrupt progress record: expected an event with "
                           f"{', '.join(need)}")
        records.append(rec)
    return records


class ProgressLog:
    """progress.jsonl open for appending, and the records of the sessions before this one."""

    def __init__(self, run_dir: Path, records: list[dict], e2e_start: float):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / PROGRESS
        self.earlier = records
        self.session = 1 + max((r["session"] for r in records), default=-1)
        self.e2e_start = e2e_start
        self.current: dict[str, dict] = {}  # this session's figures of each pass
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self.write({"kind": "session", "started": self.started, "pid": os.getpid()})

    @classmethod
    def start(cls, run_dir: Path, cfg: Config, fp: dict, e2e_start: float) -> ProgressLog:
        """A new run: write config.yaml and fingerprint.json, open an empty log."""
        write_run_files(run_dir, cfg, fp)
        return cls(run_dir, [], e2e_start)

    @classmethod
    def resume(cls, run_dir: Path, fp: dict, e2e_start: float) -> ProgressLog:
        """Go on with an interrupted run, if its fingerprint matches `fp` (else RunError)."""
        path = Path(run_dir) / FINGERPRINT
        try:
            then = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(then, dict) or not isinstance(then.get("world_size", 1), int):
                raise ValueError("not a fingerprint document")
        except (OSError, ValueError) as e:
            raise RunError(f"{path}: cannot read the run's fingerprint: {e}") from None
        if then.get("world_size", 1) > 1:
            raise RunError(f"{run_dir}: this run was data parallel ({then['world_size']} "
                           "ranks); data-parallel runs keep no progress and cannot be resumed")
        try:
            why = fingerprint.differences(then, fp)
        except (KeyError, TypeError, AttributeError) as e:
            raise RunError(f"{path}: not a fingerprint document ({type(e).__name__}: {e})"
                           ) from None
        if why:
            raise RunError(f"{run_dir}: cannot resume, this is not the same run: "
                           + " | ".join(why) + " (start a new run instead)")
        return cls(run_dir, read_records(Path(run_dir) / PROGRESS), e2e_start)

    @property
    def resumed(self) -> bool:
        return self.session > 0

    def write(self, record: dict) -> None:
        rec = {"session": self.session, **record,
               "e2e_s": round(time.perf_counter() - self.e2e_start, 6)}
        self._file.write(json.dumps(rec, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())  # on disk before the next batch starts

    def recorder(self, pass_name: str) -> Callable[[dict], None]:
        """The `on_record` hook of run_pass for one pass."""
        return lambda record: self.write({"pass": pass_name, **record})

    def close(self) -> None:
        self._file.close()

    def _of(self, pass_name: str, kind: str) -> list[dict]:
        return [r for r in self.earlier if r.get("pass") == pass_name and r["kind"] == kind]

    def answered(self, pass_name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ids (-1: not answered yet) and choice logits that earlier sessions recorded."""
        top = np.full(n, -1, dtype=np.int64)
        choice = np.full((n, 4), np.nan, dtype=np.float32)
        for r in self._of(pass_name, "batch"):
            try:
                rows = np.asarray(r["rows"], dtype=np.int64).reshape(-1)
                ids = np.asarray(r["top_ids"], dtype=np.int64)
                logits = np.asarray(r["choice_logits"], dtype=np.float32)
                ok = ids.shape == rows.shape and logits.shape == (len(rows), 4) and (
                    not len(rows) or (rows.min() >= 0 and rows.max() < n
                                      and not (top[rows] >= 0).any()))
                if ok:
                    top[rows] = ids
                    choice[rows] = logits
            except (TypeError, ValueError):  # wrong types or lengths
                ok = False
            if not ok:
                raise RunError(f"{self.path}: corrupt progress: a {pass_name} batch of session "
                               f"{r['session']} records a row twice, out of range, or "
                               "answers that do not match its rows")
        return top, choice

    def _sessions(self, pass_name: str) -> list[dict]:
        """Each earlier session's figures of one pass, in session order."""
        out = []
        for s in sorted({r["session"] for r in self.earlier if r.get("pass") == pass_name}):
            recs = [r for r in self.earlier if r.get("pass") == pass_name and r["session"] == s]
            batches = [r for r in recs if r["kind"] == "batch"]
            starts = [r for r in recs if r["kind"] == "pass_start"]
            ends = [r for r in recs if r["kind"] == "pass_end"]
            work = Work()
            for b in batches:
                work += Work(*b["work"])
            out.append({
                "session": s,
                "engine": starts[-1]["engine"] if starts else None,
                "questions": sum(len(b["rows"]) for b in batches),
                "prompt_tokens": sum(b["prompt_tokens"] for b in batches),
                "batches": len(batches),
                "core_time_s": sum(b["core_s"] for b in batches),
                "compile_time_s": sum(r["compile_s"] for r in starts),
                "whole_time_s": ends[-1]["whole_s"] if ends
                else max(r.get("t_s", 0.0) for r in recs),
                "work": work,
                "timeline": [[len(b["rows"]), b["prompt_tokens"], b["core_s"], b["t_s"]]
                             for b in batches],
                "oom_backoffs": [{**r["backoff"], "session": s}
                                 for r in recs if r["kind"] == "oom_backoff"],
                "peak": ends[-1].get("torch_peak_allocated_bytes") if ends else None,
            })
        return out

    def combine(self, pass_name: str, current: PassResult | None,
                answered: tuple[np.ndarray, np.ndarray] | None) -> PassResult:
        """One PassResult for the whole pass: earlier sessions' records plus this session's
        `current` (None when earlier sessions answered every question of the pass)."""
        from mmlubench.runner import PassResult

        before = int((answered[0] >= 0).sum()) if answered is not None else 0
        if current is not None:
            self.current[pass_name] = {
                "questions": int((current.top_ids >= 0).sum()) - before,
                "batches": current.batches, "core_time_s": current.core_s,
                "whole_time_s": current.whole_s, "compile_time_s": current.compile_s}
        earlier = self._sessions(pass_name)
        if not earlier:
            assert current is not None
            if self.resumed:
                for b in current.backoffs:
                    b["session"] = self.session
            return current
        parts = [*earlier]
        if current is not None:
            parts.append({
                "session": self.session, "engine": current.engine,
                "prompt_tokens": current.prompt_tokens, "batches": current.batches,
                "core_time_s": current.core_s, "compile_time_s": current.compile_s,
                "whole_time_s": current.whole_s, "work": current.work,
                "timeline": current.timeline,
                "oom_backoffs": [{**b, "session": self.session} for b in current.backoffs],
                "peak": current.torch_peak_allocated_bytes})
        work, timeline, offset = Work(), [], 0.0
        for p in parts:
            work += p["work"]
            # One timeline for the pass: each session's seconds follow the sessions before it.
            timeline += [[*t[:3], t[3] + offset] for t in p["timeline"]]
            offset += p["whole_time_s"]
        peaks = [p["peak"] for p in parts if p["peak"] is not None]
        top, choice = (current.top_ids, current.choice_logits) if current is not None \
            else answered
        engine = next((p["engine"] for p in reversed(parts) if p["engine"]), {})
        return PassResult(
            name=pass_name,
            engine=engine,
            prompt_tokens=sum(p["prompt_tokens"] for p in parts),
            whole_s=sum(p["whole_time_s"] for p in parts),
            core_s=sum(p["core_time_s"] for p in parts),
            compile_s=sum(p["compile_time_s"] for p in parts),
            work=work,
            batches=sum(p["batches"] for p in parts),
            top_ids=top,
            choice_logits=choice,
            timeline=timeline,
            torch_peak_allocated_bytes=max(peaks) if peaks else None,
            backoffs=[b for p in parts for b in p["oom_backoffs"]],
        )

    def summary(self, e2e_s: float) -> tuple[dict | None, float]:
        """The "resume" section of result.json (None for a run done in one session) and the
        run's e2e time over all sessions."""
        if not self.resumed:
            return None, e2e_s
        sessions = []
        for s in sorted({r["session"] for r in self.earlier}):
            recs = [r for r in self.earlier if r["session"] == s]
            start = next((r for r in recs if r["kind"] == "session"), {})
            passes = {}
            for name in dict.fromkeys(r["pass"] for r in recs if "pass" in r):
                (fig,) = [x for x in self._sessions(name) if x["session"] == s]
                passes[name] = {k: fig[k] for k in ("questions", "batches", "core_time_s",
                                                    "whole_time_s", "compile_time_s")}
            sessions.append({"session": s, "started": start.get("started"),
                             "completed": False, "e2e_time_s": max(r["e2e_s"] for r in recs),
                             "passes": passes})
        sessions.append({"session": self.session, "started": self.started, "completed": True,
                         "e2e_time_s": e2e_s, "passes": self.current})
        total = sum(s["e2e_time_s"] for s in sessions)
        return {"resumed": True, "sessions": sessions, "timing_rule": TIMING_RULE}, total

