"""How figures, runs and nested records are shown to people: the one place for the small
helpers the table, the HTML pages, the charts and the bench scripts share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

GIB = 1024**3


def num(x: float | None, digits: int = 1) -> str:
    """A number with `digits` decimals and thousands separators (as every table shows it);
    None (not measured) shows as '-'."""
    return "-" if x is None else f"{x:,.{digits}f}"


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage; None shows as '-'."""
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def gib(n_bytes: float | None, digits: int = 1) -> str:
    """Bytes in GiB (no unit appended); None shows as '-'."""
    return "-" if n_bytes is None else f"{n_bytes / GIB:.{digits}f}"


def commit_label(commit: str | None, dirty: bool | None) -> str:
    """A git commit shortened to 12 characters, marked when the tree had uncommitted changes."""
    return (commit or "-")[:12] + (" (dirty)" if dirty else "")


def run_label(run_dir: str | Path) -> str:
    """A run's name: its folder's name (the folder above, when given its result.json)."""
    path = Path(run_dir)
    return (path.parent if path.suffix == ".json" else path).resolve().name


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: {"git": {"commit": x}} -> {"git.commit": x}.
    Empty mappings and every other value (lists included) are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
