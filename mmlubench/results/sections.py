"""Typed JSON sections: dataclasses read from parsed JSON and written back, in field order.

A section declares its keys as dataclass fields (nested sections, `X | None`, `list[X]`,
`dict[str, X]`, and float/int/str/bool leaves, which are checked). Reading names the dotted key
at fault (`BadKey`); a key the section does not declare is kept in its `extra` and written back
unchanged, so a document from a newer (or older) writer loses nothing.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

OMIT_IF_NONE = {"omit_if_none": True}  # field metadata: no key at all when the value is None
S = TypeVar("S", bound="Section")


class BadKey(Exception):
    """A key of the document that is missing or holds the wrong kind of value."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{problem} {key!r}" if key else problem)


_LEAVES: dict[Any, tuple[type, ...]] = {
    float: (int, float),
    int: (int,),
    str: (str,),
    bool: (bool,),
}


def _read(tp: Any, value: Any, key: str) -> Any:
    """`value` (parsed JSON) as type `tp`; nested sections built, leaves checked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _read(next(a for a in args if a is not type(None)), value, key)
    if value is None and tp is not Any:
        raise BadKey(key, "null value for key")
    if isinstance(tp, type) and issubclass(tp, Section):
        if not isinstance(value, dict):
            raise BadKey(key, "not an object:")
        return tp.from_json(value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise BadKey(key, "not an object:")
        return {k: _read(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise BadKey(key, "not a list:")
        return [_read(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    ok = _LEAVES.get(tp)
    if ok and (not isinstance(value, ok) or (tp is not bool and isinstance(value, bool))):
        raise BadKey(key, f"not a {tp.__name__}:")
    if ok and tp is not bool and isinstance(value, int) and value.bit_length() > 128:
        raise BadKey(key, "number out of range:")
    return value


def _write(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _write(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_write(v) for v in value]
    return value


@dataclass
class Section:
    """A JSON object with declared keys (the dataclass fields, in document order)."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    @classmethod
    def from_json(cls: type[S], data: dict[str, Any], key: str = "") -> S:
        hints = typing.get_type_hints(cls)
        known, values = set(), {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            known.add(f.name)
            where = f"{key}.{f.name}" if key else f.name
            if f.name in data:
                values[f.name] = _read(hints[f.name], data[f.name], where)
            elif f.default is MISSING and f.default_factory is MISSING:
                raise BadKey(where, "missing key")
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and not (value is None and f.metadata.get("omit_if_none")):
                out[f.name] = _write(value)
        out.update(_write(self.extra))
        return out
