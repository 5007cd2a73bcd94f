"""FlagPerf reference rows: one row of a case's result table, by precision (config key
`reference`). Kept apart from cases.py so that config.py can validate rows without a cycle."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReferenceRow:
    """One row of a FlagPerf result table (fractions, not percent; memory in GiB)."""

    device: str
    tool: str
    e2e_time_s: float
    p_val_whole_tok_per_s: float
    p_val_core_tok_per_s: float
    p_infer_whole_tok_per_s: float
    p_infer_core_tok_per_s: float
    mfu: float
    acc_infer: float
    acc_val: float
    mem_used_gib: float
    mem_total_gib: float
    source: str  # where the row was read (repository and path)


_NUMBERS = [f.name for f in dataclasses.fields(ReferenceRow) if f.type == "float"]


def parse_reference(value: Mapping[str, Any]) -> dict[str, ReferenceRow]:
    """{precision: ReferenceRow} from the `reference` config value; ValueError names the key."""
    rows: dict[str, ReferenceRow] = {}
    names = [f.name for f in dataclasses.fields(ReferenceRow)]
    for precision, row in value.items():
        if precision not in ("fp16", "bf16", "fp32"):
            raise ValueError(f"reference.{precision}: expected a precision (fp16, bf16, fp32)")
        if not isinstance(row, Mapping):
            raise ValueError(f"reference.{precision}: expected a mapping, got {row!r}")
        unknown = sorted(set(row) - set(names))
        missing = [n for n in names if n not in row]
        if unknown or missing:
            raise ValueError(
                f"reference.{precision}: unknown keys {unknown}, missing keys {missing}"
                if unknown
                else f"reference.{precision}: missing keys {missing}"
            )
        fields: dict[str, Any] = {}
        for name in names:
            v = row[name]
            if name in _NUMBERS:
                try:
                    v = float(v)  # YAML reads 2305e0 as text
                except (TypeError, ValueError):
                    raise ValueError(
                        f"reference.{precision}.{name}: expected a number, got {v!r}"
                    ) from None
            elif not isinstance(v, str):
                raise ValueError(f"reference.{precision}.{name}: expected text, got {v!r}")
            fields[name] = v
        rows[precision] = ReferenceRow(**fields)
    return rows
