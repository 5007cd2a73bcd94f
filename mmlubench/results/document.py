"""The result document (result.json) as typed sections: the one module that knows its keys.

`results.assemble` fills these sections from a run; `report/` (table, html, compare, charts)
and the bench scripts read a finished run through `load` and the attributes here,
never through string keys. Keys carry units: `_s` seconds, `_bytes`, `_tok_per_s` prompt
tokens per second, `_flops`/`_flops_per_s`; `mfu*`, `acc_*` and accuracies are fractions (0..1).

Reading (see `sections`) is tolerant in one direction only: a key a section does not declare
(written by a newer mmlubench, or a field added where the document is built before it is
declared here) is kept in the section's `extra` and written back unchanged; a declared key
without a default that is missing is an error naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlubench.errors import MmlubenchError, short
from mmlubench.results import document_check
from mmlubench.results.ceiling_sections import AtCeiling, Ceiling
from mmlubench.results.provenance import Environment, Model, RunConfig
from mmlubench.results.sections import OMIT_IF_NONE, BadKey, Section

SCHEMA = "mmlubench.result/1"

# The keys of `timings`, seconds, in run order: the steps of a run outside its passes' whole
# times, laps of one clock (run/laps.py), so that with the passes' whole_time_s they add up to
# metrics.e2e_time_s (in a run of one session: a resumed run's passes also hold the time of
# earlier sessions). Runs written before the steps were all timed have only data_load_s,
# tokenize_s, model_load_s and the <pass>_plan_s.
TIMINGS_BEFORE = (
    "startup_s",  # command start to the case: imports, config, checks, run folder and lock
    "early_start_s",  # the engines' early starts, where run here: with one pass only (else
    # beside the first pass, run/pass_steps.EarlyStart; shared-prefix: compile workers)
    "device_open_s",  # the device opened: its plug-in, environment, first memory sample
    "data_load_s",  # the MMLU files and the tokenizer read (GPU runs: the wait for the helper
    # process of run/questions.py that reads and tokenizes them)
    "tokenize_s",  # every prompt built and tokenized
    "model_import_s",  # transformers' model code imported (model/imports.py)
    "model_check_s",  # the model folder checked against the prompts and the device
    "run_log_s",  # config.yaml, fingerprint.json, the progress log opened (or read to resume)
    "model_load_s",  # the weights loaded, or built, on the device
)
TIMINGS_PASS = (  # each as <pass>_<key>, the val pass's first
    "setup_s",  # a memory sample, the pass's engine made (fused projections ...), before it
    "plan_s",  # the pass's planning, the one key inside its whole time (its plan_time_s)
    "finish_s",  # after it: the ranks' parts merged, energy read, garbage collected
)
TIMINGS_AFTER = ("end_s",)  # after the last pass: memory sampler stopped, progress log closed


def timing_keys(passes: list[str]) -> list[str]:
    """The keys of `timings` of a run with these passes, in order."""
    per_pass = [f"{name}_{key}" for name in passes for key in TIMINGS_PASS]
    return [*TIMINGS_BEFORE, *per_pass, *TIMINGS_AFTER]


class DocumentError(MmlubenchError):
    """A result document that cannot be read: names the file and the key at fault."""


@dataclass
class Accuracy(Section):
    """One answer rule over one pass: micro (over questions, the reference's figure), macro
    (mean over subjects), and per subject."""

    micro: float
    macro: float
    correct: int
    total: int
    per_subject: dict[str, float]
    per_subject_total: dict[str, int] = field(default_factory=dict)  # older runs: {}


@dataclass
class Engine(Section):
    name: str
    options: dict[str, Any]


@dataclass
class Pass(Section):
    """One pass (`val` or `infer`) over the questions by one engine."""

    engine: Engine
    questions: int
    batches: int
    prompt_tokens: int
    whole_time_s: float
    core_time_s: float
    compile_time_s: float
    whole_tok_per_s: float | None
    core_tok_per_s: float | None
    mfu: float | None
    computed_tokens: int
    padded_tokens: int
    attention_pairs: int
    logit_rows: int
    computed_tok_per_s: float | None
    executed_flops: float
    mfu_computed: float | None
    torch_peak_allocated_bytes: int | None
    accuracy: dict[str, Accuracy]  # by answer rule: "reference", "choices", "token"
    # One row per batch: [questions, prompt tokens, core seconds, seconds since pass start].
    timeline: list[list[float]]
    per_rank: list[dict[str, Any]]
    oom_backoff_count: int = 0
    oom_backoffs: list[dict[str, Any]] = field(default_factory=list)
    plan_time_s: float = 0.0  # engine.plan, inside whole_time_s (older runs: 0)
    # Energy from the vendor plug-in's counter, read at the pass's start and end (all devices
    # of a data-parallel pass summed); null when the device has no counter (never estimated).
    energy_j: float | None = None
    avg_power_w: float | None = None  # energy_j / energy_window_s
    tokens_per_joule: float | None = None  # prompt tokens / energy_j
    joules_per_question: float | None = None
    energy_source: str | None = None
    energy_window_s: float | None = None  # the longest device's time between the two reads
    energy_per_device_j: list[float] | None = None
    # What bounds the speed (vendor plug-in; null where unknown): the board power limit
    # (summed over devices) and the median compute clock of the samples taken in the pass.
    power_limit_w: float | None = None
    sm_clock_mhz_median: float | None = None
    # Against the device's measured ceiling (ceiling_sections; absent when it was not measured):
    # the pass's executed FLOPs at the measured rates, over its core time.
    ceiling_fraction: float | None = field(default=None, metadata=OMIT_IF_NONE)
    at_ceiling: AtCeiling | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class Metrics(Section):
    """The reference table's figures and what they were computed from."""

    precision: str
    e2e_time_s: float
    p_val_whole_tok_per_s: float | None
    p_val_core_tok_per_s: float | None
    p_infer_whole_tok_per_s: float | None
    p_infer_core_tok_per_s: float | None
    mfu: float | None
    mfu_computed: float | None
    computed_tokens: int
    acc_infer: float
    acc_val: float | None
    mem_peak_used_bytes: int | None
    mem_total_bytes: int | None
    torch_peak_allocated_bytes: int | None
    flops_per_token: float | None
    peak_flops_per_s: float | None
    peak_flops_source: str | None
    devices: int
    questions: int
    prompt_tokens: int
    truncated_prompts: int
    shareable_prompts: int
    mem_source: str | None = None  # what measured mem: "nvml", "torch.xpu.mem_get_info", "none"
    # The infer pass's energy figures (null: the device has no energy counter).
    energy_j: float | None = None
    avg_power_w: float | None = None
    tokens_per_joule: float | None = None
    joules_per_question: float | None = None
    # precision fp8: what was quantized and how (engines/fp8.py's RECIPE); absent otherwise.
    precision_recipe: dict[str, str] | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class Agreement(Section):
    """How often the val and infer passes agree (fractions of questions)."""

    same_top_token: float
    same_letter_reference: float
    same_letter_choices: float
    same_letter_token: float | None = None
    # ||infer - val|| / ||val|| of each question's four answer-letter logits, over questions:
    # how far the infer engine's numbers are from the plain model's (fp8's cost; older: null).
    letter_logits_rel_l2_mean: float | None = None
    letter_logits_rel_l2_max: float | None = None
    # The same over the whole vocabulary, on a sample of questions (logit_sample.py): their
    # number (this session's questions both passes computed), mean and max.
    logits_sample_questions: int | None = None
    logits_rel_l2_mean: float | None = None
    logits_rel_l2_max: float | None = None

    def same_letter(self, rule: str) -> float | None:
        """How often both passes gave the same letter under answer rule `rule` (None: the
        run predates that rule)."""
        return {
            "reference": self.same_letter_reference,
            "choices": self.same_letter_choices,
            "token": self.same_letter_token,
        }[rule]


@dataclass
class AccuracySummary(Section):
    rule: str  # the rule the table's accuracy follows
    agreement_val_infer: Agreement | None


@dataclass
class Memory(Section):
    """Device memory used on the whole device (the reference's `mem`), over its total."""

    device_index: int | None
    peak_used_bytes: int | None
    total_bytes: int | None
    torch_peak_allocated_bytes: int | None
    torch_peak_reserved_bytes: int | None
    source: str
    samples: list[list[float]]  # [seconds since the run began, used bytes]
    per_device: list[Memory] | None = field(default=None, metadata=OMIT_IF_NONE)
    vendor: str | None = None  # the vendor plug-in that measured memory and power
    power_samples: list[list[float]] = field(default_factory=list)  # [seconds, watts]
    sm_clock_samples: list[list[float]] = field(default_factory=list)  # [seconds, MHz]


@dataclass
class Result(Section):
    """The whole result.json of a finished run."""

    schema: str
    case: str
    random_weights: bool
    accuracy_meaningful: bool
    warnings: list[str]
    metrics: Metrics
    accuracy: AccuracySummary
    passes: dict[str, Pass]
    timings: dict[str, float]  # the keys of timing_keys (older runs: fewer)
    model: Model
    memory: Memory
    environment: Environment
    config: RunConfig
    # The sessions of a resumed run and how their timings were combined; null for one session.
    resume: dict[str, Any] | None = None
    # The device's own measured rates (mmlubench/ceiling/); absent when not measured.
    ceiling: Ceiling | None = field(default=None, metadata=OMIT_IF_NONE)

    @property
    def infer(self) -> Pass:
        return self.passes["infer"]

    def pass_names(self) -> list[str]:
        """The passes present, in run order."""
        return [n for n in ("val", "infer") if n in self.passes]

    def rule_accuracy(self, name: str, rule: str | None = None) -> Accuracy:
        """Accuracy of pass `name` under `rule` (default: the run's scoring rule)."""
        return self.passes[name].accuracy[rule or self.accuracy.rule]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data in result.json's key order (`resume` after `warnings`; the field
        comes last here only because it has a default)."""
        data = super().to_json()
        head = ["schema", "case", "random_weights", "accuracy_meaningful", "warnings", "resume"]
        return {**{k: data.pop(k) for k in head if k in data}, **data}


def from_json(data: Any, source: str | Path = "result.json") -> Result:
    """A parsed document as typed sections; DocumentError names `source` and the bad key."""
    if not isinstance(data, dict):
        raise DocumentError(f"{source}: not a result document (a JSON object is expected)")
    try:
        result = Result.from_json(data)
        document_check.check(result, data)
        return result
    except BadKey as e:
        raise DocumentError(f"{source}: {e} (not a complete mmlubench result)") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def load(run: str | Path) -> Result:
    """The result of a run folder (or of its result.json file)."""
    path = Path(run)
    if path.is_dir():
        path = path / "result.json"
    if not path.is_file():
        raise DocumentError(f"{path}: no result.json here (is this a run folder?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # also a 5000-digit number, 200,000 levels
        raise DocumentError(f"{path}: not valid JSON: {short(str(e), 160)}") from None
    except OSError as e:
        raise DocumentError(f"{path}: cannot read: {e.strerror}") from None
    return from_json(data, path)
