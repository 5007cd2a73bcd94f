"""Data-parallel scaling: N-GPU runs against the 1-GPU run of the same machine.

Efficiency of p_infer_core = p_infer_core(N) / (N x p_infer_core(1)); predictions of each pass
are compared with the 1-GPU run question for question. Prints a table, writes JSON.

    python bench/scaling.py --one RUN_1GPU --many RUN_2GPU RUN_4GPU --out scaling.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmlubench.results import document
from mmlubench.results.document import Result


def load(run: str) -> tuple[Result, list[dict]]:
    """A run's result document and its predictions.jsonl rows."""
    result = document.load(run)
    preds = [json.loads(line) for line in (Path(run) / "predictions.jsonl").open()]
    return result, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--one", required=True, help="1-GPU run folder")
    ap.add_argument("--many", nargs="+", required=True, help="N-GPU run folders")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    base, base_preds = load(args.one)
    b = base.metrics.p_infer_core_tok_per_s
    rows = [
        {
            "run": args.one,
            "devices": 1,
            "p_infer_core_tok_per_s": b,
            "efficiency": 1.0,
            "p_val_core_tok_per_s": base.metrics.p_val_core_tok_per_s,
            "e2e_time_s": base.metrics.e2e_time_s,
        }
    ]
    for run in args.many:
        r, preds = load(run)
        n = r.metrics.devices
        p = r.metrics.p_infer_core_tok_per_s
        same = {}
        keys = [(x["subject"], x["index"]) for x in preds]
        if keys != [(y["subject"], y["index"]) for y in base_preds]:
            raise SystemExit(f"{run} and {args.one} answered different questions")
        for name in ("val", "infer"):
            if name in preds[0] and name in base_preds[0]:
                same[name] = sum(
                    x[name]["top_id"] == y[name]["top_id"]
                    for x, y in zip(preds, base_preds, strict=True)
                ) / len(preds)
        rows.append(
            {
                "run": run,
                "devices": n,
                "p_infer_core_tok_per_s": p,
                "efficiency": p / (n * b),
                "p_val_core_tok_per_s": r.metrics.p_val_core_tok_per_s,
                "e2e_time_s": r.metrics.e2e_time_s,
                "same_predictions_as_1gpu": same,
                "per_rank_infer": r.infer.per_rank,
                "mem_peak_used_bytes": r.metrics.mem_peak_used_bytes,
                "questions": r.metrics.questions,
            }
        )
    env = base.environment
    doc = {
        "device_name": env.device_name,
        "torch": env.torch,
        "transformers": env.transformers,
        "date_utc": env.date_utc,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{env.device_name}, torch {env.torch}")
    print("| GPUs | p_infer_core tok/s | efficiency | p_val_core tok/s | e2e s | same preds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        same = r.get("same_predictions_as_1gpu", {})
        same_s = ", ".join(f"{k} {100 * v:.2f}%" for k, v in same.items()) or "-"
        val = r["p_val_core_tok_per_s"]
        print(
            f"| {r['devices']} | {r['p_infer_core_tok_per_s']:,.0f} | "
            f"{100 * r['efficiency']:.1f}% | {'-' if val is None else f'{val:,.0f}'} | "
            f"{r['e2e_time_s']:.1f} | {same_s} |"
        )


if __name__ == "__main__":
    main()
