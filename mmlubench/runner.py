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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmlubench.config import Config, parse_flops_per_token
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Engine, Request, Work
from mmlubench.errors import RunError
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
) -> PassResult:
    """Run every request through `engine`; return predictions and timings."""
    from tqdm import tqdm

    device = engine.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n = len(requests)
    top_ids = np.full(n, -1, dtype=np.int64)
    choice = np.full((n, 4), np.nan, dtype=np.float32)
    kept = None
    total_tokens = sum(len(r.ids) for r in requests)
    t_start = time.perf_counter()
    with torch.inference_mode():
        batches = engine.plan(requests)
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
    missing = np.flatnonzero(top_ids < 0)
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


def run_case(cfg: Config, e2e_start: float | None = None) -> tuple[Path, dict]:
    """Run the whole case as configured; returns the run folder and the result document."""
    from mmlubench import environment, results
    from mmlubench.data import load_mmlu
    from mmlubench.memory import MemorySampler
    from mmlubench.model import load_model
    from mmlubench.prompts import build_prompts, choice_token_ids, load_tokenizer

    e2e_start = time.perf_counter() if e2e_start is None else e2e_start
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("device 'cuda' asked for, but torch sees no CUDA device "
                       "(use --device cpu, or a CUDA build of torch)")
    env = environment.collect(cfg.device)
    run_dir = new_run_dir(cfg)
    sampler = MemorySampler(cfg.device, cfg.mem_sample_interval_s).start()
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        dataset = load_mmlu(cfg.mmlu_path, cfg.split, cfg.subjects, cfg.limit, cfg.few_shots)
        tokenizer = load_tokenizer(cfg.weight_path)
        prompts = build_prompts(dataset, tokenizer, cfg.prompt_style, cfg.few_shots,
                                cfg.max_seq_len, progress=cfg.progress)
        timings["data_and_tokenize_s"] = time.perf_counter() - t
        choice_ids = choice_token_ids(tokenizer)
        t = time.perf_counter()
        model, info = load_model(cfg.weight_path, cfg.precision, cfg.device, cfg.random_weights,
                                 cfg.seed)
        timings["model_load_s"] = time.perf_counter() - t
        sampler.sample()
        requests = [Request(p.ids, p.prefix_len) for p in prompts]
        labels = [f"{p.subject}#{p.index}" for p in prompts]
        passes: dict[str, PassResult] = {}
        if cfg.validation:
            engine = make_engine(cfg, cfg.val_engine, model)
            passes["val"] = run_pass("val", engine, requests, choice_ids, labels, cfg.progress)
            del engine
            gc.collect()
            sampler.sample()
        engine = make_engine(cfg, cfg.engine, model)
        passes["infer"] = run_pass("infer", engine, requests, choice_ids, labels, cfg.progress)
        sampler.sample()
    finally:
        mem = sampler.stop()
    e2e_s = time.perf_counter() - e2e_start
    n_params = info.n_params
    result = results.assemble(
        cfg=cfg,
        env=env,
        model_info=info,
        prompts=prompts,
        passes=passes,
        tokenizer=tokenizer,
        memory=mem,
        e2e_s=e2e_s,
        timings=timings,
        flops_per_token=parse_flops_per_token(cfg.flops_per_token, n_params),
        warnings=[w for w in [sampler.warning] if w],
    )
    results.write_predictions(run_dir / "predictions.jsonl", prompts, passes, tokenizer)
    write_json_atomic(run_dir / "result.json", result)
    return run_dir, result
