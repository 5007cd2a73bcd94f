"""The questions of a run, read and tokenized, in this process or in a helper process that
does it while this one imports torch and the model code.

On an H200 machine the start-up before the val pass took 21 s, nearly all of it imports in
turn: torch (3-4 s), transformers' model code (3-7 s), Inductor (3.8 s), and the prompts'
tokenizing (2.6 s) taking turns with them for the GIL. The questions need none of torch
(their tokenizer is the `tokenizers` library's where it can be, data/tokenizer_json.py), so a
helper process (`Ahead`) reads the MMLU files and tokenizes the prompts on another core from
the run's first second, and the run takes its result when it needs it. This module imports
nothing of torch: the helper imports only it and data/.

Where the run's device is a CPU, or the process has one core, the questions are read here:
the helper would take the cores the run computes on.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmlubench.errors import MmlubenchError
from mmlubench.helper_env import helper_env
from mmlubench.model.imports import MIN_CORES, usable_cores


@dataclass(frozen=True)
class QuestionSpec:
    """What the questions depend on (the config's keys, plain values: the helper's input)."""

    mmlu_path: str
    split: str
    subjects: list[str] | None
    limit: int | None
    few_shots: int
    weight_path: str
    prompt_style: str
    max_seq_len: int
    bos: bool

    @classmethod
    def from_config(cls, cfg: Any) -> QuestionSpec:
        return cls(
            str(cfg.mmlu_path),
            cfg.split,
            list(cfg.subjects) if cfg.subjects else None,
            cfg.limit,
            cfg.few_shots,
            str(cfg.weight_path),
            cfg.prompt_style,
            cfg.max_seq_len,
            cfg.bos,
        )


def read(spec: QuestionSpec) -> tuple[Any, Any]:
    """The MMLU files read and the model folder's tokenizer."""
    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import load_tokenizer

    dataset = load_mmlu(spec.mmlu_path, spec.split, spec.subjects, spec.limit, spec.few_shots)
    return dataset, load_tokenizer(spec.weight_path)


def tokenize(
    spec: QuestionSpec, dataset: Any, tokenizer: Any, progress: bool = False
) -> tuple[list, list[int]]:
    """Every prompt built and tokenized, and the answer letters' ids."""
    from mmlubench.data.prompts import build_prompts, choice_token_ids, without_bos

    prompts = build_prompts(
        dataset, tokenizer, spec.prompt_style, spec.few_shots, spec.max_seq_len, progress
    )
    prompts = without_bos(prompts, None if spec.bos else tokenizer.bos_token_id)
    return prompts, choice_token_ids(tokenizer)


def read_and_tokenize(spec: QuestionSpec) -> tuple[Any, list, list[int], dict[str, float]]:
    """(tokenizer, prompts, answer letter ids, seconds by step): `read`, then `tokenize`."""
    t0 = time.perf_counter()
    dataset, tokenizer = read(spec)
    t1 = time.perf_counter()
    prompts, choice_ids = tokenize(spec, dataset, tokenizer)
    times = {"data_load_s": t1 - t0, "tokenize_s": time.perf_counter() - t1}
    return tokenizer, prompts, choice_ids, times


class Ahead:
    """The helper process that reads and tokenizes the questions; `result` waits for it."""

    def __init__(self, spec: QuestionSpec) -> None:
        self.spec = spec
        fd, self.path = tempfile.mkstemp(prefix="mmlubench-questions-", suffix=".pickle")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(asdict(spec), f)
        code = "import sys; from mmlubench.run.questions import child; child(sys.argv[1])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, self.path],
            stdin=subprocess.DEVNULL,
            env=helper_env(),
            start_new_session=True,  # a Ctrl-C is the run's to handle; stop() ends the helper
        )

    @classmethod
    def start(cls, cfg: Any) -> Ahead | None:
        """The helper started for the run of `cfg`, or None where it reads the questions
        itself (a CPU device, one core)."""
        if str(cfg.device).split(":")[0] == "cpu" or usable_cores() < MIN_CORES:
            return None
        return cls(QuestionSpec.from_config(cfg))

    def result(self) -> tuple[Any, list, list[int], dict[str, float]]:
        """(tokenizer, prompts, answer letter ids, the helper's own seconds by step). An
        error of the input (MmlubenchError) is raised as the helper met it; where the helper
        itself failed, the questions are read here instead."""
        try:
            self.process.wait()
            with open(self.path, "rb") as f:
                status, payload = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            status, payload = "failed", None
        finally:
            Path(self.path).unlink(missing_ok=True)
        if status == "ok":
            return payload
        if status == "error" and isinstance(payload, MmlubenchError):
            raise payload
        return read_and_tokenize(self.spec)

    def stop(self) -> None:
        """The helper stopped (a run that failed before it took the questions)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        Path(self.path).unlink(missing_ok=True)


def child(path: str) -> None:
    """The helper's work: the spec read from `path`, the result (or the error) written there."""
    with open(path, "rb") as f:
        spec = QuestionSpec(**pickle.load(f))
    try:
        out: tuple = ("ok", read_and_tokenize(spec))
    except MmlubenchError as e:
        out = ("error", e)
    except Exception as e:  # the run reads the questions itself then
        out = ("failed", f"{type(e).__name__}: {e}")
    try:
        data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # e.g. a tokenizer that does not pickle
        data = pickle.dumps(("failed", f"{type(e).__name__}: {e}"))
    with open(path, "wb") as f:  # the run's own file (mkstemp); it reads it after the exit
        f.write(data)
