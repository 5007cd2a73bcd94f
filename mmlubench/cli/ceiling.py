"""`mmlubench ceiling`: the device's measured table without a run: GEMM TFLOP/s per precision
at a model's shapes and at a large square product, attention TFLOP/s on one pack, copy
bandwidth, clock and power. main.py declares the subcommand with the config and folder flags;
`add_arguments` adds its own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = """\
Measure this device's ceiling: per precision, the dense GEMM rate at a model's own shapes (the
decoder's q/k/v, o, gate/up and down projections at the pack length, the LM head on a pack's
question rows), at an 8192^3 product, and FlexAttention's rate on one shared-prefix pack; the
copy bandwidth; the compute clock and power read (vendor plug-in) while each kernel ran. About
a few seconds a precision on a GPU. Model shapes: --model-config, --model-dir, the case's
weight folder (--data-dir) when it has a config.json, else deepseek-llm-7b-base's. The pack:
MMLU prompts when --data-dir finds MMLU and a tokenizer (first 3 subjects unless --subjects),
else a synthetic layout of MMLU's shape. On the CPU: small shapes, fp32 by default."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's own flags (beside --config, --vendor, --set and the folder flags)."""
    p.add_argument(
        "--device", help="cuda, cuda:N, xpu, npu, ..., or cpu (default: the case's, cuda)"
    )
    p.add_argument(
        "--precision",
        help="comma-separated, of fp16, bf16, fp32, fp8 (default: "
        "all four; fp32 on the CPU); fp8 is null where the device has no FP8 matmul",
    )
    p.add_argument(
        "--model-config", metavar="CONFIG_JSON", help="an HF config.json for the model shapes"
    )
    p.add_argument(
        "--model-dir",
        help="an HF model folder (its config.json, and its tokenizer for MMLU prompts)",
    )
    p.add_argument("--subjects", help="MMLU subjects for the pack (default: the first 3)")
    p.add_argument(
        "--pack-tokens",
        type=int,
        help="pack length, the GEMMs' rows (default: the shared-prefix engine's, 32768)",
    )
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.set_defaults(func=command)


def _model(args: argparse.Namespace, cfg) -> tuple[object, str, Path | None]:
    """(ModelDims, where they came from, the model folder for a tokenizer or None)."""
    from mmlubench.ceiling.measure import DEFAULT_DIMS, DEFAULT_SOURCE
    from mmlubench.errors import ConfigError
    from mmlubench.results.ceiling_sections import ModelDims

    if args.model_config:
        path, folder = Path(args.model_config), None
    else:
        folder = Path(args.model_dir) if args.model_dir else cfg.weight_path
        path = folder / "config.json"
        if not args.model_dir and not path.is_file():
            return DEFAULT_DIMS, DEFAULT_SOURCE, None
    try:
        return (
            ModelDims.from_config(json.loads(path.read_text(encoding="utf-8"))),
            str(path),
            folder,
        )
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(
            f"{path}: not a readable HF config.json ({type(e).__name__}: {e})"
        ) from None


def _requests(args: argparse.Namespace, cfg, folder: Path | None) -> tuple[list | None, str]:
    """MMLU prompts (first 3 subjects) when the MMLU folder and a tokenizer are there."""
    from mmlubench.data.mmlu import find_subjects, load_mmlu

    if (
        folder is None
        or not (folder / "tokenizer.json").is_file()
        or not (cfg.mmlu_path / cfg.split).is_dir()
    ):
        return None, ""
    from mmlubench.data.prompts import build_prompts, load_tokenizer
    from mmlubench.engines.base import Request

    subjects = (
        args.subjects.split(",") if args.subjects else find_subjects(cfg.mmlu_path, cfg.split)[:3]
    )
    dataset = load_mmlu(cfg.mmlu_path, cfg.split, subjects, cfg.limit, cfg.few_shots)
    prompts = build_prompts(
        dataset,
        load_tokenizer(folder),
        cfg.prompt_style,
        cfg.few_shots,
        cfg.max_seq_len,
        progress=False,
    )
    return [
        Request(p.ids, p.prefix_len) for p in prompts
    ], f"MMLU {cfg.split} prompts ({', '.join(subjects)})"


def command(args: argparse.Namespace) -> int:
    import torch

    from mmlubench.ceiling.measure import PackOptions, measure_device
    from mmlubench.cli.commands import FOLDER_FLAGS, config_from_args
    from mmlubench.device import accel, vendors
    from mmlubench.report.ceiling import format_ceiling

    cfg = config_from_args(args, {**FOLDER_FLAGS, "device": "device"})
    device = vendors.check_device(cfg.device)
    default = "fp32" if device.type == "cpu" else "fp16,bf16,fp32,fp8"
    precisions = (args.precision or default).split(",")
    bad = [p for p in precisions if p not in ("fp16", "bf16", "fp32", "fp8")]
    if bad:
        from mmlubench.errors import ConfigError

        raise ConfigError(f"--precision: unknown {', '.join(bad)} (fp16, bf16, fp32, fp8)")
    dims, source, folder = _model(args, cfg)
    requests, pack_source = _requests(args, cfg, folder)
    opts = PackOptions.from_config(cfg)
    if args.pack_tokens:
        if args.pack_tokens <= 0 or args.pack_tokens % opts.block_size:
            from mmlubench.errors import ConfigError

            raise ConfigError(
                f"--pack-tokens: must be a positive multiple of the block size "
                f"{opts.block_size}, got {args.pack_tokens}"
            )
        opts = PackOptions(
            args.pack_tokens, opts.max_questions, opts.block_size, opts.kernel_options
        )
    accel.set_device(device)
    vendor = vendors.open_vendor(device, cfg.vendor)
    try:
        with torch.inference_mode():
            c = measure_device(
                device, vendor, precisions, dims, source, requests, pack_source, opts
            )
    finally:
        vendor.close()
    print(json.dumps(c.to_json(), indent=2) if args.format == "json" else format_ceiling(c))
    return 0
