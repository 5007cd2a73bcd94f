"""The case: tokenize, load the model, run the val and infer passes, time them, write results.

Timing follows the reference (see metrics.py): a pass's whole time runs from planning to the last
scored batch; core time sums the engine calls, each between two device synchronizations, with the
host-to-device copy before the first one; warm-up/compile is timed apart.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlubench import environment, results
from mmlubench.config import Config, parse_flops_per_token
from mmlubench.data import load_mmlu
from mmlubench.distributed import Dist, agree, all_gather, deal, init_from_env, shutdown
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Batch, Engine, Request, Work
from mmlubench.errors import RunError
from mmlubench.memory import MemorySampler
from mmlubench.metrics import ModelShape, work_flops
from mmlubench.model import load_model
from mmlubench.prompts import build_prompts, choice_token_ids, load_tokenizer
from mmlubench.scoring import reduce_logits


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_engine(cfg: Config, name: str, model: torch.nn.Module) -> Engine:
    cls = engine_class(name)
    return cls(model, engine_options(name, cfg.engine_options(name)), cfg.device)


def run_pass(
    name: str,
    engine: Engine,
    requests: Sequence[Request],
    choice_ids: Sequence[int],
    labels: Sequence[str] | None = None,
    progress: bool = True,
    keep_logits: bool = False,
    on_batch: Callable[[list[int], np.ndarray, np.ndarray], None] | None = None,
    select: Callable[[Sequence[Batch]], Sequence[int]] | None = None,
) -> PassResult:
    """Run every request through `engine`; return predictions and timings.

    `select` picks which of the planned batches this process runs (data parallelism: each
    rank plans all batches, runs its share); unselected rows keep top id -1.
    """
    from tqdm import tqdm

    device = engine.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n = len(requests)
    top_ids = np.full(n, -1, dtype=np.int64)
    choice = np.full((n, 4), np.nan, dtype=np.float32)
    kept = None
    t_start = time.perf_counter()
    with torch.inference_mode():
        batches = engine.plan(requests)
        if select is not None:
            batches = [batches[i] for i in select(batches)]
        total_tokens = sum(b.prompt_tokens for b in batches)
        t0 = time.perf_counter()
        engine.warmup(batches)
        synchronize(device)
        compile_s = time.perf_counter() - t0
        work = Work()
        core_s = 0.0
        timeline: list[list[float]] = []
        bar = tqdm(total=total_tokens, desc=f"{name} ({engine.name})", unit="tok",
                   unit_scale=True, disable=not progress, smoothing=0.1)
        for batch in batches:
            inputs = engine.load(batch)
            synchronize(device)
            t = time.perf_counter()
            logits = engine.forward(inputs)
            synchronize(device)
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
            rows = np.asarray(batch.rows)
            top_ids[rows] = reduced.top_ids.numpy()
            choice[rows] = reduced.choice_logits.numpy()
            if keep_logits:
                if kept is None:
                    kept = torch.empty(n, logits.shape[1], dtype=torch.float32)
                kept[rows] = logits.float().cpu()
            if on_batch is not None:
                on_batch(batch.rows, reduced.top_ids.numpy(), reduced.choice_logits.numpy())
            work += batch.work
            timeline.append([len(batch.rows), batch.prompt_tokens, dt,
                             time.perf_counter() - t_start])
            bar.update(batch.prompt_tokens)
            bar.set_postfix(core_tok_s=f"{work.tokens / core_s:,.0f}" if core_s else "-")
        bar.close()
    whole_s = time.perf_counter() - t_start
    mine = np.zeros(n, dtype=bool)
    for b in batches:
        mine[b.rows] = True
    missing = np.flatnonzero(mine & (top_ids < 0))
    if len(missing):
        raise RuntimeError(f"engine {engine.name} left {len(missing)} question(s) unanswered")
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return PassResult(
        name=name,
        engine=engine.describe(),
        prompt_tokens=total_tokens,
        whole_s=whole_s,
        core_s=core_s,
        compile_s=compile_s,
        work=work,
        batches=len(batches),
        top_ids=top_ids,
        choice_logits=choice,
        timeline=timeline,
        torch_peak_allocated_bytes=peak,
        logits=kept,
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


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file, then rename: a crash never leaves a truncated file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")
    tmp.replace(path)


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


def run_case(cfg: Config, e2e_start: float | None = None) -> tuple[Path | None, dict | None]:
    """Run the whole case as configured; returns the run folder and the result document.

    Under torchrun every rank runs its share and rank 0 alone writes the folder (the others
    return (None, None)). If any rank fails, every rank raises an error naming it.
    """
    e2e_start = time.perf_counter() if e2e_start is None else e2e_start
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("device 'cuda' asked for, but torch sees no CUDA device "
                       "(use --device cpu, or a CUDA build of torch)")
    d, device = init_from_env(cfg.device)
    try:
        return _run_case(cfg, replace(cfg, device=device, progress=cfg.progress and d.is_main),
                         d, e2e_start)
    finally:
        shutdown(d)


def _run_case(cfg: Config, rcfg: Config, d: Dist, e2e_start: float):
    """`rcfg` is this rank's view of `cfg` (its device, progress bars on rank 0 only)."""
    env = environment.collect(rcfg.device)
    run_dir = new_run_dir(cfg) if d.is_main else None
    sampler = MemorySampler(rcfg.device, cfg.mem_sample_interval_s).start()
    timings: dict[str, float] = {}
    passes: dict[str, PassResult] = {}
    try:
        def prepare():
            t = time.perf_counter()
            dataset = load_mmlu(cfg.mmlu_path, cfg.split, cfg.subjects, cfg.limit, cfg.few_shots)
            tokenizer = load_tokenizer(cfg.weight_path)
            prompts = build_prompts(dataset, tokenizer, cfg.prompt_style, cfg.few_shots,
                                    cfg.max_seq_len, progress=rcfg.progress)
            timings["data_and_tokenize_s"] = time.perf_counter() - t
            choice_ids = choice_token_ids(tokenizer)
            t = time.perf_counter()
            model, info = load_model(cfg.weight_path, cfg.precision, rcfg.device,
                                     cfg.random_weights, cfg.seed)
            timings["model_load_s"] = time.perf_counter() - t
            return tokenizer, prompts, choice_ids, model, info

        tokenizer, prompts, choice_ids, model, info = _step(d, "loading data and model", prepare)
        sampler.sample()
        requests = [Request(p.ids, p.prefix_len) for p in prompts]
        labels = [f"{p.subject}#{p.index}" for p in prompts]
        cost = batch_cost(ModelShape.from_config(model.config))

        def select(batches: Sequence[Batch]) -> list[int]:
            return deal([cost(b) for b in batches], d.world)[d.rank]

        todo = ([("val", cfg.val_engine)] if cfg.validation else []) + [("infer", cfg.engine)]
        for name, engine_name in todo:
            def one_pass(name: str = name, engine_name: str = engine_name) -> PassResult:
                engine = make_engine(rcfg, engine_name, model)
                return run_pass(name, engine, requests, choice_ids, labels, rcfg.progress,
                                select=select if d.active else None)

            part = _step(d, f"{name} pass", one_pass)
            passes[name] = merge_passes(all_gather(d, part))
            gc.collect()
            sampler.sample()
    finally:
        mem = sampler.stop()
    mems = all_gather(d, mem)
    e2e_s = time.perf_counter() - e2e_start
    if not d.is_main:
        return None, None
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
    )
    results.write_predictions(run_dir / "predictions.jsonl", prompts, passes, tokenizer)
    write_json_atomic(run_dir / "result.json", result)
    return run_dir, result
