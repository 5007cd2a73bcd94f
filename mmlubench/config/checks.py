"""The merged config checked once: impossible values, engines and their options, fp8's
conditions. Every error names the key and the layer (file or "command line") that set it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mmlubench.config.mfu import check_flops_per_token
from mmlubench.errors import ConfigError
from mmlubench.typed import check_value

if TYPE_CHECKING:
    from mmlubench.config.config import Config

FP8_ENGINE = "shared-prefix"  # the one engine with an fp8 mode (engines/fp8.py)


def _validate_case_keys(cfg: Config, fail) -> None:
    """peak_flops (a number or one per precision) and the case's reference rows."""
    if isinstance(cfg.peak_flops, dict):  # per precision; YAML reads 312e12 as text
        try:
            cfg.peak_flops = {str(k): check_value(float, v) for k, v in cfg.peak_flops.items()}
        except ValueError as e:
            fail("peak_flops", f"per-precision values: {e}")
    for peak in cfg.peak_flops.values() if isinstance(cfg.peak_flops, dict) else [cfg.peak_flops]:
        if peak is not None and not peak >= 1e11:  # below any real device: a typo, not a peak
            fail("peak_flops", f"must be at least 1e11 FLOP/s, got {peak:.6g}")
    if cfg.reference is not None:
        from mmlubench.config.reference import parse_reference

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
        if name is not None and re.search(r"[/\\\x00-\x1f\x7f]", name):
            fail(key, f"must be one folder name (no '/', '\\', control character), got {name!r}")
    from mmlubench.device.vendors import load_plugin, parse_device  # any type torch knows

    try:
        parse_device(cfg.device)
    except ValueError as e:
        fail("device", str(e))
    if cfg.vendor is not None:
        try:
            load_plugin(cfg.vendor)
        except ConfigError as e:
            fail("vendor", str(e))
    if not 0 <= cfg.seed < 2**64:  # what torch.manual_seed accepts
        fail("seed", f"must be between 0 and 2**64-1, got {cfg.seed}")
    try:
        check_flops_per_token(cfg.flops_per_token)
    except ValueError as e:
        fail("flops_per_token", str(e))
    _validate_engines(cfg, sources, fail)
    _validate_fp8(cfg, fail)


def _validate_fp8(cfg: Config, fail) -> None:
    """fp8: one engine's mode, on FP8 matrix units; its `fp8` option follows the precision."""
    given = cfg.engines.get(FP8_ENGINE, {}).get("fp8")
    if given is not None and given[0] != (cfg.precision == "fp8"):
        fail(
            f"engines.{FP8_ENGINE}.fp8",
            f"follows precision ({cfg.precision}); set precision: fp8 instead",
        )
    if cfg.precision != "fp8":
        return
    if cfg.device.split(":")[0] == "cpu":
        fail(
            "precision",
            "fp8 needs FP8 matrix units (NVIDIA compute capability >= 8.9: "
            "Ada, Hopper, Blackwell); device cpu has none: use fp16 on a GPU, fp32 on CPU",
        )
    if cfg.engine != FP8_ENGINE:
        fail(
            "precision",
            f"fp8 runs only on the infer engine {FP8_ENGINE}, not "
            f"{cfg.engine!r}: use --engine {FP8_ENGINE}",
        )
    if cfg.validation and cfg.val_engine == FP8_ENGINE:
        fail(
            "val_engine",
            f"with precision fp8 the val pass is the fp16 independent check; "
            f"val engine {FP8_ENGINE} would run fp8 too: use eager",
        )


def _validate_engines(cfg: Config, sources: Mapping[str, str], fail) -> None:
    """The chosen engines exist, and every engine section given holds valid options."""
    from mmlubench.engines import ENGINES, engine_options  # engines check their options

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
        given = cfg.engines.get(name, {})  # {option: (value, source)}
        engine_options(
            name,
            {opt: value for opt, (value, _) in given.items()},
            {opt: source for opt, (_, source) in given.items()},
        )  # names the option
