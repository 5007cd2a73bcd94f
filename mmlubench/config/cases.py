"""The packaged cases (FlagPerf's MMLU family) and their reference results.

Each case YAML under configs/ may carry `reference`: the row its FlagPerf README reports, by
precision, with the keys of `ReferenceRow` (our metric names, so a run compares key by key).
`report` and `compare` show a run against it; `mmlubench cases` lists the cases.
A family case also names its model by `model_config` (config.json values, MODEL_KEYS): a model
that agrees is the case's own (`--model` picks that case; its flops_per_token holds), another
one runs under a warning, and `--model` without a case runs the generic case `mmlu`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmlubench.config.config import CONFIG_DIR, read_yaml
from mmlubench.config.reference import ReferenceRow, parse_reference

if TYPE_CHECKING:
    from mmlubench.results.document import Result


def reference_row(result: Result) -> ReferenceRow | None:
    """The reference row for a run's case and precision, if its config carries one."""
    ref = result.config.reference
    if not ref:
        return None
    try:
        return parse_reference(ref).get(result.metrics.precision)
    except ValueError:  # a result written by another version: no comparison, no failure
        return None


# (label, metric key of result.json's metrics, ReferenceRow field)
VS_REFERENCE = [
    ("p_infer_core", "p_infer_core_tok_per_s", "p_infer_core_tok_per_s"),
    ("p_infer_whole", "p_infer_whole_tok_per_s", "p_infer_whole_tok_per_s"),
    ("p_val_core", "p_val_core_tok_per_s", "p_val_core_tok_per_s"),
    ("e2e_time", "e2e_time_s", "e2e_time_s"),
]


def vs_reference(result: Result) -> str | None:
    """One line: this run's throughputs and e2e time over the case's reference row."""
    row = reference_row(result)
    if row is None:
        return None
    m = result.metrics
    parts = []
    for label, key, field in VS_REFERENCE:
        ours, theirs = getattr(m, key), getattr(row, field)
        if ours is not None and theirs:
            parts.append(f"{label} {ours:,.1f} vs {theirs:,.1f} ({ours / theirs:.2f}x)")
    if m.acc_infer is not None and not result.random_weights:
        parts.append(f"acc {100 * m.acc_infer:.1f}% vs {100 * row.acc_infer:.1f}%")
    return f"vs reference ({row.tool} on {row.device}, {m.precision}; {row.source}): " + "; ".join(
        parts
    )


GENERIC_CASE = "mmlu"  # the case `--model` runs when no case is named and none matches
# config.json keys that identify a case's model (its size and vocabulary, not its file).
MODEL_KEYS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


def model_differences(model: Mapping[str, Any], case_model: Mapping[str, Any]) -> list[str]:
    """How a model's config.json differs from a case's `model_config` ([] when it agrees).
    A config without num_key_value_heads has as many as attention heads (transformers')."""

    def value(cfg: Mapping[str, Any], key: str) -> Any:
        if key == "num_key_value_heads" and cfg.get(key) is None:
            return cfg.get("num_attention_heads")
        return cfg.get(key)

    return [
        f"{k} {value(model, k)!r}, the case's {value(case_model, k)!r}"
        for k in MODEL_KEYS
        if k in case_model and value(model, k) != value(case_model, k)
    ]


@dataclass(frozen=True)
class CaseInfo:
    name: str
    path: Path
    hf_repo: str | None
    weight_dir: str
    precision: str
    reference: dict[str, ReferenceRow]
    model_config: dict[str, Any] | None = None


def case_for_model(model: Mapping[str, Any]) -> CaseInfo | None:
    """The packaged family case whose model this is (by config.json), or None."""
    for case in packaged_cases():
        if case.model_config and not model_differences(model, case.model_config):
            return case
    return None


def packaged_cases() -> list[CaseInfo]:
    """Every case YAML under configs/ (the demo included), by name."""
    out = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        doc = read_yaml(path)
        out.append(
            CaseInfo(
                name=str(doc.get("case", path.stem)),
                path=path,
                hf_repo=doc.get("hf_repo"),
                weight_dir=str(doc.get("weight_dir", "")),
                precision=str(doc.get("precision", "fp16")),
                reference=parse_reference(doc.get("reference") or {}),
                model_config=doc.get("model_config"),
            )
        )
    return out


def format_cases(cases: list[CaseInfo]) -> str:
    """The `mmlubench cases` listing: one block per case."""
    lines = []
    for c in cases:
        lines.append(f"{c.name}  ({c.path.name})")
        lines.append(f"    model: {c.hf_repo or '-'}   weight folder: DATA_DIR/{c.weight_dir}")
        for precision, r in c.reference.items():
            lines.append(
                f"    reference {precision} ({r.tool}, {r.device}): e2e {r.e2e_time_s:g} s, "
                f"p_val {r.p_val_whole_tok_per_s:g}/{r.p_val_core_tok_per_s:g}, p_infer "
                f"{r.p_infer_whole_tok_per_s:g}/{r.p_infer_core_tok_per_s:g} tok/s, MFU "
                f"{100 * r.mfu:.1f}%, acc {100 * r.acc_infer:.1f}%/{100 * r.acc_val:.1f}%, "
                f"mem {r.mem_used_gib:g}/{r.mem_total_gib:g} GiB"
            )
        if not c.reference:
            lines.append("    reference: none")
    return "\n".join(lines)
