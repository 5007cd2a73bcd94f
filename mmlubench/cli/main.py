"""Command line: `mmlubench run | prompts | report | compare | demo | download | cases | engines
| ceiling`.

Bad input ends with one line naming the file, line or key at fault (exit status 2), never a
traceback; a bug still shows its traceback. argparse's own usage errors (an unknown flag, a bad
choice) print the usage and `mmlubench CMD: error: ...`, also with exit status 2.
The commands themselves are in commands.py, the flags in flags.py; this module declares the
commands.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from mmlubench import __version__
from mmlubench.cli import interrupts
from mmlubench.cli.flags import (
    add_config_args,
    add_folder_args,
    add_prompt_args,
    add_run_args,
    case_defaults,
)
from mmlubench.errors import MmlubenchError, one_line

DESCRIPTION = """\
mmlubench measures how fast and how well an accelerator runs a large language model on 5-shot
MMLU, as the FlagPerf case deepseek_7b_MMLU defines it, and prints one table: precision, memory,
end-to-end time, val and infer throughput (whole and core), MFU and accuracy.

Start with `mmlubench demo` (CPU, no downloads). Real runs: `mmlubench download`, then
`mmlubench run --data-dir DATA_DIR`. Speed without the checkpoint: `--random-weights`.
"""


def add_case_commands(sub: argparse._SubParsersAction) -> None:
    """run, prompts and demo: the commands that read a case."""
    add_run_command(sub)
    add_prompts_command(sub)
    add_demo_command(sub)


def add_run_command(sub: argparse._SubParsersAction) -> None:
    """`mmlubench run`."""
    from mmlubench.cli import commands
    from mmlubench.config.config import DEFAULT_CASE

    case = case_defaults(DEFAULT_CASE)
    p = sub.add_parser(
        "run",
        help="run the case: val + infer passes, result table",
        description="Run the case and write runs/<name>/result.json, "
        "predictions.jsonl and results_lm-eval.json; print the table last. "
        "Defaults shown are the packaged case file's. There is no --batch-size: "
        "each engine sizes its own batches (`mmlubench engines`), and a batch "
        "that runs out of device memory is split and retried (lm-eval's "
        "--batch-size auto behaviour, always on; result.json records each "
        "back-off).",
    )
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case, model=True)
    add_prompt_args(p, case)
    add_run_args(p, case)
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="go on with an interrupted run in RUN_DIR without recomputing the "
        "questions it answered (its config.yaml is the base config; the config, "
        "prompts and model must match the run's fingerprint.json; one process only)",
    )
    p.set_defaults(func=commands.run)


def add_prompts_command(sub: argparse._SubParsersAction) -> None:
    """`mmlubench prompts`."""
    from mmlubench.cli import commands
    from mmlubench.config.config import DEFAULT_CASE

    case = case_defaults(DEFAULT_CASE)
    p = sub.add_parser(
        "prompts",
        help="write every prompt (text and token ids) as JSONL",
        description="Write, for every question: subject, row index, prompt "
        "text, token ids and answer letter, to inspect what the model sees. "
        "On a demo folder: `mmlubench prompts --data-dir DEMO_DIR --out F`.",
    )
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case, model=True)
    add_prompt_args(p, case)
    p.add_argument("--out", required=True, help="output .jsonl file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.prompts)


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    """`mmlubench demo`: its defaults are the demo case file's."""
    from mmlubench.cli import commands
    from mmlubench.cli.demo import default_dir
    from mmlubench.config.config import CONFIG_DIR

    demo_case = CONFIG_DIR / "demo.yaml"
    demo = case_defaults(demo_case)
    demo.update(data_dir="DIR", output_dir="DIR/runs")
    p = sub.add_parser(
        "demo",
        help="generate a tiny model and dataset, run the case on CPU",
        description="Self-contained demo: no data, weights or network needed. "
        "Generates a tiny random Llama, a tokenizer and a small MMLU-layout "
        "dataset in DIR (once), then runs the case with configs/demo.yaml: the "
        "defaults below are the demo's.",
    )
    p.add_argument(
        "--dir",
        default=str(default_dir()),
        help="where to generate the demo's "
        "model and data (default: %(default)s); run folders go to DIR/runs",
    )
    add_config_args(p, demo_case)
    add_folder_args(p, demo)
    add_prompt_args(p, demo)
    add_run_args(p, demo)
    p.set_defaults(func=commands.demo)


def add_tool_commands(sub: argparse._SubParsersAction) -> None:
    """report, compare, download, cases, engines and ceiling."""
    add_result_commands(sub)
    add_download_command(sub)
    add_listing_commands(sub)


