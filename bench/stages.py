"""The stages bench/drive.py runs: each one's command, time cap and what it measures.

A stage is a `mmlubench run` on random weights of the model's config (every speed and memory
figure real, accuracy meaningless), a bench tool, or a run under torchrun on a lane's GPUs.
Adding a stage is a line in STAGES.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass
class Setup:
    """What every stage's command is built from."""

    model: Path
    mmlu: Path
    work: Path
    config: str | None = None
    precision: str = "fp16"
    extra: list[str] = field(default_factory=list)  # appended to every `mmlubench run`


@dataclass(frozen=True)
class Stage:
    """A named command with its time cap. `kind`: "run" (`mmlubench run` on random weights of
    the model's config, then `flags`: a flag given again wins), "tool" (bench/`script` on the
    model and MMLU folders) or "dp" (`run` under torchrun on the lane's GPUs). `flags` may name
    {work} and {precision}."""

    what: str
    cap_s: int
    kind: str
    flags: str = ""
    script: str = ""

    def command(self, name: str, s: Setup, gpus: int) -> list[str]:
        """The stage's argv in `s` for a lane of `gpus` GPUs."""
        values = {"work": shlex.quote(str(s.work)), "precision": shlex.quote(s.precision)}
        flags = shlex.split(self.flags.format(**values))
        if self.kind == "tool":
            folders = ["--model-dir", str(s.model), "--mmlu-dir", str(s.mmlu)]
            return [PY, str(REPO / "bench" / self.script), *folders, *flags]
        run = [
            *("-m", "mmlubench", "run", *(["--config", s.config] if s.config else [])),
            *("--random-weights", "--data-dir", "/", "--weight-dir", str(s.model)),
            *("--mmlu-dir", str(s.mmlu), "--device", "cuda", "--precision", s.precision),
            *("--output-dir", str(s.work / "runs"), "--no-progress"),
            *("--run-name", f"dp{gpus}" if self.kind == "dp" else name, *flags, *s.extra),
        ]
        if self.kind == "dp":
            return [PY, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus), *run]
        return [PY, *run]


STAGES: dict[str, Stage] = {
    "case": Stage("the case with its defaults: val and infer passes, cold caches", 220, "run"),
    "case-warm": Stage(
        "the infer pass again after `case` in the same lane: the warm compile",
        90,
        "run",
        "--no-validation",
    ),
    "fp8": Stage(
        "the case with --precision fp8 (val fp16, infer fp8)", 150, "run", "--precision fp8"
    ),
    "reference": Stage(
        "the reference method on the fixed 342-question sample",
        250,
        "run",
        "--engine inductor --limit 6 --set engines.eager.method=reference",
    ),
    "parity": Stage(
        "bench/parity.py: the engines against eager batch 1",
        150,
        "tool",
        "--precision {precision} --out {work}/parity.json",
        "parity.py",
    ),
    "profile": Stage(
        "bench/kernel_profile.py: 3 packs of the infer engine",
        60,
        "tool",
        "--engine shared-prefix --skip 2 --batches 3 --out {work}/profile-infer.json",
        "kernel_profile.py",
    ),
    "dp": Stage("the infer pass data parallel on the lane's GPUs", 250, "dp", "--no-validation"),
    "cpu": Stage(
        "the case on the CPU in fp32: eager, infer only, 2 questions per subject",
        240,
        "run",
        "--device cpu --precision fp32 --engine eager --no-validation --limit 2",
    ),
}
