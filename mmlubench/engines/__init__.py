"""Engine registry: engines are registered by name and imported only when chosen.

An engine turns token ids into last-position logits and knows nothing of MMLU, scoring or timing.
Adding one means adding a file here and a line to ENGINES; the runner does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from mmlubench.errors import ConfigError
from mmlubench.typed import build_dataclass
from mmlubench.yamlfile import COMMAND_LINE

# name -> "module:Class"
ENGINES: dict[str, str] = {
    "eager": "mmlubench.engines.eager:EagerEngine",
    "inductor": "mmlubench.engines.inductor:InductorEngine",
    "shared-prefix": "mmlubench.engines.shared_prefix:SharedPrefixEngine",
    "null": "mmlubench.engines.null:NullEngine",
}


def engine_class(name: str) -> type:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r} (known: {', '.join(sorted(ENGINES))})")
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def engine_options(
    name: str, options: Mapping[str, Any], source: str | Mapping[str, str] = COMMAND_LINE
) -> Any:
    """Engine `name`'s typed Options from {option: value}, each checked against its type
    (typed.py); the one way options are built (config validation, the runner, bench scripts).

    `source` says where the values were set, for the errors: one file (or "command line") for
    all, or {option: file} when the options came from several config layers. An error names
    the option and its source; one from the Options' own `check()` (options that do not go
    together) names every source involved."""

    def where(opt: str) -> str:
        return source if isinstance(source, str) else source.get(opt, "defaults")

    opts = build_dataclass(
        engine_class(name).Options,
        {opt: (value, where(opt)) for opt, value in options.items()},
        what=f"engines.{name} option",
    )
    check = getattr(opts, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            sources = sorted({where(opt) for opt in options}) or ["defaults"]
            raise ConfigError(f"{', '.join(sources)}: engines.{name}: {e}") from None
    return opts
