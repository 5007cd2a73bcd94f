"""Config layers as they are written: YAML files and `--set key=value` flags.

A YAML file must be a mapping; a key given twice, bad syntax or a non-mapping is an error that
names the file and the line. A `--set` value is read as YAML, so `true`, `3`, `[a, b]` work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mmlubench.errors import ConfigError

COMMAND_LINE = "command line"
# The most nodes a document may hold once its aliases are expanded: a config has a few hundred;
# a "billion laughs" file of 415 bytes has 10**9 and took 3.6 GB to refuse.
MAX_NODES = 100_000


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently; FlagPerf's own config manager refuses duplicates, and so do we)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # an unhashable key: PyYAML itself refuses it
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def get_single_node(self):
        node = super().get_single_node()
        sizes: dict[int, int] = {}

        def size(n: yaml.Node) -> int:  # aliases share nodes: each node counted once per use
            if id(n) not in sizes:
                kids = (
                    n.value
                    if isinstance(n, yaml.SequenceNode)
                    else [c for pair in n.value for c in pair]
                    if isinstance(n, yaml.MappingNode)
                    else []
                )
                sizes[id(n)] = min(1 + sum(size(k) for k in kids), MAX_NODES + 1)
            return sizes[id(n)]

        if node is not None and size(node) > MAX_NODES:
            raise _TooLarge(node.start_mark.line + 1)
        return node


class _TooLarge(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _load(text: str) -> Any:
    """One YAML document through the strict loader (duplicate keys, alias bombs refused)."""
    return yaml.load(text, Loader=_StrictLoader)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad syntax, a key given twice or a non-mapping names
    the file (and the line where there is one)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, expected a YAML config file")
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    if not p.is_file():
        raise ConfigError(f"{p}: not a regular file, expected a YAML config file")
    try:
        data = _load(p.read_text(encoding="utf-8"))
    except _DuplicateKey as e:
        raise ConfigError(
            f"{p}:{e.line}: key {e.key!r} given twice (first on line {e.first}); remove one"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(e, "problem", None) or str(e).replace("\n", " ")
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    except _TooLarge as e:
        raise ConfigError(
            f"{p}:{e.line}: refused: its aliases expand to more than {MAX_NODES} "
            "values (a config needs a few hundred)"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text: {e}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one `--set key=value` (value read as YAML, so `true`, `3`, `[a, b]` work)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{COMMAND_LINE}: --set expects key=value, got {item!r}")
    try:
        value = _load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(
            f"{COMMAND_LINE}: --set {key}: value is not valid YAML: "
            f"{getattr(e, 'problem', None) or e}"
        ) from None
    except (_DuplicateKey, _TooLarge):
        raise ConfigError(
            f"{COMMAND_LINE}: --set {key}: refused: a key given twice, or "
            f"aliases expanding to more than {MAX_NODES} values"
        ) from None
    return key, value


def dotted_to_nested(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Turn [("engines.eager.batch_size", 8)] into {"engines": {"eager": {"batch_size": 8}}}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{COMMAND_LINE}: key {key!r} sets both a value and a sub-key")
        node[parts[-1]] = value
    return out
