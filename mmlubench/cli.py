"""Command line: `mmlubench run | prompts | report | compare | demo | download | engines`.

Bad input ends with one line naming the file, line or key at fault (exit status 2), never a
traceback; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmlubench.errors import MmlubenchError

DESCRIPTION = """\
mmlubench measures how fast and how well an accelerator runs a large language model on 5-shot
MMLU, as the FlagPerf case deepseek_7b_MMLU defines it, and prints one table: precision, memory,
end-to-end time, val and infer throughput (whole and core), MFU and accuracy.

Start with `mmlubench demo` (CPU, no downloads). Real runs: `mmlubench download`, then
`mmlubench run --data-dir DATA_DIR`. Speed without the checkpoint: `--random-weights`.
"""

# CLI flag -> config key; a flag left unset does not override the YAML files.
DATA_FLAGS = {
    "data_dir": "data_dir",
    "weight_dir": "weight_dir",
    "mmlu_dir": "mmlu_dir",
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


def add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (case YAML < vendor YAML < these flags)")
    g.add_argument("--config", metavar="YAML", help="case file (default: the packaged "
                   "configs/deepseek_7b_mmlu.yaml)")
    g.add_argument("--vendor", metavar="YAML|NAME", help="vendor overrides, a file or a name "
                   "under configs/vendors/ (e.g. nvidia)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set engines.eager.batch_size=8 "
                   "(repeatable; value read as YAML)")
    d = p.add_argument_group("data and prompts")
    d.add_argument("--data-dir", help="root folder of weight_dir and mmlu_dir")
    d.add_argument("--weight-dir", help="model folder (weights, config.json, tokenizer), "
                   "relative to --data-dir unless absolute")
    d.add_argument("--mmlu-dir", help="MMLU folder holding dev/ val/ test/, relative to "
                   "--data-dir unless absolute")
    d.add_argument("--split", choices=["test", "val", "dev"], help="questions under test")
    d.add_argument("--subjects", help="comma-separated subjects (default: all)")
    d.add_argument("--limit", type=int, help="first N questions of each subject")
    d.add_argument("--few-shots", type=int, help="examples per prompt (default 5)")
    d.add_argument("--max-seq-len", type=int, help="truncation limit in tokens (default 2048)")
    d.add_argument("--prompt-style", choices=["reference", "lm-eval"],
                   help="reference (FlagPerf, default) or lm-eval")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model, engines and metrics")
    g.add_argument("--precision", choices=["fp16", "bf16", "fp32"])
    g.add_argument("--device", help="cuda, cuda:N or cpu")
    g.add_argument("--engine", help="infer engine (see `mmlubench engines`)")
    g.add_argument("--val-engine", help="val engine (default eager: the plain HF model)")
    g.add_argument("--no-validation", action="store_true", help="skip the val pass")
    g.add_argument("--random-weights", action="store_true",
                   help="build the model from config.json with random weights (speed only)")
    g.add_argument("--seed", type=int, help="seed of the random weights")
    g.add_argument("--scoring", choices=["reference", "choices", "token"], help="reference: "
                   "argmax over the vocabulary, keep A-D (default); choices: argmax over the "
                   "four letter tokens; token: argmax must be the letter's token (llama2)")
    g.add_argument("--peak-flops", type=float, help="peak FLOP/s of one device, for MFU on "
                   "devices not in the table")
    g.add_argument("--flops-per-token", help="'2*7e9' (reference) or '2*params'")
    g.add_argument("--mem-sample-interval", type=float, help="NVML sampling period, seconds")
    g.add_argument("--output-dir", help="where run folders go (default runs/)")
    g.add_argument("--run-name", help="suffix of the run folder name")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def overrides_from_args(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    from mmlubench.config import dotted_to_nested, parse_set

    pairs = [(key, getattr(args, attr)) for attr, key in flags.items()
             if getattr(args, attr, None) is not None]
    if getattr(args, "no_validation", False):
        pairs.append(("validation", False))
    if getattr(args, "random_weights", False):
        pairs.append(("random_weights", True))
    if getattr(args, "no_progress", False):
        pairs.append(("progress", False))
    pairs += [parse_set(item) for item in args.set]
    return dotted_to_nested(pairs)


def config_from_args(args: argparse.Namespace, flags: dict[str, str]):
    from mmlubench.config import load_config

    return load_config(args.config, args.vendor, overrides_from_args(args, flags))


def cmd_run(args: argparse.Namespace) -> int:
    from mmlubench.report import format_report
    from mmlubench.runner import run_case

    resume = getattr(args, "resume", None)
    if resume and not args.config:
        from mmlubench.rundir import resume_config_path

        # The interrupted run's own validated config; flags given again must agree with it.
        args.config = str(resume_config_path(resume))
    cfg = config_from_args(args, {**DATA_FLAGS, **RUN_FLAGS})
    run_dir, result = run_case(cfg, e2e_start=args.start_time, resume=resume)
    if result is not None:  # under torchrun only rank 0 reports
        print(f"\n{'resumed ' if resume else ''}run folder: {run_dir}")
        print(format_report(result))
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from mmlubench.data import load_mmlu
    from mmlubench.prompts import build_prompts, load_tokenizer, without_bos, write_jsonl
    cfg = config_from_args(args, DATA_FLAGS)
    dataset = load_mmlu(cfg.mmlu_path, cfg.split, cfg.subjects, cfg.limit, cfg.few_shots)
    tokenizer = load_tokenizer(cfg.weight_path)
    prompts = build_prompts(dataset, tokenizer, cfg.prompt_style, cfg.few_shots,
                            cfg.max_seq_len, progress=not args.no_progress)
    prompts = without_bos(prompts, None if cfg.bos else tokenizer.bos_token_id)
    n = write_jsonl(prompts, args.out)
    tokens = sum(len(p.ids) for p in prompts)
    print(f"wrote {n} prompts ({tokens} tokens, {sum(1 for p in prompts if p.dropped)} "
          f"truncated, {sum(1 for p in prompts if p.prefix_len)} with a shareable prefix) "
          f"to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mmlubench.document import load
    from mmlubench.report import render

    result = load(args.run_dir)
    print(render(result, args.format))
    if args.html is not None:
        from mmlubench import html_report
        from mmlubench.display import run_label

        run = Path(args.run_dir)
        run = run.parent if run.suffix == ".json" else run
        out = html_report.write(result, args.html or run / "report.html", run_label(run))
        print(f"HTML report: {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mmlubench import compare

    labels, results = compare.load_runs(args.run_dirs)
    print(compare.format_compare(results, labels))
    if args.html:
        print(f"HTML comparison: {compare.write_html(results, labels, args.html)}")
    if args.png:
        print(f"chart: {compare.write_png(results, labels, args.png)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mmlubench.config import CONFIG_DIR
    from mmlubench.demo import make_demo

    root = Path(args.dir)
    make_demo(root)
    print(f"DEMO: a tiny random Llama checkpoint, a tiny tokenizer and a small synthetic MMLU "
          f"were generated under {root}; the numbers below show the pipeline, not a real model.")
    args.config = args.config or str(CONFIG_DIR / "demo.yaml")
    args.data_dir = args.data_dir or str(root)
    args.output_dir = args.output_dir or str(root / "runs")
    return cmd_run(args)


def cmd_download(args: argparse.Namespace) -> int:
    from mmlubench.download import download_data, download_weights

    cfg = config_from_args(args, DATA_FLAGS)
    if not (args.data or args.weights):
        args.data = args.weights = True
    if args.data:
        print(f"MMLU -> {download_data(cfg.mmlu_path)}")
    if args.weights:
        print(f"weights -> {download_weights(cfg.weight_path, args.repo)}")
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    import dataclasses

    from mmlubench.engines import ENGINES, engine_class

    for name in ENGINES:
        cls = engine_class(name)
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}")
        for f in dataclasses.fields(cls.Options):
            default = f.default if f.default is not dataclasses.MISSING else "-"
            print(f"    engines.{name}.{f.name} = {default!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlubench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the case: val + infer passes, result table",
                       description="Run the case and write runs/<name>/result.json, "
                       "predictions.jsonl; print the table last.")
    add_config_args(p)
    add_run_args(p)
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="go on with an interrupted run in RUN_DIR without recomputing the "
                   "questions it answered (its config.yaml is the base config; the config, "
                   "prompts and model must match the run's fingerprint.json; one process only)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("prompts", help="write every prompt (text and token ids) as JSONL",
                       description="Write, for every question: subject, row index, prompt "
                       "text, token ids and answer letter, to inspect what the model sees.")
    add_config_args(p)
    p.add_argument("--out", required=True, help="output .jsonl file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("report", help="print the table of a finished run again")
    p.add_argument("run_dir", help="run folder (or its result.json)")
    p.add_argument("--format", choices=["markdown", "json", "flagperf"], default="markdown",
                   help="markdown: the table (default); json: result.json itself; flagperf: "
                   "the keys and units FlagPerf's inference run logs (Finish Info)")
    p.add_argument("--html", nargs="?", const="", metavar="OUT.html",
                   help="also write a self-contained HTML report (charts embedded; default "
                   "RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="side-by-side table of several runs",
                       description="One row per run: reference columns, device, and ratios "
                       "to the first run; warns when settings make runs incomparable.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (first = base)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML comparison")
    p.add_argument("--png", metavar="OUT.png", help="write the comparison chart as PNG")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="generate a tiny model and dataset, run the case on CPU",
                       description="Self-contained demo: no data, weights or network needed.")
    p.add_argument("--dir", default="mmlubench-demo", help="where to generate (default "
                   "./mmlubench-demo)")
    add_config_args(p)
    add_run_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("download", help="fetch MMLU data.tar and/or the weights from the HF Hub",
                       description="Download into DATA_DIR/MMLU_DIR and DATA_DIR/WEIGHT_DIR "
                       "(defaults from the case file). Without --data/--weights, both.")
    add_config_args(p)
    p.add_argument("--data", action="store_true", help="MMLU (Stevross/mmlu data.tar)")
    p.add_argument("--weights", action="store_true", help="model weights")
    p.add_argument("--repo", default="deepseek-ai/deepseek-llm-7b-base", help="weights repo")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("engines", help="list engines and their options")
    p.set_defaults(func=cmd_engines)
    return parser


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()  # e2e_time counts from here: config, data, model, both passes
    args = build_parser().parse_args(argv)
    args.start_time = start
    try:
        return args.func(args)
    except MmlubenchError as e:
        print(f"mmlubench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmlubench: interrupted", file=sys.stderr)
        return 130
