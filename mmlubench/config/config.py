"""One typed config for a run, layered from the case YAML, a vendor YAML and the command line.

Each layer is a mapping plus the name of where it came from; a later layer overrides an earlier
one key by key (nested mappings are merged). Validation happens once, on the merged result, and
every error names the key and the layer (file or "command line") that set it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmlubench.config.checks import FP8_ENGINE, validate
from mmlubench.config.mfu import parse_flops_per_token
from mmlubench.errors import ConfigError
from mmlubench.typed import build_dataclass, check_value
from mmlubench.yamlfile import COMMAND_LINE, dotted_to_nested, parse_set, read_yaml

__all__ = [
    "COMMAND_LINE",
    "Config",
    "build_dataclass",
    "check_value",
    "dotted_to_nested",
    "load_config",
    "parse_flops_per_token",
    "parse_set",
    "read_yaml",
]

# What `engine: auto` runs. Measured on CPU (README, "Engines"): compiling shared-prefix costs
# ~100 s there, more than a CPU run of a few hundred questions spends in its core, and without
# shared prefixes (some tokenizers merge across the seam) it saves nothing; eager needs none.
AUTO_ENGINE = {"cuda": "shared-prefix", "cpu": "eager"}
CONFIG_DIR = Path(__file__).parents[1] / "configs"
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
    # as vendor YAMLs give it); None = look the device up in the table (results/metrics.py).
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
    ceiling: bool | None = None  # measure the device's ceiling (ceiling/): null = not on CPU

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
        from mmlubench.config.vendor_layer import vendor_layer

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
