"""The shared-prefix engine against the plain HF model on real weights, on CPU, in fp32.

For one converted checkpoint (an HF folder, e.g. from bench/gguf_to_hf.py) and real 5-shot MMLU
test questions (reference prompt style), runs
  golden:  the eager engine, method padded, batch_size 1: HF's own forward on each whole prompt;
  infer:   the shared-prefix engine (the model's own modules with the packed FlexAttention
           function, window masks, carry of prefixes between packs);
and compares, per question, the last-position logits over the whole vocabulary: same top
token, same answer letter under the reference rule, relative L2 (|infer - golden| / |golden|)
and max abs difference. Writes one JSON per model; `--table` turns such JSONs into a markdown
table. The library is used as tests/test_architectures.py uses it (engine_class,
engine_options, run_pass, bench.logits.KeepLogits, build_prompts).

    python bench/real_weights.py --model-dir /tmp/realw/hf/smollm2-135m --name smollm2-135m \\
        --mmlu-dir ../shared/mmlu/data --subjects short,high_school_european_history \\
        --limit 10 --out smollm2.json
    python bench/real_weights.py --table smollm2.json gemma.json --out table.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mmlubench and bench/ as a package
from bench.logits import KeepLogits

# The ten subjects with the shortest 5-shot prompts (about 250-350 tokens with SmolLM2's
# tokenizer): cheap on CPU, all under Gemma-3's 512-token window.
SHORT = (
    "world_religions",
    "management",
    "conceptual_physics",
    "miscellaneous",
    "human_aging",
    "philosophy",
    "virology",
    "medical_genetics",
    "anatomy",
    "human_sexuality",
)
# Ten subjects whose prompts are longer than 512 tokens (about 550-2048), the last one
# truncated at 2048: every prompt is cut by a 512-token sliding window.
LONG = (
    "prehistory",
    "college_chemistry",
    "business_ethics",
    "high_school_mathematics",
    "elementary_mathematics",
    "nutrition",
    "astronomy",
    "formal_logic",
    "machine_learning",
    "high_school_european_history",
)
SETS = {"short": SHORT, "long": LONG}
GOLDEN = {"method": "padded", "batch_size": 1}


@dataclass
class Pass:
    """One engine's pass: its result (PassResult), last-position logits [questions, vocab]
    and the wall time of the whole call (plan, warm-up, every batch)."""

    result: Any
    logits: torch.Tensor
    wall_s: float
    load_avg: tuple[float, float]  # the machine's 1-minute load average before and after


class KeepLogitsNoWarmup(KeepLogits):
    """KeepLogits whose warm-up does nothing: uncompiled, the shared-prefix engine's warm-up
    only runs the first pack twice (minutes on a shared 2-core CPU)."""

    def warmup(self, batches: Any) -> None:
        pass


def subjects_of(spec: str) -> list[str]:
    """Comma-separated subjects; `short` and `long` expand to their sets."""
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        for subject in SETS.get(item, (item,)):
            if subject not in out:
                out.append(subject)
    return out


def load_prompts(mmlu_dir: Path, subjects: list[str], limit: int, tokenizer) -> list[Any]:
    """The first `limit` test questions of each subject as mmlubench prompts (reference style,
    5-shot, truncated to 2048 tokens as the reference truncates)."""
    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import build_prompts

    return build_prompts(load_mmlu(mmlu_dir, "test", subjects, limit=limit), tokenizer)


def run_engine(
    model: torch.nn.Module,
    name: str,
    options: dict[str, Any],
    requests: list[Any],
    choice_ids: list[int],
    warmup: bool = True,
) -> Pass:
    """`requests` through engine `name` on the CPU, keeping every question's logits; without
    `warmup` the engine's warm-up (the shared-prefix engine runs its first pack once more, to
    compile) is skipped."""
    from mmlubench.engines import engine_class, engine_options
    from mmlubench.run.passes import run_pass

    wrapper = KeepLogits if warmup else KeepLogitsNoWarmup
    engine = wrapper(engine_class(name)(model, engine_options(name, options), "cpu"), len(requests))
    t, load = time.perf_counter(), os.getloadavg()[0]
    result = run_pass(name, engine, requests, choice_ids, progress=True)
    return Pass(result, engine.logits, time.perf_counter() - t, (load, os.getloadavg()[0]))


def question_rows(
    prompts: list[Any], golden: Pass, infer: Pass, decode: Any
) -> list[dict[str, Any]]:
    """Per question: where it comes from, both top tokens and letters, and the logit error."""
    from mmlubench.data.scoring import reference_letter

    want, got = golden.logits.double(), infer.logits.double()
    rel = ((got - want).norm(dim=1) / want.norm(dim=1)).tolist()
    abs_ = (got - want).abs().amax(dim=1).tolist()
    rows = []
    for i, p in enumerate(prompts):
        g, s = int(golden.result.top_ids[i]), int(infer.result.top_ids[i])
        rows.append(
            {
                "subject": p.subject,
                "row": int(p.index),
                "tokens": len(p.ids),
                "prefix_len": int(p.prefix_len),
                "dropped": int(p.dropped),
                "top_golden": g,
                "top_infer": s,
                "letter_golden": reference_letter(g, decode),
                "letter_infer": reference_letter(s, decode),
                "rel_l2": rel[i],
                "max_abs": abs_[i],
            }
        )
    return rows


def pass_summary(p: Pass) -> dict[str, Any]:
    r = p.result
    return {
        "engine": r.engine,
        "wall_s": p.wall_s,
        "load_avg_1min_before_after": p.load_avg,
        "whole_time_s": r.whole_time_s,
        "core_time_s": r.core_time_s,
        "compile_time_s": r.compile_time_s,
        "batches": r.batches,
        "tokens_through_model": int(r.work.tokens),
        "prompt_tokens": int(r.prompt_tokens),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rel = np.array([r["rel_l2"] for r in rows])
    worst = int(rel.argmax())
    return {
        "questions": len(rows),
        "same_top_token": sum(r["top_golden"] == r["top_infer"] for r in rows),
        "same_letter_reference": sum(r["letter_golden"] == r["letter_infer"] for r in rows),
        "rel_l2_mean": float(rel.mean()),
        "rel_l2_max": float(rel.max()),
        "max_abs_diff": max(r["max_abs"] for r in rows),
        "worst_question": {k: rows[worst][k] for k in ("subject", "row", "tokens")},
        "truncated_prompts": sum(r["dropped"] > 0 for r in rows),
        "prompt_tokens_min_mean_max": [
            min(r["tokens"] for r in rows),
            float(np.mean([r["tokens"] for r in rows])),
            max(r["tokens"] for r in rows),
        ],
    }


def versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()),
    }
    for pkg in ("torch", "transformers", "gguf", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def model_facts(model: torch.nn.Module, model_dir: Path) -> dict[str, Any]:
    cfg = model.config
    from mmlubench.engines.packed_attention import layer_windows

    windows = layer_windows(cfg, cfg.num_hidden_layers)
    return {
        "dir": str(model_dir),
        "class": type(model).__name__,
        "model_type": cfg.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": cfg.num_hidden_layers,
        "sliding_window_layers": sum(w is not None for w in windows),
        "sliding_window": min((w for w in windows if w), default=None),
    }


def infer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "pack_tokens": args.pack_tokens,
        "max_questions": args.max_questions,
        "carry_tokens": args.carry_tokens,
        "block_size": args.block_size,
        "compile": args.compile,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Both passes on one model; the JSON document."""
    from mmlubench.data.prompts import choice_token_ids
    from mmlubench.data.scoring import Decoder
    from mmlubench.data.tokenization import load_tokenizer
    from mmlubench.engines.base import Request
    from mmlubench.model.load import load_model

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model_dir)
    prompts = load_prompts(args.mmlu_dir, subjects_of(args.subjects), args.limit, tokenizer)
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    choice_ids = choice_token_ids(tokenizer)
    t = time.perf_counter()
    model, _ = load_model(args.model_dir, "fp32", "cpu", progress=False)
    load_s = time.perf_counter() - t
    print(
        f"{args.name}: {len(prompts)} questions, "
        f"{sum(len(p.ids) for p in prompts):,} prompt tokens; loaded in {load_s:.1f} s",
        flush=True,
    )
    infer = run_engine(
        model, "shared-prefix", infer_options(args), requests, choice_ids, warmup=args.compile
    )
    print(f"shared-prefix: {infer.wall_s:.1f} s", flush=True)
    golden = run_engine(model, "eager", GOLDEN, requests, choice_ids)
    print(f"eager golden: {golden.wall_s:.1f} s", flush=True)
    rows = question_rows(prompts, golden, infer, Decoder(tokenizer))
    return {
        "name": args.name,
        "date": datetime.date.today().isoformat(),
        "model": model_facts(model, args.model_dir),
        "load_s": load_s,
        "subjects": subjects_of(args.subjects),
        "limit_per_subject": args.limit,
        "summary": summary(rows),
        "golden": {"options": GOLDEN, **pass_summary(golden)},
        "infer": {
            "options": infer_options(args),
            "warmup_run": args.compile,
            **pass_summary(infer),
        },
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "versions": versions(),
        "questions": rows,
    }


