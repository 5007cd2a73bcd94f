"""Fill a dataclass from {key: (value, source)} and check every value against its type hint.

Errors name the key and its source (a file or "command line"); the Config and every engine's
Options are filled this way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from mmlubench.errors import ConfigError, short


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def check_value(tp: Any, value: Any) -> Any:
    """Return `value` converted to type `tp`, or raise ValueError saying what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(arg, value)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(" or ".join(errors) + (" or null" if type(None) in args else ""))
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"expected {_type_name(tp)}, got {short(value)}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # "a,b" on the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {short(value)}")
        return [check_value(item_tp, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {short(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {short(value)}")
        return value
    if tp is float:
        number = math.nan
        if not isinstance(value, bool) and isinstance(value, (int, float, str)):
            # "abc", or an integer beyond the float range, is no number either.
            with contextlib.suppress(ValueError, OverflowError):
                number = float(value)
        if not math.isfinite(number):  # NaN/inf are no rate or interval
            raise ValueError(f"expected a finite number, got {short(value)}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {short(value)}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp}")


def build_dataclass(cls: type, merged: Mapping[str, tuple[Any, str]], what: str = "key") -> Any:
    """Fill dataclass `cls` from {key: (value, source)}; errors name the key and its source.

    Keys `engines.<name>.<option>` are gathered, still with their sources, into
    `engines[name][option] = (value, source)` for the engine to validate.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    engines: dict[str, dict[str, tuple[Any, str]]] = {}
    for key, (value, source) in merged.items():
        top, _, rest = key.partition(".")
        if top not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown {what} {key!r} (known: {known})")
        if top == "engines" and "engines" in names:
            if not rest:
                raise ConfigError(
                    f"{source}: key 'engines': expected a mapping, got {short(value)}"
                )
            name, _, opt = rest.partition(".")
            if not opt:
                if value is not None and not isinstance(value, Mapping):
                    raise ConfigError(
                        f"{source}: key {key!r}: expected a mapping of options, got {short(value)}"
                    )
                engines.setdefault(name, {})
                continue
            engines.setdefault(name, {})[opt] = (value, source)
            continue
        if rest:  # "limit.x": only engines.<name>.<option> has sub-keys
            raise ConfigError(f"{source}: unknown {what} {key!r} ({top!r} has no sub-keys)")
        try:
            kwargs[key] = check_value(hints[key], value)
        except ValueError as e:
            raise ConfigError(f"{source}: {what} {key!r}: {e}") from None
    if "engines" in names:
        kwargs["engines"] = engines
    return cls(**kwargs)
