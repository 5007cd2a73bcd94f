"""`mmlubench engines`: what each engine is, which ones are the defaults, and every option with
its default and meaning.

The description is the first paragraph of the engine module's docstring (whole sentences, the
leading "`name`:" dropped); an option's meaning is its field's `metadata["help"]` (shown blank
where an engine does not declare one).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from typing import Any

WIDTH = 96


def first_paragraph(doc: str | None, name: str) -> str:
    """The docstring's first paragraph as one line, without a leading "`name`:" label."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    for label in (f"`{name}`:", f"{name}:"):
        if paragraph.startswith(label):
            paragraph = paragraph[len(label) :].strip()
    return paragraph[:1].upper() + paragraph[1:]


def option_rows(options_cls: type, case_values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, default, meaning) per option; a case-file value that differs is shown beside."""
    rows = []
    for f in dataclasses.fields(options_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        if f.name in case_values and repr(case_values[f.name]) != default:
            default += f" (case file: {case_values[f.name]!r})"
        rows.append((f.name, default, str(f.metadata.get("help", ""))))
    return rows


def default_marks(name: str, case: dict[str, Any]) -> list[str]:
    """Which defaults `name` is under the case file (`engine: auto` depends on the device)."""
    from mmlubench.config.config import AUTO_ENGINE

    marks = []
    if case.get("engine") == name:
        marks.append("default infer engine")
    elif case.get("engine", "auto") == "auto":
        marks += [
            f"default infer engine on {'CPU' if dev == 'cpu' else 'CUDA'}"
            for dev, engine in AUTO_ENGINE.items()
            if engine == name
        ]
    if case.get("val_engine", "eager") == name:
        marks.append("default val engine")
    return marks


def describe_engines() -> str:
    """The text of `mmlubench engines`."""
    from mmlubench.config.config import DEFAULT_CASE
    from mmlubench.engines import ENGINES, engine_class
    from mmlubench.yamlfile import read_yaml

    case = read_yaml(DEFAULT_CASE)
    case_engines = case.get("engines") or {}
    lines = textwrap.wrap(
        f"Engines: choose with --engine NAME (infer pass) or --val-engine NAME "
        f"(val pass); set options with --set engines.NAME.OPTION=VALUE or "
        f"under engines: in the case file ({DEFAULT_CASE.name}).",
        WIDTH,
    )
    for name in ENGINES:
        cls = engine_class(name)
        marks = default_marks(name, case)
        lines.append("")
        lines.append(f"{name}" + (f"  [{', '.join(marks)}]" if marks else ""))
        about = first_paragraph(sys.modules[cls.__module__].__doc__, name)
        lines += textwrap.wrap(about, WIDTH, initial_indent="    ", subsequent_indent="    ")
        rows = option_rows(cls.Options, case_engines.get(name) or {})
        if not rows:
            lines.append("    (no options)")
        width = max((len(n) + len(d) for n, d, _ in rows), default=0) + 3
        for opt, default, meaning in rows:
            head = f"    {opt} = {default}"
            text = f"{head:<{width + 4}}  {meaning}".rstrip()
            lines += textwrap.wrap(text, WIDTH, subsequent_indent=" " * (width + 10)) or [head]
    return "\n".join(lines)
