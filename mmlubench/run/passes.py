"""One pass over the questions by one engine: plan, warm up, the hot loop (its result and the
merge of its parts: pass_result.py).

Timing follows the reference (see results/metrics.py): a pass's whole time runs from planning to the
last scored batch; its core time sums the engine calls, each between two device
synchronizations, with the host-to-device copy before the first one; planning and
warm-up/compile are timed apart (and stay inside the whole time).

A batch that runs out of device memory is split by its engine and its parts run instead
(`run_batch`). Resumed runs: batches whose questions were all answered in an earlier session
are dropped before the loop; a batch with some answered is computed whole (so it computes
exactly what it would have), and only its new questions are taken.
"""

from __future__ import annotations

import gc
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict

import numpy as np
import torch

from mmlubench.data.scoring import reduce_logits
from mmlubench.device.device import Device
from mmlubench.engines.base import Batch, Engine, Request
from mmlubench.errors import RunError
from mmlubench.results import logit_sample
from mmlubench.run.backoff import back_off, out_of_memory
from mmlubench.run.pass_result import PassResult, Record, no_record

log = logging.getLogger("mmlubench")


def run_batch(
    name: str,
    engine: Engine,
    device: Device,
    batch: Batch,
    done: np.ndarray,
    labels: Sequence[str],
    attempts: Iterator[int],
    on_backoff: Callable[[dict], None],
) -> Iterator[tuple[Batch, torch.Tensor, float]]:
    """Load and run `batch`: yields (batch, last-position logits, core seconds). If it runs
    out of device memory it is split (`back_off`) and its parts run instead, in order; a part
    whose questions are all `done` is skipped."""
    queue = [batch]  # a stack: the parts of a split batch run next
    while queue:
        b = queue.pop()
        if done[b.rows].all():  # a part of a split batch answered in an earlier session
            continue
        attempt = next(attempts)
        try:
            inputs = engine.load(b)
            device.synchronize()
            t = time.perf_counter()
            logits = engine.forward(inputs)
            device.synchronize()
            core_s = time.perf_counter() - t
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            if not out_of_memory(error):
                raise
            failed = True
        else:
            failed = False
        inputs = None
        if not failed:
            yield b, logits, core_s
            continue
        # Out of the except block: its traceback no longer holds the batch's activations.
        gc.collect()
        device.empty_cache()
        parts = back_off(name, engine, b, labels)
        on_backoff(
            {
                "attempt": attempt,
                "questions": len(b.rows),
                "prompt_tokens": b.prompt_tokens,
                "first_question": labels[b.rows[0]],
                "split_into": [len(p.rows) for p in parts],
            }
        )
        queue.extend(parts[::-1])


