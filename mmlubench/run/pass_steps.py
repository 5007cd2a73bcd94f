"""The passes of a run: which ones, each one's engine, and each pass whole: what earlier
sessions answered, this session's share of the rest on every rank, merged, with its energy.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import numpy as np
import torch

from mmlubench.config.config import Config
from mmlubench.device.device import Device
from mmlubench.device.energy import pass_energy
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import EarlyRun, Engine
from mmlubench.model.load import DTYPES
from mmlubench.results import logit_sample
from mmlubench.results.metrics import ModelShape, work_flops
from mmlubench.run import faults
from mmlubench.run.distributed import Dist, all_gather, sharer, step
from mmlubench.run.inputs import Questions
from mmlubench.run.laps import Laps
from mmlubench.run.pass_result import PassResult, merge, require_complete
from mmlubench.run.passes import run_pass
from mmlubench.run.resume import NoLog


def run_passes(
    cfg: Config,
    d: Dist,
    model: torch.nn.Module,
    q: Questions,
    log: NoLog,
    dev: Device,
    resumed: bool,
    laps: Laps,
    early: EarlyStart,
) -> tuple[dict[str, PassResult], dict[str, dict]]:
    """Every planned pass, each inside an energy window: the passes and their energy. Laps:
    each pass's set-up and finish (its whole time is the pass's own). `early`: started with
    the first pass where it runs in the background, waited for before the next ones."""
    passes: dict[str, PassResult] = {}
    energy: dict[str, dict] = {}
    for i, (name, engine_name) in enumerate(planned_passes(cfg)):
        if early.background and i == 0:
            early.start()
        elif early.background:
            early.wait()
        window = dev.energy_window()
        passes[name] = one_pass(cfg, d, dev, name, engine_name, model, q, log, laps)
        # Earlier sessions of a resumed run were not metered: its energy stays null.
        reading = None if resumed else window.stop()
        energy[name] = pass_energy(
            all_gather(d, reading), passes[name].prompt_tokens, len(q.prompts)
        )
        gc.collect()
        dev.sample()
        laps.lap(f"{name}_finish_s")
    return passes, energy


def planned_passes(cfg: Config) -> list[tuple[str, str]]:
    """(pass name, engine name) of each pass, in order."""
    return ([("val", cfg.val_engine)] if cfg.validation else []) + [("infer", cfg.engine)]


def configured_options(cfg: Config, name: str) -> Any:
    """Engine `name`'s options as the config sets them."""
    return engine_options(name, cfg.engines.get(name) or {}, "config")


class EarlyStart:
    """The engines' early starts (Engine.start_early: compile workers, the precompile helper),
    so that what they start is ready when their pass needs it.

    Where a pass runs before the last one (val before infer), they run in a thread started
    with the first pass, whose host mostly waits on the device, and the later passes wait for
    it before their engines are made. At the run's start they would take turns for the GIL
    with the start-up's own imports (Inductor's import alone took 3.8 s on an H200's host).
    With one pass they run at the run's start.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.background = len(planned_passes(cfg)) > 1
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """Every planned pass's engine's early start, here."""
        cfg = self.cfg
        dtype = str(DTYPES[cfg.precision]).removeprefix("torch.")
        for i, (_, name) in enumerate(planned_passes(cfg)):
            run = EarlyRun(str(cfg.device), str(cfg.weight_path), dtype, i == 0)
            engine_class(name).start_early(configured_options(cfg, name), run)

    def start(self) -> None:
        """In a thread (`background`), else here."""
        if not self.background:
            self.run()
            return

        def run() -> None:
            try:
                self.run()
            except BaseException as e:  # raised again by wait()
                self.error = e

        # daemon: a run that fails meanwhile exits without waiting for it
        self.thread = threading.Thread(target=run, name="early-start", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """The thread done; what failed in it raised here."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def make_engine(cfg: Config, name: str, model: torch.nn.Module) -> Engine:
    """Engine `name` on the run's device, with its options from the config."""
    return engine_class(name)(model, configured_options(cfg, name), cfg.device)


def one_pass(
    cfg: Config,
    d: Dist,
    dev: Device,
    name: str,
    engine_name: str,
    model: torch.nn.Module,
    q: Questions,
    log: NoLog,
    laps: Laps,
) -> PassResult:
    """The whole pass: what earlier sessions answered, plus this session's share of the rest
    (every rank's, merged), checked complete."""
    earlier = log.earlier(name)
    done = np.zeros(len(q.prompts), dtype=bool)
    for _, p in earlier:
        done |= p.answered
    if done.all():  # answered in earlier sessions
        laps.lap(f"{name}_setup_s")
        return log.combine(earlier, None)
    args = (cfg, d, dev, name, engine_name, model, q, done, log, laps)
    part = step(d, f"{name} pass", compute_pass, *args)
    ranks = merge(all_gather(d, part), range(d.world), parallel=True, tag="rank")
    return require_complete(log.combine(earlier, ranks), engine_name)


def compute_pass(
    cfg: Config,
    d: Dist,
    dev: Device,
    name: str,
    engine_name: str,
    model: torch.nn.Module,
    q: Questions,
    done: np.ndarray,
    log: NoLog,
    laps: Laps,
) -> PassResult:
    """This rank's part of a pass: its share of the questions not yet `done`."""
    engine = faults.wrap(make_engine(cfg, engine_name, model), name)
    shape = ModelShape.from_config(model.config)
    share = sharer(
        d,
        lambda b: work_flops(
            shape, b.work.padded_tokens, b.work.attention_pairs, b.work.logit_rows
        ),
    )
    laps.lap(f"{name}_setup_s")
    part = run_pass(
        name,
        engine,
        q.requests,
        q.choice_ids,
        q.labels,
        done=done,
        progress=cfg.progress,
        share=share,
        record=log.recorder(name),
        sample=logit_sample.members(len(q.prompts)) if cfg.validation else None,
        device=dev,
    )
    laps.skip()  # the pass's whole time
    return part
