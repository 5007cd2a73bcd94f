"""What produced a result: the model, the machine and software, and the validated config, as
the typed sections `model`, `environment` and `config` of the result document (`document`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmlubench.results.sections import OMIT_IF_NONE, Section


@dataclass
class Model(Section):
    path: str
    architecture: str
    n_params: int
    dtype: str
    device: str
    random_weights: bool
    num_hidden_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    load_time_s: float
    # sha256 of config.json's content (keys sorted): which model, whatever the folder's name.
    config_sha256: str | None = field(default=None, metadata=OMIT_IF_NONE)
    # The BOS id every prompt starts with; null: the prompts have none (the tokenizer defines
    # no BOS, or the case drops it, as llama3_8b_mmlu does).
    prompt_bos_id: int | None = None
    # metrics.ModelShape's fields (what mfu_computed counts) and the parameters a token runs
    # through (n_params less the experts it is not routed to; n_params for a dense model).
    flop_shape: dict[str, Any] | None = field(default=None, metadata=OMIT_IF_NONE)
    active_params: int | None = field(default=None, metadata=OMIT_IF_NONE)
    # `--model ORG/NAME`: the Hub repo and the commit its snapshot was resolved to.
    hub_repo: str | None = field(default=None, metadata=OMIT_IF_NONE)
    revision: str | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class Git(Section):
    commit: str | None
    dirty: bool | None


@dataclass
class Environment(Section):
    date_utc: str
    hostname: str
    platform: str
    python: str
    mmlubench: str
    git: Git
    torch: str
    transformers: str
    tokenizers: str
    cuda: str | None
    cudnn: int | None
    driver: str | None
    device: str
    device_name: str | None
    device_count: int
    cpu_count: int | None
    command: list[str]
    vendor: str | None = None  # the vendor plug-in (mmlubench/vendors)
    vendor_versions: dict[str, Any] = field(default_factory=dict)
    # What bounds the device's speed (vendor plug-in; null where unknown or in older runs).
    power_limit_w: float | None = None
    max_sm_clock_mhz: float | None = None


@dataclass
class RunConfig(Section):
    """The validated config of the run (config.Config.to_dict(), in its order); keys added
    there before they are declared here are kept in `extra`."""

    case: str
    data_dir: str
    weight_dir: str
    mmlu_dir: str
    split: str
    subjects: list[str] | None
    limit: int | None
    few_shots: int
    max_seq_len: int
    prompt_style: str
    scoring: str
    precision: str
    device: str
    random_weights: bool
    seed: int
    validation: bool
    val_engine: str
    engine: str
    engines: dict[str, dict[str, Any]]
    flops_per_token: str | None
    peak_flops: Any  # FLOP/s, {precision: FLOP/s} (a vendor file's), or null
    mem_sample_interval_s: float
    output_dir: str
    run_name: str | None
    progress: bool
    vendor: str | None = None
    bos: bool = True
    reference: dict[str, dict[str, Any]] | None = None  # cases.ReferenceRow by precision
    hf_repo: str | None = None
    ceiling: bool | None = None  # run's ceiling step: null = on accelerators only
    flops_per_token_set_by: str = "case"  # "user": given on the command line or by a vendor
    model_config: dict[str, Any] | None = None  # the case's model (cases.MODEL_KEYS)
    model: str | None = None  # --model as given (a folder or a Hub repo id)
    revision: str | None = None  # --revision as given
    log_samples: bool = False
