"""What each subcommand does (main.py and flags.py declare them and their flags).

Every function takes the parsed arguments and returns the exit status; bad input raises an
MmlubenchError, which the command line prints as one `mmlubench: error:` line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# CLI flag -> config key; a flag left unset does not override the YAML files.
FOLDER_FLAGS = {"data_dir": "data_dir", "weight_dir": "weight_dir", "mmlu_dir": "mmlu_dir"}
DATA_FLAGS = {
    **FOLDER_FLAGS,
    "split": "split",
    "subjects": "subjects",
    "limit": "limit",
    "few_shots": "few_shots",
    "max_seq_len": "max_seq_len",
    "prompt_style": "prompt_style",
}
RUN_FLAGS = {
    "precision": "precision",
    "engine": "engine",
    "val_engine": "val_engine",
    "device": "device",
    "scoring": "scoring",
    "peak_flops": "peak_flops",
    "flops_per_token": "flops_per_token",
    "output_dir": "output_dir",
    "run_name": "run_name",
    "seed": "seed",
    "mem_sample_interval": "mem_sample_interval_s",
}


def overrides_from_args(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    from mmlubench.config.config import dotted_to_nested, parse_set

    pairs = [
        (key, getattr(args, attr))
        for attr, key in flags.items()
        if getattr(args, attr, None) is not None
    ]
    if getattr(args, "no_validation", False):
        pairs.append(("validation", False))
    if getattr(args, "random_weights", False):
        pairs.append(("random_weights", True))
    if getattr(args, "log_samples", False):
        pairs.append(("log_samples", True))
    if getattr(args, "no_progress", False):
        pairs.append(("progress", False))
    if getattr(args, "no_ceiling", False):
        pairs.append(("ceiling", False))
    pairs += [(k, v) for k, v in getattr(args, "model_overrides", {}).items() if v is not None]
    pairs += [parse_set(item) for item in args.set]
    return dotted_to_nested(pairs)


def config_from_args(args: argparse.Namespace, flags: dict[str, str]):
    from mmlubench.cli.demo import is_demo_dir
    from mmlubench.config.config import CONFIG_DIR, load_config

    if not args.config and getattr(args, "data_dir", None) and is_demo_dir(args.data_dir):
        args.config = str(CONFIG_DIR / "demo.yaml")  # a demo folder goes with the demo's case
    return load_config(args.config, args.vendor, overrides_from_args(args, flags))


def apply_model(args: argparse.Namespace) -> None:
    """`--model`: its folder (a Hub id resolved in huggingface_hub's cache), and its case
    unless one is named (hub.model_layer); the run folder is named after the model."""
    if not getattr(args, "model", None):
        return
    from mmlubench.config.hub import model_layer, run_label

    if getattr(args, "weight_dir", None):
        from mmlubench.errors import ConfigError

        raise ConfigError("command line: --model and --weight-dir both name the model; give one")
    case, overrides = model_layer(
        args.model, args.revision, getattr(args, "random_weights", False), bool(args.config)
    )
    args.config = args.config or case
    args.model_overrides = overrides
    if hasattr(args, "run_name") and args.run_name is None:
        args.run_name = run_label(args.model)


def run(args: argparse.Namespace) -> int:
    from mmlubench.run.questions import Ahead

    resume = getattr(args, "resume", None)
    if resume and not args.config:
        from mmlubench.run.rundir import resume_config_path

        # The interrupted run's own validated config; flags given again must agree with it.
        args.config = str(resume_config_path(resume))
    apply_model(args)
    cfg = config_from_args(args, {**DATA_FLAGS, **RUN_FLAGS})
    # The questions are read in a helper process while this one imports torch (below) and
    # the model code (run/questions.py).
    ahead = Ahead.start(cfg)
    try:
        from mmlubench.report.table import format_report
        from mmlubench.run.runner import run_case

        run_dir, result = run_case(cfg, e2e_start=args.start_time, resume=resume, ahead=ahead)
    finally:
        if ahead is not None:  # a run that failed before it took the questions
            ahead.stop()
    if result is not None:  # under torchrun only rank 0 reports
        print(f"\n{'resumed ' if resume else ''}run folder: {run_dir}")
        print(format_report(result, aligned=sys.stdout.isatty()))
    return 0


def prompts(args: argparse.Namespace) -> int:
    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import build_prompts, load_tokenizer, without_bos, write_jsonl

    apply_model(args)
    cfg = config_from_args(args, DATA_FLAGS)
    dataset = load_mmlu(cfg.mmlu_path, cfg.split, cfg.subjects, cfg.limit, cfg.few_shots)
    tokenizer = load_tokenizer(cfg.weight_path)
    built = build_prompts(
        dataset, tokenizer, cfg.prompt_style, cfg.few_shots, cfg.max_seq_len, progress=cfg.progress
    )
    built = without_bos(built, None if cfg.bos else tokenizer.bos_token_id)
    n = write_jsonl(built, args.out)
    tokens = sum(len(p.ids) for p in built)
    print(
        f"wrote {n} prompts ({tokens} tokens, {sum(1 for p in built if p.dropped)} "
        f"truncated, {sum(1 for p in built if p.prefix_len)} with a shareable prefix) "
        f"to {args.out}"
    )
    return 0


def report(args: argparse.Namespace) -> int:
    from mmlubench.report.table import render
    from mmlubench.results.document import load

    result = load(args.run_dir)
    if args.format == "lm-eval":
        import json

        from mmlubench.results import lmeval

        run_dir = Path(args.run_dir)
        run_dir = run_dir.parent if run_dir.suffix == ".json" else run_dir
        print(
            json.dumps(
                lmeval.from_run(run_dir, result.config.to_json(), result.model.to_json()), indent=2
            )
        )
        return 0
    print(render(result, args.format))
    if args.html is not None:
        from mmlubench.display import run_label
        from mmlubench.report import html as html_report

        run_dir = Path(args.run_dir)
        run_dir = run_dir.parent if run_dir.suffix == ".json" else run_dir
        out = html_report.write(result, args.html or run_dir / "report.html", run_label(run_dir))
        print(f"HTML report: {out}")
    return 0


def compare(args: argparse.Namespace) -> int:
    from mmlubench.report import compare as cmp

    labels, results = cmp.load_runs(args.run_dirs)
    print(cmp.format_compare(results, labels))
    if args.html:
        print(f"HTML comparison: {cmp.write_html(results, labels, args.html)}")
    if args.png:
        print(f"chart: {cmp.write_png(results, labels, args.png)}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from mmlubench.cli.demo import is_demo_dir, make_demo
    from mmlubench.config.config import CONFIG_DIR

    root = Path(args.dir)
    made = "were generated" if not is_demo_dir(root) else "are reused"
    make_demo(root)
    print(
        f"DEMO: a tiny random Llama checkpoint, a tiny tokenizer and a small synthetic MMLU "
        f"{made} under {root}; the numbers below show the pipeline, not a real model. "
        f"See its prompts: mmlubench prompts --data-dir {root} --out prompts.jsonl"
    )
    args.config = args.config or str(CONFIG_DIR / "demo.yaml")
    args.data_dir = args.data_dir or str(root)
    args.output_dir = args.output_dir or str(root / "runs")
    return run(args)


def download(args: argparse.Namespace) -> int:
    from mmlubench.data.download import download_data, download_weights, unpack_data_tar

    cfg = config_from_args(args, FOLDER_FLAGS)
    data = args.data or args.data_tar is not None
    if not (data or args.weights):
        data = args.weights = True
    if args.data_tar is not None:
        print(f"MMLU -> {unpack_data_tar(args.data_tar, cfg.mmlu_path)}")
    elif data:
        print(f"MMLU -> {download_data(cfg.mmlu_path)}")
    if args.weights:
        repo = args.repo or cfg.hf_repo
        if not repo:
            from mmlubench.errors import ConfigError

            raise ConfigError(
                f"{args.config or 'the case file'}: no hf_repo to download the "
                "weights from; give --repo"
            )
        print(f"weights -> {download_weights(cfg.weight_path, repo)}")
    return 0


def engines(args: argparse.Namespace) -> int:
    from mmlubench.cli.engines_doc import describe_engines

    print(describe_engines())
    return 0


def cases(args: argparse.Namespace) -> int:
    from mmlubench.config.cases import format_cases, packaged_cases

    print(format_cases(packaged_cases()))
    return 0
