"""The case, start to end: claim the run folder, load the questions and the model, run the val
and infer passes, write the results. Each step is one function that returns what it made; under
torchrun every step runs on every rank and fails on all of them if it fails on one
(distributed.step). docs/DESIGN.md lists the steps ("Data flow of `mmlubench run`").
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from mmlubench.ceiling import measure as ceiling
from mmlubench.config.config import Config
from mmlubench.device.device import Device
from mmlubench.errors import Interrupted, MmlubenchError, RunError, one_line
from mmlubench.model.check import check_model
from mmlubench.model.imports import ModelImports
from mmlubench.model.load import ModelInfo
from mmlubench.results import assemble as results
from mmlubench.results import files as result_files
from mmlubench.results.document import Result
from mmlubench.run import rundir
from mmlubench.run.distributed import (
    Dist,
    all_gather,
    exit_now,
    init_from_env,
    shutdown,
    step,
    torchrun_env,
)
from mmlubench.run.inputs import (
    Questions,
    load_weights,
    open_log,
    questions_from,
    read_questions,
    tokenize_questions,
)
from mmlubench.run.laps import Laps
from mmlubench.run.pass_result import PassResult
from mmlubench.run.pass_steps import EarlyStart, run_passes
from mmlubench.run.questions import Ahead
from mmlubench.run.resume import NoLog


def run_case(
    cfg: Config,
    e2e_start: float | None = None,
    resume: str | Path | None = None,
    ahead: Ahead | None = None,
) -> tuple[Path | None, Result | None]:
    """Run the whole case as configured; returns the run folder and the result document.

    Under torchrun every rank runs its share and rank 0 alone writes the folder (the others
    return (None, None)); if any rank fails, every rank prints an error naming it and exits
    with status 2. `resume`: the folder of an interrupted run to go on with (one process only).
    `ahead`: the helper process already reading the questions (run/questions.py), if any.
    """
    e2e_start = time.perf_counter() if e2e_start is None else e2e_start
    check_start(cfg, resume)
    d = init_from_env(cfg.device)
    lock = None
    try:
        lock = step(d, "claiming the run folder", claim_folder, cfg, resume, d.is_main)
        cfg = replace(cfg, device=d.device, progress=cfg.progress and d.is_main)
        run_dir = lock.path.parent if lock else None
        out = _run_case(cfg, d, run_dir, resume is not None, e2e_start, ahead)
        shutdown(d)
        return out
    except KeyboardInterrupt:
        if lock is None:
            raise
        run_dir = lock.path.parent
        raise Interrupted(
            run_dir,
            resumable=not d.active and (run_dir / rundir.CONFIG).is_file(),
        ) from None
    except MmlubenchError as e:
        if getattr(e, "disk_full", False) and lock is not None:
            e = RunError(
                f"{e}; the work recorded is kept: free space, then `mmlubench run "
                f"--resume {lock.path.parent}`"
            )
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
            raise RunError(
                "--resume runs in one process only, not under torchrun "
                f"(WORLD_SIZE={os.environ['WORLD_SIZE']}): data-parallel runs keep "
                "no progress log; resume a single-process run without torchrun"
            )
        rundir.resume_config_path(resume)  # the folder exists, is a run's, and is unfinished
    torchrun_env()  # bad torchrun variables: one line, before the run folder is made
    Device.check(cfg.device, cfg.vendor)


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


def _run_case(
    cfg: Config,
    d: Dist,
    run_dir: Path | None,
    resumed: bool,
    e2e_start: float,
    ahead: Ahead | None,
) -> tuple[Path | None, Result | None]:
    """Questions, run log, model, passes, then (rank 0) the result document and its files.
    Each step is a lap of `timings` (run/laps.py)."""
    laps = Laps(e2e_start)
    laps.lap("startup_s")
    early = EarlyStart(cfg)
    if not early.background:  # else beside the first pass (see EarlyStart)
        early.start()
    laps.lap("early_start_s")
    dev = Device.open(cfg.device, cfg.vendor, cfg.mem_sample_interval_s)
    laps.lap("device_open_s")
    log: NoLog = NoLog()
    try:
        q = load_questions(cfg, d, laps, ahead)
        step(d, "checking the model", check_model, *model_check_args(cfg, q))
        laps.lap("model_check_s")
        log = step(d, "opening the run log", open_log, cfg, d, run_dir, resumed, q, e2e_start)
        laps.lap("run_log_s")
        model, info = step(d, "loading the model", load_weights, cfg)
        laps.lap("model_load_s")
        dev.sample()
        passes, energy = run_passes(cfg, d, model, q, log, dev, resumed, laps, early)
    finally:
        memory = dev.close()
        log.close()
    memories = all_gather(d, memory)
    if not d.is_main:
        return None, None
    laps.lap("end_s")
    resume_doc, e2e_s = log.summary(laps.last - e2e_start)
    fpt, fpt_warnings = flops_for(cfg, info)
    result = results.assemble(
        cfg=cfg,
        env=dev.environment,
        model_info=info,
        prompts=q.prompts,
        passes=passes,
        tokenizer=q.tokenizer,
        memory=memories,
        e2e_s=e2e_s,
        timings=laps.timings(passes, {name: p.plan_time_s for name, p in passes.items()}),
        flops_per_token=fpt,
        warnings=dev.warnings + fpt_warnings,
        devices=d.world,
        resume=resume_doc,
        energy=energy,
    )
    # The device's own ceiling, measured after e2e_time stopped (the model still loaded).
    result = ceiling.attach(result, ceiling.for_run(cfg, model.config, q.requests))
    write_results(run_dir, q, passes, result)
    return run_dir, result


def load_questions(cfg: Config, d: Dist, laps: Laps, ahead: Ahead | None) -> Questions:
    """The questions and transformers' model code: the questions from the helper process
    (`ahead`, run/questions.py) while this one imports the model code, or read here with the
    model code imported in a thread beside the tokenizing (model/imports.py)."""
    if ahead is not None:
        ModelImports(cfg.weight_path, background=False).wait()
        laps.lap("model_import_s")
        tokenizer, prompts, choice_ids, _ = step(d, "loading data", ahead.result)
        laps.lap("data_load_s")  # what was left of the helper's work: the wait for it
        q = questions_from(prompts, tokenizer, choice_ids)
        laps.lap("tokenize_s")
        return q
    dataset, tokenizer = step(d, "loading data", read_questions, cfg)
    laps.lap("data_load_s")
    imports = ModelImports(cfg.weight_path)
    imports.start()  # while the prompts are tokenized, where cores are free
    q = step(d, "tokenizing", tokenize_questions, cfg, dataset, tokenizer)
    laps.lap("tokenize_s")
    imports.wait()
    laps.lap("model_import_s")
    return q


def model_check_args(cfg: Config, q: Questions) -> tuple:
    """check_model's arguments: the model folder, how it is loaded, the prompts' ids."""
    return (
        cfg.weight_path,
        cfg.random_weights,
        cfg.precision,
        cfg.device,
        [p.ids for p in q.prompts],
        q.choice_ids,
    )


def flops_for(cfg: Config, info: ModelInfo) -> tuple[float, list[str]]:
    """MFU's FLOPs per token (mfu.resolve_flops_per_token) and the warnings: the model is not
    the case's own (its reference row is another model's), a given value far from 2*params."""
    import json

    from mmlubench.config.cases import model_differences
    from mmlubench.config.mfu import resolve_flops_per_token

    try:
        model = json.loads((Path(info.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        model = {}
    differs = model_differences(model, cfg.model_config) if cfg.model_config else None
    warnings = (
        ["DEMO: a tiny random model on synthetic questions; accuracy means nothing"]
        if cfg.case == "demo"
        else []
    )
    warnings += (
        [
            f"the model is not case {cfg.case}'s own ({'; '.join(differs[:3])}): its "
            "reference row is another model's"
        ]
        if differs
        else []
    )
    value, more = resolve_flops_per_token(
        cfg.flops_per_token,
        cfg.flops_per_token_set_by,
        cfg.case,
        differs,
        info.active_params or info.n_params,
    )
    return value, warnings + more


def write_results(
    run_dir: Path, q: Questions, passes: dict[str, PassResult], result: Result
) -> None:
    """predictions.jsonl, results_lm-eval.json (and --log-samples' files), then result.json
    last: its presence says the run is finished."""
    result_files.write_predictions(run_dir / "predictions.jsonl", q.prompts, passes, q.tokenizer)
    from mmlubench.results import lmeval

    lmeval.write_files(
        run_dir,
        result.config.to_json(),
        result.model.to_json(),
        {(p.subject, p.index): p.text for p in q.prompts},
        bool(result.config.to_json().get("log_samples")),
    )
    result_files.write_json_atomic(run_dir / rundir.RESULT, result.to_json())
