"""The case, start to end: claim the run folder, load the questions and the model, run the val
and infer passes, write the results. Each step is one function that returns what it made; under
torchrun every step runs on every rank and fails on all of them if it fails on one
(distributed.step). docs/DESIGN.md lists the steps ("Data flow of `mmlubench run`").
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlubench import ceiling, environment, faults, logit_sample, results, rundir, vendors
from mmlubench.config import Config
from mmlubench.data import load_mmlu
from mmlubench.distributed import (
    Dist,
    all_gather,
    exit_now,
    init_from_env,
    sharer,
    shutdown,
    step,
    torchrun_env,
)
from mmlubench.document import Result
from mmlubench.energy import EnergyWindow, pass_energy
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Engine, Request
from mmlubench.errors import Interrupted, MmlubenchError, RunError, one_line
from mmlubench.memory import MemorySampler
from mmlubench.metrics import ModelShape, work_flops
from mmlubench.model import ModelInfo, load_model
from mmlubench.model_check import check_model
from mmlubench.passes import PassResult, merge, require_complete, run_pass
from mmlubench.progress_check import model_vocab
from mmlubench.prompts import (
    Prompt,
    build_prompts,
    choice_token_ids,
    load_tokenizer,
    without_bos,
)
from mmlubench.resume import NoLog, RunLog, fingerprint


@dataclass
class Questions:
    """The prompts of the run and what the passes need of them."""

    prompts: list[Prompt]
    tokenizer: Any
    choice_ids: list[int]
    requests: list[Request]
    labels: list[str]  # "subject#row", how errors name a question
    timings: dict[str, float]


def run_case(cfg: Config, e2e_start: float | None = None,
             resume: str | Path | None = None) -> tuple[Path | None, Result | None]:
    """Run the whole case as configured; returns the run folder and the result document.

    Under torchrun every rank runs its share and rank 0 alone writes the folder (the others
    return (None, None)); if any rank fails, every rank prints an error naming it and exits
    with status 2. `resume`: the folder of an interrupted run to go on with (one process only).
    """
    e2e_start = time.perf_counter() if e2e_start is None else e2e_start
    check_start(cfg, resume)
    d = init_from_env(cfg.device)
    lock = None
    try:
        lock = step(d, "claiming the run folder", claim_folder, cfg, resume, d.is_main)
        cfg = replace(cfg, device=d.device, progress=cfg.progress and d.is_main)
        out = _run_case(cfg, d, lock.path.parent if lock else None, resume is not None,
                        e2e_start)
        shutdown(d)
        return out
    except KeyboardInterrupt:
        if lock is None:
            raise
        run_dir = lock.path.parent
        raise Interrupted(run_dir, resumable=not d.active and (run_dir / rundir.CONFIG).is_file(),
                          ) from None
    except MmlubenchError as e:
        if getattr(e, "disk_full", False) and lock is not None:
            e = RunError(f"{e}; the work recorded is kept: free space, then `mmlubench run "
                         f"--resume {lock.path.parent}`")
        if not d.active:
            raise e from None
        if lock is not None:  # exit_now skips the finally clause
            lock.release()
        exit_now(2, f"mmlubench: error: {one_line(e)}")  # see there: gloo may abort a normal exit
    finally:
        if lock is not None:
            lock.release()


def check_start(cfg: Config, resume: str | Path | None) -> None:
    """Refuse at once what cannot work: resuming under torchrun, a device torch does not know
    or does not see."""
    if resume is not None:
        if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
            raise RunError("--resume runs in one process only, not under torchrun "
                           f"(WORLD_SIZE={os.environ['WORLD_SIZE']}): data-parallel runs keep "
                           "no progress log; resume a single-process run without torchrun")
        rundir.resume_config_path(resume)  # the folder exists, is a run's, and is unfinished
    torchrun_env()  # bad torchrun variables: one line, before the run folder is made
    vendors.check_device(cfg.device, cfg.vendor)


def claim_folder(cfg: Config, resume: str | Path | None, main: bool) -> rundir.RunLock | None:
    """The run folder, new or resumed, checked writable and locked, before any work (on rank
    0; the other ranks get None)."""
    if not main:
        return None
    if resume is None:
        return rundir.RunLock(rundir.new_run_dir(cfg)).acquire()
    rundir.check_writable(Path(resume))
    lock = rundir.RunLock(Path(resume)).acquire()
    try:
        rundir.resume_config_path(resume)  # still unfinished now that it is ours
    except RunError:
        lock.release()
        raise
    return lock


def _run_case(cfg: Config, d: Dist, run_dir: Path | None, resumed: bool, e2e_start: float
              ) -> tuple[Path | None, Result | None]:
    """Questions, run log, model, passes, then (rank 0) the result document and its files."""
    for _, engine_name in planned_passes(cfg):  # e.g. compile workers, ready when needed
        engine_class(engine_name).start_early(
            engine_options(engine_name, cfg.engines.get(engine_name) or {}, "config"),
            torch.device(cfg.device).type)
    vendor = vendors.open_vendor(cfg.device, cfg.vendor)
    env = environment.collect(cfg.device, vendor)
    sampler = MemorySampler(vendor, cfg.mem_sample_interval_s).start()
    energy: dict[str, dict] = {}
    log: NoLog = NoLog()
    try:
        q = step(d, "loading data", load_questions, cfg)
        step(d, "checking the model", check_model, cfg.weight_path, cfg.random_weights,
             cfg.precision, cfg.device, [p.ids for p in q.prompts], q.choice_ids)
        log = step(d, "opening the run log", open_log, cfg, d, run_dir, resumed, q, e2e_start)
        model, info, model_load_s = step(d, "loading the model", load_weights, cfg)
        sampler.sample()
        passes: dict[str, PassResult] = {}
        for name, engine_name in planned_passes(cfg):
            window = EnergyWindow(vendor, sampler)
            passes[name] = one_pass(cfg, d, name, engine_name, model, q, log)
            # Earlier sessions of a resumed run were not metered: its energy stays null.
            reading = None if resumed else window.stop()
            energy[name] = pass_energy(all_gather(d, reading), passes[name].prompt_tokens,
                                       len(q.prompts))
            gc.collect()
            sampler.sample()
    finally:
        memory = sampler.stop()
        vendor.close()
        log.close()
    memories = all_gather(d, memory)
    if not d.is_main:
        return None, None
    resume_doc, e2e_s = log.summary(time.perf_counter() - e2e_start)
    fpt, fpt_warnings = flops_for(cfg, info)
    timings = {**q.timings, "model_load_s": model_load_s,
               **{f"{name}_plan_s": p.plan_time_s for name, p in passes.items()}}
    result = results.assemble(
        cfg=cfg, env=env, model_info=info, prompts=q.prompts, passes=passes,
        tokenizer=q.tokenizer, memory=memories, e2e_s=e2e_s, timings=timings,
        flops_per_token=fpt, warnings=[w for w in [sampler.warning] if w] + fpt_warnings,
        devices=d.world, resume=resume_doc,
        energy=energy)
    # The device's own ceiling, measured after e2e_time stopped (the model still loaded).
    result = ceiling.attach(result, ceiling.for_run(cfg, model.config, q.requests))
    write_results(run_dir, q, passes, result)
    return run_dir, result


def flops_for(cfg: Config, info: ModelInfo) -> tuple[float, list[str]]:
    """MFU's FLOPs per token (mfu.resolve_flops_per_token) and the warnings: the model is not
    the case's own (its reference row is another model's), a given value far from 2*params."""
    import json

    from mmlubench.cases import model_differences
    from mmlubench.mfu import resolve_flops_per_token

    try:
        model = json.loads((Path(info.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        model = {}
    differs = model_differences(model, cfg.model_config) if cfg.model_config else None
    warnings = ["DEMO: a tiny random model on synthetic questions; accuracy means nothing"
                ] if cfg.case == "demo" else []
    warnings += [f"the model is not case {cfg.case}'s own ({'; '.join(differs[:3])}): its "
                "reference row is another model's"] if differs else []
    value, more = resolve_flops_per_token(cfg.flops_per_token, cfg.flops_per_token_set_by,
                                          cfg.case, differs, info.active_params or info.n_params)
    return value, warnings + more


def load_questions(cfg: Config) -> Questions:
    """Read the MMLU files and the tokenizer, build and tokenize every prompt."""
    t = time.perf_counter()
    dataset = load_mmlu(cfg.mmlu_path, cfg.split, cfg.subjects, cfg.limit, cfg.few_shots)
    tokenizer = load_tokenizer(cfg.weight_path)
    t_tok = time.perf_counter()
    # Its tqdm bar only on a terminal: elsewhere its frames pile up into one line (a pass's
    # progress prints plain lines there instead, progress.py).
    prompts = build_prompts(dataset, tokenizer, cfg.prompt_style, cfg.few_shots,
                            cfg.max_seq_len, progress=cfg.progress and sys.stderr.isatty())
    prompts = without_bos(prompts, None if cfg.bos else tokenizer.bos_token_id)
    tokenize_s = time.perf_counter() - t_tok
    return Questions(prompts, tokenizer, choice_token_ids(tokenizer),
                     [Request(p.ids, p.prefix_len) for p in prompts],
                     [f"{p.subject}#{p.index}" for p in prompts],
                     {"data_load_s": t_tok - t, "tokenize_s": tokenize_s})


def open_log(cfg: Config, d: Dist, run_dir: Path | None, resumed: bool, q: Questions,
             e2e_start: float) -> NoLog:
    """The resume log (before the model loads: a mismatching resume fails in seconds); a
    data-parallel run writes its config and fingerprint for the record and keeps no log."""
    if not d.is_main or run_dir is None:
        return NoLog()
    fp = fingerprint(cfg, q.prompts, q.choice_ids, d.world)
    if resumed:
        return RunLog.resume(run_dir, fp, e2e_start, model_vocab(cfg.weight_path, q.tokenizer))
    rundir.write_run_files(run_dir, cfg, fp)
    return NoLog() if d.active else RunLog(run_dir, len(q.prompts), e2e_start)


def load_weights(cfg: Config) -> tuple[torch.nn.Module, ModelInfo, float]:
    """The model on its device, what it is, and the seconds it took."""
    t = time.perf_counter()
    # No "Loading weights" bar from transformers: loading is one line of the run's, not a bar.
    model, info = load_model(cfg.weight_path, cfg.precision, cfg.device, cfg.random_weights,
                             cfg.seed, progress=False)
    return model, info, time.perf_counter() - t


def planned_passes(cfg: Config) -> list[tuple[str, str]]:
    """(pass name, engine name) of each pass, in order."""
    return ([("val", cfg.val_engine)] if cfg.validation else []) + [("infer", cfg.engine)]


def make_engine(cfg: Config, name: str, model: torch.nn.Module) -> Engine:
    cls = engine_class(name)
    return cls(model, engine_options(name, cfg.engines.get(name) or {}, "config"), cfg.device)


def one_pass(cfg: Config, d: Dist, name: str, engine_name: str, model: torch.nn.Module,
             q: Questions, log: NoLog) -> PassResult:
    """The whole pass: what earlier sessions answered, plus this session's share of the rest
    (every rank's, merged), checked complete."""
    earlier = log.earlier(name)
    done = np.zeros(len(q.prompts), dtype=bool)
    for _, p in earlier:
        done |= p.answered
    if done.all():  # answered in earlier sessions
        return log.combine(earlier, None)
    part = step(d, f"{name} pass", compute_pass, cfg, d, name, engine_name, model, q, done,
                log)
    ranks = merge(all_gather(d, part), range(d.world), parallel=True, tag="rank")
    return require_complete(log.combine(earlier, ranks), engine_name)


def compute_pass(cfg: Config, d: Dist, name: str, engine_name: str, model: torch.nn.Module,
                 q: Questions, done: np.ndarray, log: NoLog) -> PassResult:
    """This rank's part of a pass: its share of the questions not yet `done`."""
    engine = faults.wrap(make_engine(cfg, engine_name, model), name)
    shape = ModelShape.from_config(model.config)
    share = sharer(d, lambda b: work_flops(shape, b.work.padded_tokens, b.work.attention_pairs,
                                           b.work.logit_rows))
    return run_pass(name, engine, q.requests, q.choice_ids, q.labels, done=done,
                    progress=cfg.progress, share=share, record=log.recorder(name),
                    sample=logit_sample.members(len(q.prompts)) if cfg.validation else None)


def write_results(run_dir: Path, q: Questions, passes: dict[str, PassResult],
                  result: Result) -> None:
    """predictions.jsonl, results_lm-eval.json (and --log-samples' files), then result.json
    last: its presence says the run is finished."""
    results.write_predictions(run_dir / "predictions.jsonl", q.prompts, passes, q.tokenizer)
    from mmlubench import lmeval

    lmeval.write_files(run_dir, result.config.to_json(), result.model.to_json(),
                       {(p.subject, p.index): p.text for p in q.prompts},
                       bool(result.config.to_json().get("log_samples")))
    results.write_json_atomic(run_dir / rundir.RESULT, result.to_json())
