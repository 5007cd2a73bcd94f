"""The steps of a run before its passes: the questions (MMLU files and tokenizer read, prompts
built and tokenized), the run log (new, resumed, or none), the model's weights on the device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmlubench.config.config import Config
from mmlubench.data.mmlu import Dataset
from mmlubench.data.prompts import Prompt
from mmlubench.engines.base import Request
from mmlubench.model.load import ModelInfo, load_model
from mmlubench.run import questions, rundir
from mmlubench.run.distributed import Dist
from mmlubench.run.fingerprint import fingerprint
from mmlubench.run.progress_check import model_vocab
from mmlubench.run.questions import QuestionSpec
from mmlubench.run.resume import NoLog, RunLog


@dataclass
class Questions:
    """The prompts of the run and what the passes need of them."""

    prompts: list[Prompt]
    tokenizer: Any
    choice_ids: list[int]
    requests: list[Request]
    labels: list[str]  # "subject#row", how errors name a question


def read_questions(cfg: Config) -> tuple[Dataset, Any]:
    """The MMLU files read and the model folder's tokenizer (the step `data_load_s`)."""
    return questions.read(QuestionSpec.from_config(cfg))


def tokenize_questions(cfg: Config, dataset: Dataset, tokenizer: Any) -> Questions:
    """Every prompt built and tokenized (the step `tokenize_s`)."""
    # Its tqdm bar only on a terminal: elsewhere its frames pile up into one line (a pass's
    # progress prints plain lines there instead, progress.py).
    progress = cfg.progress and sys.stderr.isatty()
    prompts, choice_ids = questions.tokenize(
        QuestionSpec.from_config(cfg), dataset, tokenizer, progress
    )
    return questions_from(prompts, tokenizer, choice_ids)


def questions_from(prompts: list[Prompt], tokenizer: Any, choice_ids: list[int]) -> Questions:
    """The run's Questions of its tokenized prompts."""
    return Questions(
        prompts,
        tokenizer,
        choice_ids,
        [Request(p.ids, p.prefix_len) for p in prompts],
        [f"{p.subject}#{p.index}" for p in prompts],
    )


def open_log(
    cfg: Config, d: Dist, run_dir: Path | None, resumed: bool, q: Questions, e2e_start: float
) -> NoLog:
    """The resume log (before the model loads: a mismatching resume fails in seconds); a
    data-parallel run writes its config and fingerprint for the record and keeps no log."""
    if not d.is_main or run_dir is None:
        return NoLog()
    fp = fingerprint(cfg, q.prompts, q.choice_ids, d.world)
    if resumed:
        return RunLog.resume(run_dir, fp, e2e_start, model_vocab(cfg.weight_path, q.tokenizer))
    rundir.write_run_files(run_dir, cfg, fp)
    return NoLog() if d.active else RunLog(run_dir, len(q.prompts), e2e_start)


def load_weights(cfg: Config) -> tuple[torch.nn.Module, ModelInfo]:
    """The model on its device, and what it is."""
    # No "Loading weights" bar from transformers: loading is one line of the run's, not a bar.
    return load_model(
        cfg.weight_path, cfg.precision, cfg.device, cfg.random_weights, cfg.seed, progress=False
    )
