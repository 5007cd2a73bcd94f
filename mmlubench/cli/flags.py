"""The flags of the commands that read a case: configuration layers, folders, questions and
prompts, model, engines and metrics (main.py declares the commands that take them). Each flag's
help shows the default the case file gives it.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from mmlubench.errors import MmlubenchError


def case_defaults(case: Path) -> dict[str, Any]:
    """The values a run gets when no flag is given: the Config's defaults under the case file
    (for --help only: a broken file shows the bare defaults, the run itself reports it)."""
    import dataclasses

    from mmlubench.config.config import Config
    from mmlubench.yamlfile import read_yaml

    values = {f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config)}
    with contextlib.suppress(MmlubenchError):
        values.update(read_yaml(case))
    return values


def add_config_args(p: argparse.ArgumentParser, case: Path) -> None:
    """--config, --vendor and --set: the layers over the case file `case`."""
    g = p.add_argument_group("configuration (case YAML < vendor YAML < these flags)")
    g.add_argument(
        "--config",
        metavar="YAML|NAME",
        help="case file, or the name of a packaged "
        f"one such as demo (default: {case.relative_to(case.parents[1])})",
    )
    g.add_argument(
        "--vendor",
        metavar="YAML|NAME",
        help="vendor overrides: a file, or a name: "
        "a packaged vendor file (cpu, nvidia) or an installed vendor plug-in's "
        "config (docs/VENDORS.md)",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set engines.eager.batch_size=8 "
        "(repeatable; value read as YAML)",
    )


def add_folder_args(p: argparse.ArgumentParser, d: dict[str, Any], model: bool = False) -> None:
    """Where the data and the weights are (and, with `model`, --model and --revision)."""
    g = p.add_argument_group("folders")
    if model:
        g.add_argument(
            "--model",
            metavar="NAME_OR_PATH",
            help="the model: a folder, or a "
            "Hugging Face Hub repo id (ORG/NAME) taken from huggingface_hub's cache "
            "(HF_HOME; HF_HUB_OFFLINE=1: the cache only) or downloaded into it. "
            "Without --config it runs the case whose model this is (by config.json), "
            "else the generic case mmlu",
        )
        g.add_argument(
            "--revision",
            help="with a Hub repo id: branch, tag or commit (default: "
            "main); the commit used is recorded in result.json",
        )
    g.add_argument(
        "--data-dir", help=f"root folder of weight_dir and mmlu_dir (default: {d['data_dir']})"
    )
    g.add_argument(
        "--weight-dir",
        help="model folder (weights, config.json, tokenizer), "
        f"relative to --data-dir unless absolute (default: {d['weight_dir']})",
    )
    g.add_argument(
        "--mmlu-dir",
        help="MMLU folder holding dev/ val/ test/, relative to "
        f"--data-dir unless absolute (default: {d['mmlu_dir']})",
    )


def add_prompt_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    """Which questions, and the prompt rule."""
    g = p.add_argument_group("questions and prompts")
    g.add_argument(
        "--split",
        choices=["test", "val", "dev"],
        help=f"questions under test (default: {d['split']})",
    )
    g.add_argument("--subjects", help="comma-separated subjects (default: all)")
    g.add_argument("--limit", type=int, help="first N questions of each subject (default: all)")
    g.add_argument("--few-shots", type=int, help=f"examples per prompt (default: {d['few_shots']})")
    g.add_argument(
        "--max-seq-len", type=int, help=f"truncation limit in tokens (default: {d['max_seq_len']})"
    )
    g.add_argument(
        "--prompt-style",
        choices=["reference", "lm-eval"],
        help=f"reference (FlagPerf) or lm-eval (default: {d['prompt_style']})",
    )


def add_run_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    """Model, engines and metrics: precision, device, engines, passes, weights, seed, then
    `_add_metric_args`."""
    g = p.add_argument_group("model, engines and metrics")
    g.add_argument(
        "--precision",
        choices=["fp16", "bf16", "fp32", "fp8"],
        help="dtype of the weights and the compute: fp16 as the reference, bf16, "
        "fp32 (the choice on CPU), or fp8 (e4m3 linear layers in the shared-prefix "
        "infer engine, val in fp16; GPUs with FP8 units) "
        f"(default: {d['precision']})",
    )
    g.add_argument("--device", help=f"cuda, cuda:N or cpu (default: {d['device']})")
    engine = d["engine"]
    if engine == "auto":
        from mmlubench.config.config import AUTO_ENGINE

        engine = f"auto: {AUTO_ENGINE['cuda']} on CUDA, {AUTO_ENGINE['cpu']} on CPU"
    g.add_argument("--engine", help=f"infer engine, see `mmlubench engines` (default: {engine})")
    g.add_argument(
        "--val-engine", help=f"val engine (default: {d['val_engine']}: the plain HF model)"
    )
    g.add_argument("--no-validation", action="store_true", help="skip the val pass")
    g.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip measuring the device's own "
        "ceiling after the passes (a few seconds, outside e2e_time; see `mmlubench "
        "ceiling`); it runs on accelerators, on the CPU only with --set ceiling=true",
    )
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="build the model from config.json with random weights (speed only)",
    )
    g.add_argument(
        "--seed", type=int, help=f"seed of the random weights, 0 to 2**64-1 (default: {d['seed']})"
    )
    _add_metric_args(g, d)


def _add_metric_args(g: argparse._ArgumentGroup, d: dict[str, Any]) -> None:
    """The rest of `add_run_args`' group: scoring, MFU's inputs, output and what is shown."""
    g.add_argument(
        "--scoring",
        choices=["reference", "choices", "token"],
        help="reference: argmax over the vocabulary, keep A-D; choices: argmax over "
        "the four answer-letter tokens; token: the argmax must be the answer "
        f"letter's token (FlagPerf llama2_7b_mmlu) (default: {d['scoring']})",
    )
    g.add_argument(
        "--peak-flops",
        type=float,
        help="peak FLOP/s of one device, for MFU on devices not in the table",
    )
    g.add_argument(
        "--flops-per-token",
        help="FLOPs per prompt token for MFU, a product such "
        f"as '2*7e9' (the reference) or '2*params' (default: {d['flops_per_token']})",
    )
    g.add_argument(
        "--mem-sample-interval",
        type=float,
        help=f"NVML sampling period, seconds (default: {d['mem_sample_interval_s']})",
    )
    g.add_argument("--output-dir", help=f"where run folders go (default: {d['output_dir']})")
    g.add_argument("--run-name", help="suffix of the run folder name")
    g.add_argument(
        "--no-progress", action="store_true", help="no progress bars (also none from transformers)"
    )
    g.add_argument(
        "--log-samples",
        action="store_true",
        help="also write lm-eval's samples "
        "files (samples_lm-eval/samples_mmlu_SUBJECT.jsonl): per question the four "
        "letters' log-likelihoods over the vocabulary, gold, prediction, prompt",
    )
