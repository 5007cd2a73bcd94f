"""Which torch.compile settings a config may give: an allow-list, checked before any work.

Inductor's config holds keys that name programs and folders (`cpp.cxx` is the C++ compiler it
runs, `cuda.cutlass_dir` a folder it builds from) and hooks that take Python callables. A config
file (a vendor file, a resumed run's config.yaml) must never make mmlubench run a program, so
only known Inductor keys whose default is a plain bool, int, float or text, given a value of
that type, are accepted; keys that name programs, paths, hooks or test-only faults are refused
whatever their value.
"""

from __future__ import annotations

from typing import Any

MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Parts of a key's last component that say it names a program, a file or folder, or code.
REFUSED_ENDINGS = (
    "_dir",
    "_path",
    "_root",
    "_home",
    "_file",
    "_url",
    "_fn",
    "_pass",
    "_class",
    "cmd",
    "cxx",
    "cc",
    "compiler",
    "_output",
    "logpath",
)
REFUSED_PARTS = (
    "path",
    "dir",
    "cxx",
    "compiler",
    "testing_only",
    "upload",
    "remote",
    "custom",
    "command",
    "shim",
    "_lib",
    "home",
    "log_",
    "debug",
    "save",
    "profile",
    "generate",
    "dump",
    "store_",
    "hook",
    "worker",
)
# Sections that write files (trace: debug folders) or exist only for tests or AOT packaging.
REFUSED_SECTIONS = ("trace.", "test_configs.", "aot_inductor.", "lookup_table.")


def _known() -> dict[str, Any]:
    import torch._inductor.config as inductor_config

    return inductor_config.get_config_copy()


def _refused_name(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return (
        last.startswith("_")
        or last.isupper()
        or last.endswith(REFUSED_ENDINGS)
        or key.startswith(REFUSED_SECTIONS)
        or any(part in key.lower() for part in REFUSED_PARTS)
    )


def _plain(default: Any, value: Any) -> bool:
    """A value of the default's own plain type (an int where a float is expected)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return type(default) in (int, str) and type(value) is type(default)


def check_compile_options(options: dict | None, mode: str | None = None) -> None:
    """Refuse a torch.compile mode or Inductor option that is not on the allow-list, with a
    ValueError naming the key."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {str(mode)[:40]!r}")
    if not options:
        return
    if not isinstance(options, dict):
        raise ValueError(f"Inductor options must be a mapping, got {type(options).__name__}")
    known = _known()
    for key, value in options.items():
        name = str(key)[:80]
        if not isinstance(key, str) or key not in known:
            raise ValueError(f"unknown Inductor option {name!r}")
        if _refused_name(key) or not isinstance(known[key], (bool, int, float, str)):
            raise ValueError(
                f"Inductor option {name!r} is refused: it names a program, file, "
                "folder or hook, or takes more than a plain value"
            )
        if not _plain(known[key], value):
            raise ValueError(
                f"Inductor option {name!r} takes a {type(known[key]).__name__}, "
                f"got a {type(value).__name__}"
            )
