"""One typed config for a run, layered from the case YAML, a vendor YAML and the command line.

Each layer is a mapping plus the name of where it came from; a later layer overrides an earlier
one key by key (nested mappings are merged). Validation happens once, on the merged result, and
every error names the key and the layer (file or "command line") that set it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmlubench.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CASE = CONFIG_DIR / "deepseek_7b_mmlu.yaml"
COMMAND_LINE = "command line"


@dataclass
class Config:
    """Everything a run needs to know. Field comments are the user-facing documentation."""

    case: str = "deepseek_7b_mmlu"
    # Root folder; weight_dir and mmlu_dir are relative to it (an absolute path wins).
    data_dir: str = "."
    weight_dir: str = "deepseek_7b_hf"
    mmlu_dir: str = "mmlu_dataset/data"
    # Which questions: split, subject list (None = all), first `limit` questions of each subject.
    split: Literal["test", "val", "dev"] = "test"
    subjects: list[str] | None = None
    limit: int | None = None
    few_shots: int = 5
    max_seq_len: int = 2048
    prompt_style: Literal["reference", "lm-eval"] = "reference"
    # false: no BOS in front of the prompts (a leading one is dropped after truncation), as
    # FlagPerf's llama3_8b_mmlu ran; its truncation still counts one: docs/CASES.md.
    bos: bool = True
    scoring: Literal["reference", "choices", "token"] = "reference"
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    device: str = "cuda"
    # Build the model from config.json with random weights: speed only, accuracy is meaningless.
    random_weights: bool = False
    seed: int = 0
    # The `val` pass (plain HF model, eager) and the `infer` pass (engine chosen by name).
    validation: bool = True
    val_engine: str = "eager"
    engine: str = "shared-prefix"
    # Options of each engine, by engine name; each engine validates its own section.
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    # FLOPs per prompt token for MFU: a product such as "2*7e9", or "2*params" (counted).
    flops_per_token: str = "2*7e9"
    # Dense peak FLOP/s of one device in `precision`, or one per precision ({fp16: 312e12, ...},
    # as vendor YAMLs give it); None = look the device up in the table (metrics.py).
    peak_flops: float | dict[str, float] | None = None
    # Vendor plug-in (mmlubench/vendors): synchronize, device-wide memory, name, energy.
    # None = the plug-in of the device type (cpu, nvidia for cuda, generic otherwise).
    vendor: str | None = None
    # The case's FlagPerf reference result, by precision (cases.ReferenceRow's keys), shown
    # by `report`/`compare` as "vs reference"; and the HF repo `download` fetches weights from.
    reference: dict[str, dict[str, Any]] | None = None
    hf_repo: str | None = None
    mem_sample_interval_s: float = 5.0
    output_dir: str = "runs"
    run_name: str | None = None
    progress: bool = True

    @property
    def weight_path(self) -> Path:
        return Path(self.data_dir) / self.weight_dir

    @property
    def mmlu_path(self) -> Path:
        return Path(self.data_dir) / self.mmlu_dir

    def engine_options(self, name: str) -> dict[str, Any]:
        return dict(self.engines.get(name) or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Layer = tuple[str, Mapping[str, Any]]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad syntax or a non-mapping names the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text: {e}") from None
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
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{COMMAND_LINE}: --set {key}: value is not valid YAML: {e}") from None
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


def _flatten(mapping: Mapping[str, Any], source: str) -> dict[str, tuple[Any, str]]:
    """{key: (value, source)}; only `engines.<name>.<option>` is split into dotted keys."""
    out: dict[str, tuple[Any, str]] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {key!r} is not text")
        if key == "engines" and isinstance(value, Mapping):
            for name, options in value.items():
                if name is None:  # YAML reads an unquoted `null:` key as None: the null engine
                    name = "null"
                if isinstance(options, Mapping) and options:
                    for opt, v in options.items():
                        out[f"engines.{name}.{opt}"] = (v, source)
                else:
                    out[f"engines.{name}"] = (options, source)
        else:
            out[key] = (value, source)
    return out


def merge_layers(layers: Iterable[Layer]) -> dict[str, tuple[Any, str]]:
    """Merge layers into {dotted key: (value, source of the last layer that set it)}."""
    merged: dict[str, tuple[Any, str]] = {}
    for source, mapping in layers:
        merged.update(_flatten(mapping, source))
    return merged


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
            raise ValueError(f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # "a,b" on the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return [check_value(item_tp, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        number = math.nan
        if not isinstance(value, bool) and isinstance(value, (int, float, str)):
            # "abc", or an integer beyond the float range, is no number either.
            with contextlib.suppress(ValueError, OverflowError):
                number = float(value)
        if not math.isfinite(number):  # NaN/inf are no rate or interval
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {value!r}")
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
                raise ConfigError(f"{source}: key 'engines': expected a mapping, got {value!r}")
            name, _, opt = rest.partition(".")
            if not opt:
                if value is not None and not isinstance(value, Mapping):
                    raise ConfigError(
                        f"{source}: key {key!r}: expected a mapping of options, got {value!r}"
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


_FLOPS_RE = re.compile(r"^\s*([0-9.eE+\-]+|params)(\s*\*\s*([0-9.eE+\-]+|params))*\s*$")


def parse_flops_per_token(expr: str, n_params: int | None = None) -> float | None:
    """Evaluate "2*7e9" or "2*params"; None if it needs params that are not known yet."""
    if not _FLOPS_RE.match(expr):
        raise ValueError(f"expected a product like '2*7e9' or '2*params', got {expr!r}")
    value = 1.0
    for factor in expr.split("*"):
        factor = factor.strip()
        if factor == "params":
            if n_params is None:
                return None
            value *= n_params
        else:
            value *= float(factor)
    if not 0 < value < math.inf:
        raise ValueError(f"must be positive and finite, got {expr!r}")
    return value


def _validate_case_keys(cfg: Config, fail) -> None:
    """peak_flops (a number or one per precision) and the case's reference rows."""
    if isinstance(cfg.peak_flops, dict):  # per precision; YAML reads 312e12 as text
        try:
            cfg.peak_flops = {str(k): check_value(float, v) for k, v in cfg.peak_flops.items()}
        except ValueError as e:
            fail("peak_flops", f"per-precision values: {e}")
    for peak in (cfg.peak_flops.values() if isinstance(cfg.peak_flops, dict)
                 else [cfg.peak_flops]):
        if peak is not None and peak <= 0:
            fail("peak_flops", f"must be positive, got {peak}")
    if cfg.reference is not None:
        from mmlubench.reference import parse_reference

        try:
            parse_reference(cfg.reference)
        except ValueError as e:
            fail("reference", str(e))