def warm_up(
    name: str, engine: Engine, batches: Sequence[Batch], say: bool, device: Device | None = None
) -> float:
    """Compile and warm the engine up on `batches`; seconds taken (a line before and after on
    stderr when `say`: on a GPU the reference method compiles for minutes). `device`: the
    engine's (None: `Device.of(engine.device)`)."""
    if getattr(type(getattr(engine, "inner", engine)), "warmup", None) is Engine.warmup:
        return 0.0  # eager, null: nothing to compile or warm up (no "compiled in 0.0 s")
    if say:
        print(f"{name}: compiling/warming up {engine.name} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    try:
        engine.warmup(batches)
    except RuntimeError as error:
        if not out_of_memory(error):
            raise
        raise RunError(
            f"{name} pass: out of device memory during the warm-up/compile of "
            f"engine {engine.name}: lower its batch or pack size"
        ) from None
    (device or Device.of(engine.device)).synchronize()
    seconds = time.perf_counter() - t
    if say:
        print(
            f"{name}: {engine.name} compiled/warmed up in {seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return seconds


def pending(batches: Sequence[Batch], done: np.ndarray) -> list[Batch]:
    """The batches that still have a question to answer."""
    return [b for b in batches if not done[b.rows].all()]


def run_pass(
    name: str,
    engine: Engine,
    requests: Sequence[Request],
    choice_ids: Sequence[int],
    labels: Sequence[str] | None = None,
    *,
    done: np.ndarray | None = None,
    progress: bool = True,
    share: Callable[[list[Batch]], list[Batch]] | None = None,
    record: Record = no_record,
    sample: np.ndarray | None = None,
    device: Device | None = None,
) -> PassResult:
    """Run the `requests` not yet `done` through `engine`: plan, warm up, then per batch
    load, sync, forward, sync, reduce, record. `share` picks this rank's batches (data
    parallel); `record` gets each event for the resume log. The result answers the questions
    this call computed (top id -1 elsewhere). `labels` name the questions in errors; the
    `sample` questions' whole logits are kept in `sample_logits` (results/logit_sample.py);
    `device`: the run's (None: `Device.of(engine.device)`, without a vendor plug-in)."""
    from mmlubench.run.progress import Progress

    labels = labels or [str(i) for i in range(len(requests))]
    device = Device.of(engine.device) if device is None else device
    device.reset_peak_memory()
    done = np.zeros(len(requests), dtype=bool) if done is None else done.copy()
    t_start = time.perf_counter()
    with torch.inference_mode():
        out, todo = _start(name, engine, device, requests, done, share, record, progress, t_start)
        todo_tokens = sum(_new_tokens(b, done, requests) for b in todo)
        bar = Progress(name, engine.name, todo_tokens, progress)

        def backoff(info: dict) -> None:
            out.oom_backoffs.append(info)
            record("oom_backoff", backoff=info, t_s=time.perf_counter() - t_start)

        attempts = itertools.count()
        for batch in todo:
            for part, logits, core_s in run_batch(
                name, engine, device, batch, done, labels, attempts, backoff
            ):
                rows, top, choice, lse = _reduce(
                    name, engine, part, logits, choice_ids, labels, done
                )
                logit_sample.keep(out.sample_logits, sample, np.asarray(part.rows), logits)
                tokens = _new_tokens(part, done, requests)
                done[rows] = True
                t_s = time.perf_counter() - t_start
                out.add(rows, top, choice, tokens, part.work, core_s, t_s, lse)
                _record_batch(record, rows, top, choice, lse, tokens, part, core_s, t_s)
                bar.update(tokens, out.prompt_tokens, out.core_time_s)
        bar.close()
    return _end(out, device, record, t_start)


def _start(
    name: str,
    engine: Engine,
    device: Device,
    requests: Sequence[Request],
    done: np.ndarray,
    share: Callable[[list[Batch]], list[Batch]] | None,
    record: Record,
    progress: bool,
    t_start: float,
) -> tuple[PassResult, list[Batch]]:
    """Plan, take this rank's batches that still have a question to answer, warm up: the
    pass's empty result (plan and compile seconds set) and the batches to run."""
    planned = engine.plan(requests)
    plan_s = time.perf_counter() - t_start
    todo = pending(share(planned) if share else planned, done)
    compile_s = warm_up(name, engine, todo, progress, device)
    out = PassResult.empty(name, engine.describe(), len(requests))
    out.plan_time_s, out.compile_time_s = plan_s, compile_s
    record(
        "pass_start",
        engine=out.engine,
        planned_batches=len(planned),
        todo_batches=len(todo),
        plan_time_s=plan_s,
        compile_time_s=compile_s,
        t_s=time.perf_counter() - t_start,
    )
    return out, todo


def _record_batch(
    record: Record,
    rows: np.ndarray,
    top: np.ndarray,
    choice: np.ndarray,
    lse: np.ndarray,
    tokens: int,
    part: Batch,
    core_s: float,
    t_s: float,
) -> None:
    """The resume log's record of one scored batch (resume.py reads it back)."""
    record(
        "batch",
        rows=rows.tolist(),
        top_ids=top.tolist(),
        choice_logits=choice.tolist(),
        logsumexp=lse.tolist(),
        prompt_tokens=tokens,
        work=asdict(part.work),
        core_time_s=core_s,
        t_s=t_s,
    )


def _end(out: PassResult, device: Device, record: Record, t_start: float) -> PassResult:
    """The pass's whole time and torch's peak memory, recorded."""
    out.whole_time_s = time.perf_counter() - t_start
    out.torch_peak_allocated_bytes = device.peak_allocated_bytes()
    record(
        "pass_end",
        whole_time_s=out.whole_time_s,
        torch_peak_allocated_bytes=out.torch_peak_allocated_bytes,
        t_s=out.whole_time_s,
    )
    return out


def _new_tokens(batch: Batch, done: np.ndarray, requests: Sequence[Request]) -> int:
    """Prompt tokens of the batch's questions not yet answered."""
    new = [i for i in batch.rows if not done[i]]
    return (
        batch.prompt_tokens
        if len(new) == len(batch.rows)
        else sum(len(requests[i].ids) for i in new)
    )


def _reduce(
    name: str,
    engine: Engine,
    batch: Batch,
    logits: torch.Tensor,
    choice_ids: Sequence[int],
    labels: Sequence[str],
    done: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch's new rows, their top ids, choice logits and logsumexp; non-finite logits
    are an error naming the questions."""
    if logits.shape[0] != len(batch.rows):
        raise RuntimeError(
            f"engine {engine.name} returned {logits.shape[0]} rows for a batch of {len(batch.rows)}"
        )
    reduced = reduce_logits(logits, choice_ids)
    if not bool(reduced.finite.all()):
        bad = [labels[batch.rows[i]] for i in np.flatnonzero(~reduced.finite.numpy())]
        raise RunError(
            f"{name} pass: non-finite logits (NaN/Inf) from engine "
            f"{engine.name} for {len(bad)} question(s): {', '.join(bad[:20])}"
        )
    rows = np.asarray(batch.rows)
    new = ~done[rows]
    return (
        rows[new],
        reduced.top_ids.numpy()[new],
        reduced.choice_logits.numpy()[new],
        reduced.logsumexp.numpy()[new],
    )
