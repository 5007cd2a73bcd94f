"""The case: tokenize, load the model, run the val and infer passes, time them, write results.

Timing follows the reference (see metrics.py): a pass's whole time runs from planning to the last
scored batch; core time sums the engine calls, each between two device synchronizations, with the
host-to-device copy before the first one; warm-up/compile is timed apart.

Runs survive (single process): every answered batch is appended to the run folder's
progress.jsonl, so `run --resume` goes on where a killed run stopped (progress.py); a batch that
runs out of device memory is split by its engine and retried (`back_off`).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlubench import accel, environment, faults, fingerprint, results
from mmlubench.config import Config, parse_flops_per_token
from mmlubench.data import load_mmlu
from mmlubench.distributed import Dist, agree, all_gather, deal, init_from_env, shutdown
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Batch, Engine, Request, Work
from mmlubench.errors import RunError
from mmlubench.memory import MemorySampler
from mmlubench.metrics import ModelShape, work_flops
from mmlubench.model import load_model
from mmlubench.progress import ProgressLog, resume_config_path, write_run_files
from mmlubench.prompts import build_prompts, choice_token_ids, load_tokenizer
from mmlubench.results import write_json_atomic
from mmlubench.scoring import reduce_logits

log = logging.getLogger("mmlubench")


@dataclass
class PassResult:
    """One pass over the questions by one engine. Arrays are in question order."""

    name: str
    engine: dict
    prompt_tokens: int
    whole_s: float
    core_s: float
    compile_s: float
    work: Work
    batches: int
    top_ids: np.ndarray
    choice_logits: np.ndarray
    # One entry per batch: [questions, prompt tokens, core seconds, seconds since pass start].
    timeline: list[list[float]] = field(default_factory=list)
    torch_peak_allocated_bytes: int | None = None
    logits: torch.Tensor | None = None  # [n, vocab] on the host, only when asked for
    per_rank: list[dict] = field(default_factory=list)  # data-parallel runs: each rank's figures
    backoffs: list[dict] = field(default_factory=list)  # batches split after running out of memory


def make_engine(cfg: Config, name: str, model: torch.nn.Module) -> Engine:
    cls = engine_class(name)
    return cls(model, engine_options(name, cfg.engine_options(name), "config"), cfg.device)


def _free_device_memory(device: torch.device) -> None:
    gc.collect()
    accel.empty_cache(device)


def back_off(name: str, engine: Engine, batch: Batch, labels: Sequence[str] | None
             ) -> list[Batch]:
    """The smaller batches to run instead of `batch`, which ran out of device memory.
    A single question that does not fit, or an engine that cannot split, is a RunError."""
    label = [labels[i] if labels else str(i) for i in batch.rows]
    if len(batch.rows) == 1:
        raise RunError(f"{name} pass: question {label[0]} ({batch.prompt_tokens} tokens) does "
                       f"not fit in device memory even alone (engine {engine.name}; "
                       "lower the engine's batch or pack size, or max_seq_len)")
    parts = engine.split(batch)
    if not parts:
        raise RunError(f"{name} pass: out of device memory on a batch of {len(label)} questions "
                       f"({', '.join(label[:5])}{', ...' if len(label) > 5 else ''}), and engine "
                       f"{engine.name} cannot split a batch: lower its batch size")
    if sorted(r for p in parts for r in p.rows) != sorted(batch.rows) or \
            max(len(p.rows) for p in parts) >= len(batch.rows):
        raise RuntimeError(f"engine {engine.name} split a batch into parts that do not hold "
                           "exactly its rows in smaller batches")
    log.warning("%s pass: out of device memory on a batch of %d questions (%s ...); retrying "
                "it as %d smaller batches", name, len(label), label[0], len(parts))
    return parts


def run_pass(
    name: str,
    engine: Engine,
    requests: Sequence[Request],
    choice_ids: Sequence[int],
    labels: Sequence[str] | None = None,
    progress: bool = True,
    keep_logits: bool = False,
    on_record: Callable[[dict], None] | None = None,
    select: Callable[[Sequence[Batch]], Sequence[int]] | None = None,
    answered: tuple[np.ndarray, np.ndarray] | None = None,
) -> PassResult:
    """Run every request through `engine`; return predictions and timings.

    `select` picks which of the planned batches this process runs (data parallelism: each
    rank plans all batches, runs its share); unselected rows keep top id -1.
    `answered` = (top ids, choice logits) of questions answered in an earlier session (top id
    -1: not yet): batches are planned as in an uninterrupted run, so every batch computes
    what it would have; a batch whose rows are all answered is skipped, a batch with some
    rows answered is computed whole and only its new rows are taken (and recorded).
    `on_record` gets one event dict after warm-up, per batch, per back-off and at the end
    (the progress log's records; see progress.py).
    """
    from tqdm import tqdm

    device = engine.device
    accel.reset_peak_memory(device)
    n = len(requests)
    if answered is None:
        top_ids = np.full(n, -1, dtype=np.int64)
        choice = np.full((n, 4), np.nan, dtype=np.float32)
    else:
        if keep_logits:
            raise ValueError("keep_logits cannot recover the logits of earlier sessions")
        top_ids, choice = answered[0].copy(), answered[1].copy()
    done = top_ids >= 0
    inject_oom = faults.attempts(faults.OOM, name)
    inject_kill = faults.attempts(faults.KILL, name)
    kept = None
    t_start = time.perf_counter()
    with torch.inference_mode():
        batches = engine.plan(requests)
        if select is not None:
            batches = [batches[i] for i in select(batches)]
        mine = np.zeros(n, dtype=bool)
        for b in batches:
            mine[b.rows] = True
        todo = [b for b in batches if not done[b.rows].all()]
        total_tokens = sum(b.prompt_tokens if not done[b.rows].any() else
                           sum(len(requests[i].ids) for i in b.rows if not done[i])
                           for b in todo)
        t0 = time.perf_counter()
        try:
            engine.warmup(todo)
        except torch.OutOfMemoryError:
            raise RunError(f"{name} pass: out of device memory during the warm-up/compile of "
                           f"engine {engine.name}: lower its batch or pack size") from None
        accel.synchronize(device)
        compile_s = time.perf_counter() - t0
        if on_record is not None:
            on_record({"kind": "pass_start", "engine": engine.describe(),
                       "planned_batches": len(batches), "todo_batches": len(todo),
                       "compile_s": compile_s, "t_s": time.perf_counter() - t_start})
        work = Work()
        core_s = 0.0
        timeline: list[list[float]] = []
        backoffs: list[dict] = []
        computed = 0
        bar = tqdm(total=total_tokens, desc=f"{name} ({engine.name})", unit="tok",
                   unit_scale=True, disable=not progress, smoothing=0.1)
        queue = todo[::-1]  # a stack: the parts of a split batch run next
        attempt = -1
        while queue:
            batch = queue.pop()
            rows = np.asarray(batch.rows)
            new = ~done[rows]
            if not new.any():  # a part of a split batch answered in an earlier session
                continue
            attempt += 1
            try:
                if attempt in inject_oom:
                    raise torch.OutOfMemoryError(f"injected by {faults.OOM} (test hook)")
                inputs = engine.load(batch)
                accel.synchronize(device)
                t = time.perf_counter()
                logits = engine.forward(inputs)
                accel.synchronize(device)
            except torch.OutOfMemoryError:
                failed = True
            else:
                failed = False
            if failed:  # out of the except block: its traceback no longer holds activations
                inputs = logits = None
                _free_device_memory(device)
                parts = back_off(name, engine, batch, labels)
                info = {"attempt": attempt, "questions": len(batch.rows),
                        "prompt_tokens": batch.prompt_tokens,
                        "first_question": labels[batch.rows[0]] if labels else batch.rows[0],
                        "split_into": [len(p.rows) for p in parts]}
                backoffs.append(info)
                if on_record is not None:
                    on_record({"kind": "oom_backoff", "backoff": info,
                               "t_s": time.perf_counter() - t_start})
                queue.extend(parts[::-1])
                continue
            dt = time.perf_counter() - t
            core_s += dt
            if logits.shape[0] != len(batch.rows):
                raise RuntimeError(f"engine {engine.name} returned {logits.shape[0]} rows "
                                   f"for a batch of {len(batch.rows)}")
            reduced = reduce_logits(logits, choice_ids)
            if not bool(reduced.finite.all()):
                bad = [batch.rows[i] for i in np.flatnonzero(~reduced.finite.numpy())]
                names = [labels[i] if labels else str(i) for i in bad]
                raise RunError(f"{name} pass: non-finite logits (NaN/Inf) from engine "
                               f"{engine.name} for {len(bad)} question(s): {', '.join(names[:20])}")
            batch_top = reduced.top_ids.numpy()[new]
            batch_choice = reduced.choice_logits.numpy()[new]
            rows = rows[new]
            top_ids[rows] = batch_top
            choice[rows] = batch_choice
            done[rows] = True
            if keep_logits:
                if kept is None:
                    kept = torch.empty(n, logits.shape[1], dtype=torch.float32)
                kept[rows] = logits[torch.from_numpy(new)].float().cpu()
            tokens = batch.prompt_tokens if new.all() else \
                sum(len(requests[i].ids) for i in rows)
            work += batch.work
            computed += 1
            t_now = time.perf_counter() - t_start
            timeline.append([len(rows), tokens, dt, t_now])
            if on_record is not None:
                w = batch.work
                on_record({"kind": "batch", "rows": rows.tolist(),
                           "top_ids": batch_top.tolist(), "choice_logits": batch_choice.tolist(),
                           "prompt_tokens": tokens, "core_s": dt, "t_s": t_now,
                           "work": [w.tokens, w.attention_pairs, w.logit_rows, w.padded_tokens]})
            if attempt in inject_kill:
                faults.kill_self()
            bar.update(tokens)
            bar.set_postfix(core_tok_s=f"{work.tokens / core_s:,.0f}" if core_s else "-")
        bar.close()
    whole_s = time.perf_counter() - t_start
    missing = np.flatnonzero(mine & (top_ids < 0))
    if len(missing):
        raise RuntimeError(f"engine {engine.name} left {len(missing)} question(s) unanswered")
    peak = accel.peak_allocated_bytes(device)
    if on_record is not None:
        on_record({"kind": "pass_end", "whole_s": whole_s, "torch_peak_allocated_bytes": peak,
                   "t_s": whole_s})
    return PassResult(
        name=name,
        engine=engine.describe(),
        prompt_tokens=total_tokens,
        whole_s=whole_s,
        core_s=core_s,
        compile_s=compile_s,
        work=work,
        batches=computed,
        top_ids=top_ids,
        choice_logits=choice,
        timeline=timeline,
        torch_peak_allocated_bytes=peak,
        logits=kept,
        backoffs=backoffs,
    )


def new_run_dir(cfg: Config) -> Path:
    """runs/<date>_<case>_<engine>[_<name>], made unique with a counter."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}_{cfg.case}_{cfg.engine}" + (f"_{cfg.run_name}" if cfg.run_name else "")
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / base
    k = 1
    while path.exists():
        k += 1
        path = root / f"{base}-{k}"
    path.mkdir()
    return path


def merge_passes(parts: Sequence[PassResult]) -> PassResult:
    """Join the ranks' shares of one pass: each question answered by exactly one rank; times
    are those of the slowest rank (throughput = all tokens / slowest rank's time)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    top_ids = np.full_like(first.top_ids, -1)
    choice = np.full_like(first.choice_logits, np.nan)
    work = Work()
    for p in parts:
        rows = np.flatnonzero(p.top_ids >= 0)
        if (top_ids[rows] >= 0).any():
            raise RuntimeError(f"{first.name} pass: a question was answered by two ranks")
        top_ids[rows] = p.top_ids[rows]
        choice[rows] = p.choice_logits[rows]
        work += p.work
    if (top_ids < 0).any():
        raise RuntimeError(f"{first.name} pass: {(top_ids < 0).sum()} question(s) unanswered")
    peaks = [p.torch_peak_allocated_bytes for p in parts if p.torch_peak_allocated_bytes]
    return PassResult(
        name=first.name,
        engine=first.engine,
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        whole_s=max(p.whole_s for p in parts),
        core_s=max(p.core_s for p in parts),
        compile_s=max(p.compile_s for p in parts),
        work=work,
        batches=sum(p.batches for p in parts),
        top_ids=top_ids,
        choice_logits=choice,
        timeline=[[*t, r] for r, p in enumerate(parts) for t in p.timeline],
        torch_peak_allocated_bytes=max(peaks) if peaks else None,
        backoffs=[{**b, "rank": r} for r, p in enumerate(parts) for b in p.backoffs],
        per_rank=[{"rank": r, "questions": int((p.top_ids >= 0).sum()),
                   "prompt_tokens": p.prompt_tokens, "computed_tokens": p.work.tokens,
                   "batches": p.batches, "whole_time_s": p.whole_s, "core_time_s": p.core_s,
                   "compile_time_s": p.compile_s,
                   "torch_peak_allocated_bytes": p.torch_peak_allocated_bytes}
                  for r, p in enumerate(parts)],
    )


def batch_cost(shape: ModelShape) -> Callable[[Batch], float]:
    """Estimated FLOPs of a batch as run (padding included), to balance ranks."""
    return lambda b: work_flops(shape, b.work.padded_tokens, b.work.attention_pairs,
                                b.work.logit_rows)


def _step(d: Dist, what: str, fn: Callable[[], Any]) -> Any:
    """Run one step on every rank; if it fails anywhere, fail everywhere, naming the rank."""
    error, value = None, None
    try:
        value = fn()
    except Exception as e:  # re-raised on every rank by agree()
        error = e
    agree(d, error, what)
    return value


def run_case(cfg: Config, e2e_start: float | None = None,
             resume: str | Path | None = None) -> tuple[Path | None, dict | None]:
    """Run the whole case as configured; returns the run folder and the result document.

    Under torchrun every rank runs its share and rank 0 alone writes the folder (the others
    return (None, None)). If any rank fails, every rank raises an error naming it.
    `resume`: the folder of an interrupted run to go on with (one process only: data-parallel
    runs keep no progress log, and resuming under torchrun is refused).
    """
    e2e_start = time.perf_counter() if e2e_start is None else e2e_start
    if resume is not None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RunError("--resume runs in one process only, not under torchrun "
                           f"(WORLD_SIZE={os.environ['WORLD_SIZE']}): data-parallel runs keep "
                           "no progress log; resume a single-process run without torchrun")
        resume_config_path(resume)  # the folder exists, is a run's, and has no result.json
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("device 'cuda' asked for, but torch sees no CUDA device "
                       "(use --device cpu, or a CUDA build of torch)")
    d, device = init_from_env(cfg.device)
    try:
        return _run_case(cfg, replace(cfg, device=device, progress=cfg.progress and d.is_main),
                         d, e2e_start, Path(resume) if resume is not None else None)
    finally:
        shutdown(d)


def _run_case(cfg: Config, rcfg: Config, d: Dist, e2e_start: float, resume: Path | None):
    """`rcfg` is this rank's view of `cfg` (its device, progress bars on rank 0 only)."""
    env = environment.collect(rcfg.device)
    run_dir = (resume or new_run_dir(cfg)) if d.is_main else None
    sampler = MemorySampler(rcfg.device, cfg.mem_sample_interval_s).start()
    timings: dict[str, float] = {}
    passes: dict[str, PassResult] = {}
    plog: ProgressLog | None = None  # the progress log (rank 0 of a single-process run)
    try:
        def prepare_data():
            nonlocal plog
            t = time.perf_counter()
            dataset = load_mmlu(cfg.mmlu_path, cfg.split, cfg.subjects, cfg.limit, cfg.few_shots)
            tokenizer = load_tokenizer(cfg.weight_path)
            prompts = build_prompts(dataset, tokenizer, cfg.prompt_style, cfg.few_shots,
                                    cfg.max_seq_len, progress=rcfg.progress)
            timings["data_and_tokenize_s"] = time.perf_counter() - t
            choice_ids = choice_token_ids(tokenizer)
            if d.is_main:  # before the model loads: a mismatching resume fails in seconds
                fp = fingerprint.make(cfg, prompts, choice_ids, d.world)
                if resume is not None:
                    plog = ProgressLog.resume(run_dir, fp, e2e_start)
                elif d.active:
                    write_run_files(run_dir, cfg, fp)  # for the record; no progress log
                else:
                    plog = ProgressLog.start(run_dir, cfg, fp, e2e_start)
            return tokenizer, prompts, choice_ids

        def prepare_model():
            t = time.perf_counter()
            loaded = load_model(cfg.weight_path, cfg.precision, rcfg.device,
                                cfg.random_weights, cfg.seed)
            timings["model_load_s"] = time.perf_counter() - t
            return loaded

        tokenizer, prompts, choice_ids = _step(d, "loading data", prepare_data)
        model, info = _step(d, "loading the model", prepare_model)
        sampler.sample()
        requests = [Request(p.ids, p.prefix_len) for p in prompts]
        labels = [f"{p.subject}#{p.index}" for p in prompts]
        cost = batch_cost(ModelShape.from_config(model.config))

        def select(batches: Sequence[Batch]) -> list[int]:
            return deal([cost(b) for b in batches], d.world)[d.rank]

        todo = ([("val", cfg.val_engine)] if cfg.validation else []) + [("infer", cfg.engine)]
        for name, engine_name in todo:
            answered = plog.answered(name, len(prompts)) if plog and plog.resumed else None
            if answered is not None and (answered[0] >= 0).all():  # done in earlier sessions
                passes[name] = plog.combine(name, None, answered)
                continue

            def one_pass(name: str = name, engine_name: str = engine_name,
                         answered=answered) -> PassResult:
                engine = make_engine(rcfg, engine_name, model)
                return run_pass(name, engine, requests, choice_ids, labels, rcfg.progress,
                                select=select if d.active else None, answered=answered,
                                on_record=plog.recorder(name) if plog else None)

            part = _step(d, f"{name} pass", one_pass)
            passes[name] = merge_passes(all_gather(d, part))
            if plog is not None:
                passes[name] = plog.combine(name, passes[name], answered)
            gc.collect()
            sampler.sample()
    finally:
        mem = sampler.stop()
        if plog is not None:
            plog.close()
    mems = all_gather(d, mem)
    e2e_s = time.perf_counter() - e2e_start
    if not d.is_main:
        return None, None
    resumed, e2e_s = plog.summary(e2e_s) if plog is not None else (None, e2e_s)
    result = results.assemble(
        cfg=cfg,
        env=env,
        model_info=info,
        prompts=prompts,
        passes=passes,
        tokenizer=tokenizer,
        memory=mems,
        e2e_s=e2e_s,
        timings=timings,
        flops_per_token=parse_flops_per_token(cfg.flops_per_token, info.n_params),
        warnings=[w for w in [sampler.warning] if w],
        devices=d.world,
        resume=resumed,
    )
    # result.json last: its presence says the run is finished (and cannot be resumed).
    results.write_predictions(run_dir / "predictions.jsonl", prompts, passes, tokenizer)
    write_json_atomic(run_dir / "result.json", result.to_json())
    return run_dir, result