def validate(cfg: Config, sources: Mapping[str, str]) -> None:
    """Reject impossible values; `sources` maps each key to where it was set."""

    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{sources.get(key, 'defaults')}: key {key!r}: {msg}")

    if cfg.few_shots < 0:
        fail("few_shots", f"must be >= 0, got {cfg.few_shots}")
    if cfg.max_seq_len < 8:
        fail("max_seq_len", f"must be >= 8, got {cfg.max_seq_len}")
    if cfg.limit is not None and cfg.limit < 1:
        fail("limit", f"must be >= 1 or null, got {cfg.limit}")
    if cfg.subjects is not None and not cfg.subjects:
        fail("subjects", "must name at least one subject, or be null for all")
    _validate_case_keys(cfg, fail)
    if cfg.mem_sample_interval_s <= 0:
        fail("mem_sample_interval_s", f"must be positive, got {cfg.mem_sample_interval_s}")
    for key in ("case", "run_name"):  # they name the run folder: one path component
        name = getattr(cfg, key)
        if name is not None and re.search(r"[/\\\x00]", name):
            fail(key, f"must be usable in a folder name (no '/', '\\' or NUL), got {name!r}")
    from mmlubench.vendors import parse_device  # any type the installed torch knows

    try:
        parse_device(cfg.device)
    except ValueError as e:
        fail("device", str(e))
    try:
        parse_flops_per_token(cfg.flops_per_token)
    except ValueError as e:
        fail("flops_per_token", str(e))

    from mmlubench.engines import ENGINES, engine_options_from  # engines check their options

    for key in ("engine", "val_engine"):
        name = getattr(cfg, key)
        if name not in ENGINES:
            fail(key, f"unknown engine {name!r} (known: {', '.join(sorted(ENGINES))})")
    for name, options in cfg.engines.items():
        if name not in ENGINES:
            where = next(iter(options.values()))[1] if options else sources.get(f"engines.{name}")
            raise ConfigError(
                f"{where}: key 'engines.{name}': unknown engine "
                f"(known: {', '.join(sorted(ENGINES))})"
            )
    # Every section given is checked, not only the chosen engines': a typo must not wait until
    # the day that engine is chosen.
    for name in sorted({cfg.engine, cfg.val_engine} | set(cfg.engines)):
        engine_options_from(name, cfg.engines.get(name, {}))  # ConfigError names the option


def load_config(
    case: str | Path | None = None,
    vendor: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config from case YAML < vendor YAML < command-line overrides, validated once."""
    layers: list[Layer] = []
    case_path = Path(case) if case else DEFAULT_CASE
    layers.append((str(case_path), read_yaml(case_path)))
    if vendor:
        vendor_path = Path(vendor)
        if not vendor_path.is_file() and (CONFIG_DIR / "vendors" / f"{vendor}.yaml").is_file():
            vendor_path = CONFIG_DIR / "vendors" / f"{vendor}.yaml"
        layers.append((str(vendor_path), read_yaml(vendor_path)))
    if overrides:
        layers.append((COMMAND_LINE, dict(overrides)))
    merged = merge_layers(layers)
    cfg = build_dataclass(Config, merged)
    sources = {key: source for key, (_, source) in merged.items()}
    # Engine sections are kept as {option: (value, source)} until their engine validates them.
    validate(cfg, sources)
    cfg.engines = {
        name: {opt: value for opt, (value, _) in options.items()}
        for name, options in cfg.engines.items()
    }
    return cfg