def table(docs: list[dict[str, Any]]) -> str:
    """The markdown table of several models' JSONs."""
    head = (
        "| model | questions (truncated) | prompt tokens min/mean/max | same top token | "
        "same letter (reference) | rel L2 mean | rel L2 max | max abs diff | "
        "golden wall (s) | shared-prefix wall (s) | compile |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for d in docs:
        s, g, i = d["summary"], d["golden"], d["infer"]
        lo, mean, hi = s["prompt_tokens_min_mean_max"]
        n, compiled = s["questions"], "on" if i["options"]["compile"] else "off"
        lines.append(
            f"| {d['name']} | {n} ({s['truncated_prompts']}) | {lo}/{mean:.0f}/{hi} | "
            f"{s['same_top_token']}/{n} | {s['same_letter_reference']}/{n} | "
            f"{s['rel_l2_mean']:.2e} | {s['rel_l2_max']:.2e} | {s['max_abs_diff']:.2e} | "
            f"{g['wall_s']:.0f} | {i['wall_s']:.0f} | {compiled} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, help="HF model folder (fp32 safetensors)")
    ap.add_argument("--name", help="the model's name in the JSON and the table")
    ap.add_argument("--mmlu-dir", type=Path, help="MMLU data folder (its test/)")
    ap.add_argument(
        "--subjects",
        default="short",
        help="comma-separated test subjects; 'short' and 'long' are sets of ten "
        f"(short: {', '.join(SHORT)}; long: {', '.join(LONG)}); default short",
    )
    ap.add_argument("--limit", type=int, default=10, help="first N questions per subject")
    ap.add_argument("--pack-tokens", type=int, default=2560, help="shared-prefix pack length")
    ap.add_argument("--max-questions", type=int, default=16, help="most questions per pack")
    ap.add_argument("--carry-tokens", type=int, default=2048, help="carry (0: off)")
    ap.add_argument("--block-size", type=int, default=128, help="FlexAttention block size")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decoder layers (default off: eager FlexAttention)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write (markdown: --table)")
    ap.add_argument(
        "--table",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="write the markdown table of these JSONs to --out instead",
    )
    args = ap.parse_args(argv)
    if args.table is None and None in (args.model_dir, args.name, args.mmlu_dir):
        ap.error("--model-dir, --name and --mmlu-dir are needed (or --table)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        docs = [json.loads(p.read_text(encoding="utf-8")) for p in args.table]
        args.out.write_text(table(docs), encoding="utf-8")
        print(args.out.read_text(encoding="utf-8"), end="")
        return 0
    doc = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"name": doc["name"], **doc["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
