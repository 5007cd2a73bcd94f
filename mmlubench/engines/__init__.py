"""Engine registry: engines are registered by name and imported only when chosen.

An engine turns token ids into last-position logits and knows nothing of MMLU, scoring or timing.
Adding one means adding a file here and a line to ENGINES; the runner does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from mmlubench.errors import ConfigError

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


def engine_options(name: str, options: Mapping[str, Any], source: str = "command line") -> Any:
    """Build the engine's typed Options from {option: value}, all set by `source`."""
    return engine_options_from(name, {k: (v, source) for k, v in options.items()})


def engine_options_from(name: str, options: Mapping[str, tuple[Any, str]]) -> Any:
    """Build the engine's typed Options from {option: (value, where it was set)}; errors name
    the option and the file (or "command line") that set it."""
    from mmlubench.typed import build_dataclass

    opts = build_dataclass(engine_class(name).Options, options, what=f"engines.{name} option")
    check = getattr(opts, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            sources = sorted({s for _, s in options.values()}) or ["defaults"]
            raise ConfigError(f"{', '.join(sources)}: engines.{name}: {e}") from None
    return opts
