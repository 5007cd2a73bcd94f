"""Command line: `mmlubench run | prompts | report | compare | demo | download | cases | engines
| ceiling`.

Bad input ends with one line naming the file, line or key at fault (exit status 2), never a
traceback; a bug still shows its traceback. argparse's own usage errors (an unknown flag, a bad
choice) print the usage and `mmlubench CMD: error: ...`, also with exit status 2.
The commands themselves are in commands.py; this module only declares them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mmlubench import __version__, interrupts
from mmlubench.errors import MmlubenchError, one_line

DESCRIPTION = """\
mmlubench measures how fast and how well an accelerator runs a large language model on 5-shot
MMLU, as the FlagPerf case deepseek_7b_MMLU defines it, and prints one table: precision, memory,
end-to-end time, val and infer throughput (whole and core), MFU and accuracy.

Start with `mmlubench demo` (CPU, no downloads). Real runs: `mmlubench download`, then
`mmlubench run --data-dir DATA_DIR`. Speed without the checkpoint: `--random-weights`.
"""

def case_defaults(case: Path) -> dict[str, Any]:
    """The values a run gets when no flag is given: the Config's defaults under the case file
    (for --help only: a broken file shows the bare defaults, the run itself reports it)."""
    import dataclasses

    from mmlubench.config import Config
    from mmlubench.yamlfile import read_yaml

    values = {f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config)}
    with contextlib.suppress(MmlubenchError):
        values.update(read_yaml(case))
    return values


def add_config_args(p: argparse.ArgumentParser, case: Path) -> None:
    g = p.add_argument_group("configuration (case YAML < vendor YAML < these flags)")
    g.add_argument("--config", metavar="YAML|NAME", help="case file, or the name of a packaged "
                   f"one such as demo (default: {case.relative_to(case.parents[1])})")
    g.add_argument("--vendor", metavar="YAML|NAME", help="vendor overrides: a file, or a name: "
                   "a packaged vendor file (cpu, nvidia) or an installed vendor plug-in's "
                   "config (docs/VENDORS.md)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set engines.eager.batch_size=8 "
                   "(repeatable; value read as YAML)")


def add_folder_args(p: argparse.ArgumentParser, d: dict[str, Any], model: bool = False) -> None:
    g = p.add_argument_group("folders")
    if model:
        g.add_argument("--model", metavar="NAME_OR_PATH", help="the model: a folder, or a "
                       "Hugging Face Hub repo id (ORG/NAME) taken from huggingface_hub's cache "
                       "(HF_HOME; HF_HUB_OFFLINE=1: the cache only) or downloaded into it. "
                       "Without --config it runs the case whose model this is (by config.json), "
                       "else the generic case mmlu")
        g.add_argument("--revision", help="with a Hub repo id: branch, tag or commit (default: "
                       "main); the commit used is recorded in result.json")
    g.add_argument("--data-dir", help=f"root folder of weight_dir and mmlu_dir (default: "
                   f"{d['data_dir']})")
    g.add_argument("--weight-dir", help="model folder (weights, config.json, tokenizer), "
                   f"relative to --data-dir unless absolute (default: {d['weight_dir']})")
    g.add_argument("--mmlu-dir", help="MMLU folder holding dev/ val/ test/, relative to "
                   f"--data-dir unless absolute (default: {d['mmlu_dir']})")


def add_prompt_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    g = p.add_argument_group("questions and prompts")
    g.add_argument("--split", choices=["test", "val", "dev"],
                   help=f"questions under test (default: {d['split']})")
    g.add_argument("--subjects", help="comma-separated subjects (default: all)")
    g.add_argument("--limit", type=int, help="first N questions of each subject (default: all)")
    g.add_argument("--few-shots", type=int, help=f"examples per prompt (default: "
                   f"{d['few_shots']})")
    g.add_argument("--max-seq-len", type=int, help="truncation limit in tokens (default: "
                   f"{d['max_seq_len']})")
    g.add_argument("--prompt-style", choices=["reference", "lm-eval"],
                   help=f"reference (FlagPerf) or lm-eval (default: {d['prompt_style']})")


def add_run_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    g = p.add_argument_group("model, engines and metrics")
    g.add_argument("--precision", choices=["fp16", "bf16", "fp32", "fp8"],
                   help="dtype of the weights and the compute: fp16 as the reference, bf16, "
                   "fp32 (the choice on CPU), or fp8 (e4m3 linear layers in the shared-prefix "
                   "infer engine, val in fp16; GPUs with FP8 units) "
                   f"(default: {d['precision']})")
    g.add_argument("--device", help=f"cuda, cuda:N or cpu (default: {d['device']})")
    engine = d["engine"]
    if engine == "auto":
        from mmlubench.config import AUTO_ENGINE

        engine = f"auto: {AUTO_ENGINE['cuda']} on CUDA, {AUTO_ENGINE['cpu']} on CPU"
    g.add_argument("--engine", help=f"infer engine, see `mmlubench engines` (default: {engine})")
    g.add_argument("--val-engine", help=f"val engine (default: {d['val_engine']}: the plain HF "
                   "model)")
    g.add_argument("--no-validation", action="store_true", help="skip the val pass")
    g.add_argument("--no-ceiling", action="store_true", help="skip measuring the device's own "
                   "ceiling after the passes (a few seconds, outside e2e_time; see `mmlubench "
                   "ceiling`); it runs on accelerators, on the CPU only with --set ceiling=true")
    g.add_argument("--random-weights", action="store_true",
                   help="build the model from config.json with random weights (speed only)")
    g.add_argument("--seed", type=int, help=f"seed of the random weights, 0 to 2**64-1 "
                   f"(default: {d['seed']})")
    g.add_argument("--scoring", choices=["reference", "choices", "token"],
                   help="reference: argmax over the vocabulary, keep A-D; choices: argmax over "
                   "the four answer-letter tokens; token: the argmax must be the answer "
                   f"letter's token (FlagPerf llama2_7b_mmlu) (default: {d['scoring']})")
    g.add_argument("--peak-flops", type=float, help="peak FLOP/s of one device, for MFU on "
                   "devices not in the table")
    g.add_argument("--flops-per-token", help="FLOPs per prompt token for MFU, a product such "
                   f"as '2*7e9' (the reference) or '2*params' (default: {d['flops_per_token']})")
    g.add_argument("--mem-sample-interval", type=float, help="NVML sampling period, seconds "
                   f"(default: {d['mem_sample_interval_s']})")
    g.add_argument("--output-dir", help=f"where run folders go (default: {d['output_dir']})")
    g.add_argument("--run-name", help="suffix of the run folder name")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (also none from transformers)")
    g.add_argument("--log-samples", action="store_true", help="also write lm-eval's samples "
                   "files (samples_lm-eval/samples_mmlu_SUBJECT.jsonl): per question the four "
                   "letters' log-likelihoods over the vocabulary, gold, prediction, prompt")


def add_case_commands(sub: argparse._SubParsersAction) -> None:
    """run, prompts and demo: the commands that read a case."""
    from mmlubench import commands
    from mmlubench.config import CONFIG_DIR, DEFAULT_CASE
    from mmlubench.demo import default_dir

    case = case_defaults(DEFAULT_CASE)
    p = sub.add_parser("run", help="run the case: val + infer passes, result table",
                       description="Run the case and write runs/<name>/result.json, "
                       "predictions.jsonl and results_lm-eval.json; print the table last. "
                       "Defaults shown are the packaged case file's. There is no --batch-size: "
                       "each engine sizes its own batches (`mmlubench engines`), and a batch "
                       "that runs out of device memory is split and retried (lm-eval's "
                       "--batch-size auto behaviour, always on; result.json records each "
                       "back-off).")
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case, model=True)
    add_prompt_args(p, case)
    add_run_args(p, case)
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="go on with an interrupted run in RUN_DIR without recomputing the "
                   "questions it answered (its config.yaml is the base config; the config, "
                   "prompts and model must match the run's fingerprint.json; one process only)")
    p.set_defaults(func=commands.run)

    p = sub.add_parser("prompts", help="write every prompt (text and token ids) as JSONL",
                       description="Write, for every question: subject, row index, prompt "
                       "text, token ids and answer letter, to inspect what the model sees. "
                       "On a demo folder: `mmlubench prompts --data-dir DEMO_DIR --out F`.")
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case, model=True)
    add_prompt_args(p, case)
    p.add_argument("--out", required=True, help="output .jsonl file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.prompts)

    demo_case = CONFIG_DIR / "demo.yaml"
    demo = case_defaults(demo_case)
    demo.update(data_dir="DIR", output_dir="DIR/runs")
    p = sub.add_parser("demo", help="generate a tiny model and dataset, run the case on CPU",
                       description="Self-contained demo: no data, weights or network needed. "
                       "Generates a tiny random Llama, a tokenizer and a small MMLU-layout "
                       "dataset in DIR (once), then runs the case with configs/demo.yaml: the "
                       "defaults below are the demo's.")
    p.add_argument("--dir", default=str(default_dir()), help="where to generate the demo's "
                   "model and data (default: %(default)s); run folders go to DIR/runs")
    add_config_args(p, demo_case)
    add_folder_args(p, demo)
    add_prompt_args(p, demo)
    add_run_args(p, demo)
    p.set_defaults(func=commands.demo)


def add_tool_commands(sub: argparse._SubParsersAction) -> None:
    """report, compare, download and engines."""
    from mmlubench import commands
    from mmlubench.config import DEFAULT_CASE

    p = sub.add_parser("report", help="print the table of a finished run again")
    p.add_argument("run_dir", help="run folder (or its result.json)")
    p.add_argument("--format", choices=["table", "markdown", "json", "flagperf", "lm-eval"],
                   default="table", help="table: aligned columns on a terminal, markdown "
                   "elsewhere (default); markdown: the table as markdown; json: result.json "
                   "itself; flagperf: the keys and units FlagPerf's inference run logs (Finish "
                   "Info); lm-eval: lm-evaluation-harness's results layout (per subject and "
                   "group acc,none and acc_stderr,none, choices rule; results_lm-eval.json)")
    p.add_argument("--html", nargs="?", const="", metavar="OUT.html",
                   help="also write a self-contained HTML report (charts embedded; default "
                   "RUN_DIR/report.html)")
    p.set_defaults(func=commands.report)

    p = sub.add_parser("compare", help="side-by-side table of several runs",
                       description="One row per run: reference columns, device, and ratios "
                       "to the first run; warns when settings make runs incomparable.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (first = base)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML comparison")
    p.add_argument("--png", metavar="OUT.png", help="write the comparison chart as PNG")
    p.set_defaults(func=commands.compare)

    p = sub.add_parser("download", help="fetch MMLU data.tar and/or the weights from the HF Hub",
                       description="Download into DATA_DIR/MMLU_DIR and DATA_DIR/WEIGHT_DIR "
                       "(defaults from the case file). Without --data/--weights, both. "
                       "HF_ENDPOINT selects a Hub mirror; HF_HUB_OFFLINE=1 uses only the local "
                       "Hugging Face cache.")
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case_defaults(DEFAULT_CASE))
    p.add_argument("--data", action="store_true", help="MMLU (Stevross/mmlu data.tar)")
    p.add_argument("--data-tar", metavar="PATH", help="unpack this local copy of MMLU's "
                   "data.tar instead of downloading it (implies --data)")
    p.add_argument("--weights", action="store_true", help="model weights")
    p.add_argument("--repo", help="weights repo (default: the case file's hf_repo, "
                   f"{case_defaults(DEFAULT_CASE).get('hf_repo')} for the packaged case)")
    p.set_defaults(func=commands.download)

    p = sub.add_parser("cases", help="list the packaged cases: model, reference row, weights")
    p.set_defaults(func=commands.cases)

    p = sub.add_parser("engines", help="list engines, their options and defaults",
                       description="Every engine: what it is, whether it is a default, and "
                       "each option with its default and meaning.")
    p.set_defaults(func=commands.engines)

    from mmlubench import ceiling_cli

    p = sub.add_parser("ceiling", help="measure the device's GEMM, attention and memory rates",
                       description=ceiling_cli.HELP)
    add_config_args(p, DEFAULT_CASE)
    add_folder_args(p, case_defaults(DEFAULT_CASE))
    ceiling_cli.add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlubench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
        print("\n" + (e.message() if isinstance(e, Interrupted) else "mmlubench: interrupted"),
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mmlubench engines | head`: the reader has gone, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
