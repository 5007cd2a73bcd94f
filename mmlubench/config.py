"""One typed config for a run, layered from the case YAML, a vendor YAML and the command line.

Each layer is a mapping plus the name of where it came from; a later layer overrides an earlier
one key by key (nested mappings are merged). Validation happens once, on the merged result, and
every error names the key and the layer (file or "command line") that set it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmlubench.errors import ConfigError
from mmlubench.mfu import check_flops_per_token, parse_flops_per_token
from mmlubench.typed import build_dataclass, check_value
from mmlubench.yamlfile import COMMAND_LINE, dotted_to_nested, parse_set, read_yaml

__all__ = ["COMMAND_LINE", "Config", "build_dataclass", "check_value", "dotted_to_nested",
           "load_config", "parse_flops_per_token", "parse_set", "read_yaml"]

# What `engine: auto` runs. Measured on CPU (README, "Engines"): compiling shared-prefix costs
# ~100 s there, more than a CPU run of a few hundred questions spends in its core, and without
# shared prefixes (some tokenizers merge across the seam) it saves nothing; eager needs none.
AUTO_ENGINE = {"cuda": "shared-prefix", "cpu": "eager"}
FP8_ENGINE = "shared-prefix"  # the one engine with an fp8 mode (engines/fp8.py)
CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CASE = CONFIG_DIR / "deepseek_7b_mmlu.yaml"


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
    # fp8: fp16 weights, the infer engine's linear layers in e4m3 (engines/fp8.py), val fp16.
    precision: Literal["fp16", "bf16", "fp32", "fp8"] = "fp16"
    device: str = "cuda"
    # Build the model from config.json with random weights: speed only, accuracy is meaningless.
    random_weights: bool = False
    seed: int = 0
    # The `val` pass (plain HF model, eager) and the `infer` pass (engine chosen by name).
    validation: bool = True
    val_engine: str = "eager"
    # "auto": the fastest engine on the device (AUTO_ENGINE); a name chooses that engine.
    engine: str = "auto"
    # Options of each engine, by engine name; each engine validates its own section.
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    # FLOPs per prompt token for MFU: a product such as "2*7e9", or "2*params" (counted:
    # the active parameters of a MoE). A case's own value holds for its model (model_config)
    # only; any other model gets 2*params (mfu.resolve_flops_per_token).
    flops_per_token: str = "2*params"
    flops_per_token_set_by: Literal["case", "user"] = "case"  # filled in by load_config
    # The case's model: config.json values that identify it (cases.model_matches).
    model_config: dict[str, Any] | None = None
    # --model: a folder or a Hub repo id (hub.resolve_model), and the Hub revision.
    model: str | None = None
    revision: str | None = None
    # Per question, the four letters' log-likelihoods, as lm-eval's samples file.
    log_samples: bool = False
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
    ceiling: bool | None = None  # measure the device's ceiling (ceiling.py): null = not on CPU

    @property
    def weight_path(self) -> Path:
        return Path(self.data_dir) / self.weight_dir

    @property
    def mmlu_path(self) -> Path:
        return Path(self.data_dir) / self.mmlu_dir

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Layer = tuple[str, Mapping[str, Any]]


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


def _validate_case_keys(cfg: Config, fail) -> None:
    """peak_flops (a number or one per precision) and the case's reference rows."""
    if isinstance(cfg.peak_flops, dict):  # per precision; YAML reads 312e12 as text
        try:
            cfg.peak_flops = {str(k): check_value(float, v) for k, v in cfg.peak_flops.items()}
        except ValueError as e:
            fail("peak_flops", f"per-precision values: {e}")
    for peak in (cfg.peak_flops.values() if isinstance(cfg.peak_flops, dict)
                 else [cfg.peak_flops]):
        if peak is not None and not peak >= 1e11:  # below any real device: a typo, not a peak
            fail("peak_flops", f"must be at least 1e11 FLOP/s, got {peak:.6g}")
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
        if name is not None and re.search(r"[/\\\x00-\x1f\x7f]", name):
            fail(key, f"must be one folder name (no '/', '\\', control character), got {name!r}")
    from mmlubench.vendors import load_plugin, parse_device  # any type torch knows

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
        fail(f"engines.{FP8_ENGINE}.fp8", f"follows precision ({cfg.precision}); set "
             "precision: fp8 instead")
    if cfg.precision != "fp8":
        return
    if cfg.device.split(":")[0] == "cpu":
        fail("precision", "fp8 needs FP8 matrix units (NVIDIA compute capability >= 8.9: "
             "Ada, Hopper, Blackwell); device cpu has none: use fp16 on a GPU, fp32 on CPU")
    if cfg.engine != FP8_ENGINE:
        fail("precision", f"fp8 runs only on the infer engine {FP8_ENGINE}, not "
             f"{cfg.engine!r}: use --engine {FP8_ENGINE}")
    if cfg.validation and cfg.val_engine == FP8_ENGINE:
        fail("val_engine", f"with precision fp8 the val pass is the fp16 independent check; "
             f"val engine {FP8_ENGINE} would run fp8 too: use eager")


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
        engine_options(name, {opt: value for opt, (value, _) in given.items()},
                       {opt: source for opt, (_, source) in given.items()})  # names the option


def packaged(name: str | Path, folder: Path) -> Path:
    """A YAML file given by path, or by the name of a packaged one (`demo` is configs/demo.yaml)."""
    path = Path(name)
    if not path.exists() and (folder / f"{name}.yaml").is_file():
        return folder / f"{name}.yaml"
    return path


def load_config(
    case: str | Path | None = None,
    vendor: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config from case YAML < vendor YAML < command-line overrides, validated once."""
    layers: list[Layer] = []
    case_path = packaged(case, CONFIG_DIR) if case else DEFAULT_CASE
    layers.append((str(case_path), read_yaml(case_path)))
    if vendor:  # a file, a shipped vendor YAML, or an installed plug-in's config
        from mmlubench.vendors.layer import vendor_layer

        layers.append(vendor_layer(vendor, CONFIG_DIR / "vendors"))
    if overrides:
        layers.append((COMMAND_LINE, dict(overrides)))
    merged = merge_layers(layers)
    cfg = build_dataclass(Config, merged)
    if cfg.engine == "auto":  # resolved here: the run folder, config.yaml and result name it
        cfg.engine = AUTO_ENGINE["cpu" if cfg.device == "cpu" else "cuda"]
    sources = {key: source for key, (_, source) in merged.items()}
    if sources.get("flops_per_token", str(case_path)) != str(case_path):
        cfg.flops_per_token_set_by = "user"
    # Engine sections are kept as {option: (value, source)} until their engine validates them.
    validate(cfg, sources)
    cfg.engines = {
        name: {opt: value for opt, (value, _) in options.items()}
        for name, options in cfg.engines.items()
    }
    if cfg.precision == "fp8":  # the engine learns the precision through its options
        cfg.engines.setdefault(FP8_ENGINE, {})["fp8"] = True
    return cfg
