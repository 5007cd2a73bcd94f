"""The vendor layer of the config: what `--vendor YAML|NAME` puts between the case and the flags.

A path names a vendor YAML file. A name is, in this order: a vendor YAML shipped with mmlubench
(`configs/vendors/NAME.yaml`), else the installed plug-in NAME's own config (its class's `config`
attribute: a mapping, or a YAML file beside its module; none = just `vendor: NAME`), else an
error that lists the names known. So a vendor's package, one module registered under the entry
point group `mmlubench.vendors`, is enough for `--vendor NAME`: mmlubench does not change.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmlubench.device.vendors import ENTRY_POINT_GROUP, load_plugin, plugins
from mmlubench.errors import ConfigError
from mmlubench.yamlfile import COMMAND_LINE, read_yaml

# A bare name (no folder, no .yaml): looked up among shipped files and plug-ins.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?<!\.yaml)(?<!\.yml)")


def known_vendors(folder: Path) -> list[str]:
    """Every name `--vendor` accepts: the shipped vendor YAMLs and the plug-ins (built-in and
    installed)."""
    return sorted({p.stem for p in folder.glob("*.yaml")} | set(plugins()))


def plugin_layer(name: str) -> tuple[str, dict[str, Any]]:
    """(source, mapping) of the installed plug-in `name`'s config; `vendor: name` unless its
    config names another plug-in."""
    cls = load_plugin(name)
    where = f"vendor plug-in {name!r} ({plugins()[name]})"
    config = cls.config
    if config is None:
        source, data = where, {}
    elif isinstance(config, Mapping):
        source, data = f"{where} config", dict(config)
    elif isinstance(config, str | Path):
        path = Path(config)
        if not path.is_absolute():  # beside the plug-in's module, wherever it is installed
            module_file = getattr(sys.modules.get(cls.__module__), "__file__", None) or "."
            path = Path(module_file).parent / path
        source, data = str(path), read_yaml(path)
    else:
        raise ConfigError(
            f"{where}: 'config' must be a mapping, the path of a YAML file or "
            f"None, got {type(config).__name__}"
        )
    data.setdefault("vendor", name)
    return source, data


def vendor_layer(spec: str | Path, folder: Path) -> tuple[str, dict[str, Any]]:
    """(source, mapping) of `--vendor spec`: a YAML file, or a name (shipped YAML in `folder`,
    else an installed plug-in's config); an unknown name is one ConfigError listing the known
    ones."""
    path = Path(spec)
    if path.exists() or not NAME_RE.fullmatch(str(spec)):
        return str(path), read_yaml(path)  # a path; read_yaml names it if it is missing
    name = str(spec)
    if (folder / f"{name}.yaml").is_file():
        return str(folder / f"{name}.yaml"), read_yaml(folder / f"{name}.yaml")
    if name in plugins():
        return plugin_layer(name)
    raise ConfigError(
        f"{COMMAND_LINE}: --vendor {name!r}: no such file, and no vendor of that "
        f"name (known: {', '.join(known_vendors(folder))}; a vendor is a YAML "
        f"under configs/vendors/ or a plug-in installed under the entry point "
        f"group {ENTRY_POINT_GROUP!r})"
    )
