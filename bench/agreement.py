"""Agreement of predictions between runs, and the figures of a run that did not finish.

    python bench/agreement.py --pair RUN_A:PASS RUN_B:PASS [--pair ...] [--partial RUN] --out F

`--pair` compares two runs' predictions.jsonl (or predictions.jsonl.gz) question by question:
the share of questions with the same top token and the same letter under each answer rule.
`--partial` sums the batches of an interrupted run's progress.jsonl: questions, prompt tokens,
core seconds and prompt tokens per core second (the run's p_infer_core so far).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path


def _lines(run: Path, name: str) -> list[dict]:
    path = run / name if (run / name).exists() else run / f"{name}.gz"
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def agreement(a: str, b: str) -> dict:
    """Same top id / letters of pass PASS of run A and run B, over the questions both hold."""
    (ra, pa), (rb, pb) = (s.rsplit(":", 1) for s in (a, b))
    x = {(d["subject"], d["index"]): d[pa] for d in _lines(Path(ra), "predictions.jsonl")}
    y = {(d["subject"], d["index"]): d[pb] for d in _lines(Path(rb), "predictions.jsonl")}
    keys = sorted(x.keys() & y.keys())
    out: dict = {"a": a, "b": b, "questions": len(keys)}
    for field in ("top_id", "reference", "choices"):
        same = sum(x[k][field] == y[k][field] for k in keys)
        out[f"same_{field}"] = same / len(keys) if keys else None
    return out


def partial(run: str) -> dict:
    """Figures of an unfinished run from its progress log (batch records only)."""
    records = _lines(Path(run), "progress.jsonl")
    batches = [r for r in records if r.get("kind") == "batch"]
    start = next((r for r in records if r.get("kind") == "pass_start"), {})
    tokens = sum(r["prompt_tokens"] for r in batches)
    core = sum(r["core_time_s"] for r in batches)
    return {
        "run": run,
        "questions": sum(len(r["rows"]) for r in batches),
        "prompt_tokens": tokens,
        "core_time_s": core,
        "core_tok_per_s": tokens / core if core else None,
        "compile_time_s": start.get("compile_time_s"),
        "last_batch_t_s": batches[-1]["t_s"] if batches else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar="RUN:PASS")
    ap.add_argument("--partial", action="append", default=[], metavar="RUN")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    doc = {
        "pairs": [agreement(a, b) for a, b in args.pair],
        "partial": [partial(r) for r in args.partial],
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    for p in doc["pairs"]:
        print(
            f"{p['a']} vs {p['b']}: {p['questions']} questions, top id "
            f"{p['same_top_id']:.2%}, reference {p['same_reference']:.2%}, choices "
            f"{p['same_choices']:.2%}"
        )
    for p in doc["partial"]:
        print(
            f"{p['run']}: {p['questions']} questions, {p['prompt_tokens']} tokens, core "
            f"{p['core_time_s']:.1f} s, {p['core_tok_per_s']:,.0f} tok/s core"
        )


if __name__ == "__main__":
    main()