def add_result_commands(sub: argparse._SubParsersAction) -> None:
    """report and compare: the commands that read finished runs."""
    from mmlubench.cli import commands

    p = sub.add_parser("report", help="print the table of a finished run again")
    p.add_argument("run_dir", help="run folder (or its result.json)")
    p.add_argument(
        "--format",
        choices=["table", "markdown", "json", "flagperf", "lm-eval"],
        default="table",
        help="table: aligned columns on a terminal, markdown "
        "elsewhere (default); markdown: the table as markdown; json: result.json "
        "itself; flagperf: the keys and units FlagPerf's inference run logs (Finish "
        "Info); lm-eval: lm-evaluation-harness's results layout (per subject and "
        "group acc,none and acc_stderr,none, choices rule; results_lm-eval.json)",
    )
    p.add_argument(
        "--html",
        nargs="?",
        const="",
        metavar="OUT.html",
        help="also write a self-contained HTML report (charts embedded; default "
        "RUN_DIR/report.html)",
    )
    p.set_defaults(func=commands.report)

    p = sub.add_parser(
        "compare",
        help="side-by-side table of several runs",
        description="One row per run: reference columns, device, and ratios "
        "to the first run; warns when settings make runs incomparable.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (first = base)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML comparison")
    p.add_argument("--png", metavar="OUT.png", help="write the comparison chart as PNG")
    p.set_defaults(func=commands.compare)


def add_download_command(sub: argparse._SubParsersAction) -> None:
    """`mmlubench download`."""
    from mmlubench.cli import commands
    from mmlubench.config.config import DEFAULT_CASE

    p = sub.add_parser(
        "download",
        help="fetch MMLU data.tar and/or the weights from the HF Hub",
        description="Download into DATA_DIR/MMLU_DIR and DATA_DIR/WEIGHT_DIR "
        "(defaults from the case file). Without --data/--weights, both. "
        "HF_ENDPOINT selects a Hub mirror; HF_HUB_OFFLINE=1 uses only the local "
        "Hugging Face cache.",
    )
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case_defaults(DEFAULT_CASE))
    p.add_argument("--data", action="store_true", help="MMLU (Stevross/mmlu data.tar)")
    p.add_argument(
        "--data-tar",
        metavar="PATH",
        help="unpack this local copy of MMLU's data.tar instead of downloading it (implies --data)",
    )
    p.add_argument("--weights", action="store_true", help="model weights")
    p.add_argument(
        "--repo",
        help="weights repo (default: the case file's hf_repo, "
        f"{case_defaults(DEFAULT_CASE).get('hf_repo')} for the packaged case)",
    )
    p.set_defaults(func=commands.download)


def add_listing_commands(sub: argparse._SubParsersAction) -> None:
    """cases, engines and ceiling: what is packaged, and the device alone."""
    from mmlubench.cli import commands
    from mmlubench.config.config import DEFAULT_CASE

    p = sub.add_parser("cases", help="list the packaged cases: model, reference row, weights")
    p.set_defaults(func=commands.cases)

    p = sub.add_parser(
        "engines",
        help="list engines, their options and defaults",
        description="Every engine: what it is, whether it is a default, and "
        "each option with its default and meaning.",
    )
    p.set_defaults(func=commands.engines)

    from mmlubench.cli import ceiling as ceiling_cli

    p = sub.add_parser(
        "ceiling",
        help="measure the device's GEMM, attention and memory rates",
        description=ceiling_cli.HELP,
    )
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case_defaults(DEFAULT_CASE))
    ceiling_cli.add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmlubench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmlubench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_case_commands(sub)
    add_tool_commands(sub)
    return parser


def allocator_defaults() -> None:
    """Expandable segments for PyTorch's device memory allocator, unless the user chose a
    setting. The val pass's batches all have new shapes (length-sorted suffixes); with fixed
    segments the cached blocks fragmented until 96 GiB were reserved for 37 GiB allocated on
    an H200, and device-wide memory (the table's `mem`) counts what is reserved. Must run
    before the first device allocation."""
    if not any(os.environ.get(k) for k in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")):
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()  # e2e_time counts from here: config, data, model, both passes
    allocator_defaults()
    args = build_parser().parse_args(argv)
    args.start_time = start
    previous = interrupts.install()  # a second Ctrl-C never breaks the first's cleanup
    try:
        return args.func(args)
    except MmlubenchError as e:
        print(f"mmlubench: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if previous is not None:  # first: a second Ctrl-C must not cut the message short
            interrupts.ignore_from_now()
            previous = None
        from mmlubench.errors import Interrupted

        # On a line of its own: a progress bar may hold the cursor at the end of its line.
        print(
            "\n" + (e.message() if isinstance(e, Interrupted) else "mmlubench: interrupted"),
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # `mmlubench engines | head`: the reader has gone, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
