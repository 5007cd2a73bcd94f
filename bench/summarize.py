"""Summarize the device benchmark: the reference method against the fast engine, same run.

Reads the result.json of each run folder given (and an optional parity.json), prints one table
and writes the numbers as JSON.

    python bench/summarize.py --runs RUN_DIR... [--parity parity.json] --out bench.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmlubench.display import GIB
from mmlubench.results import document
from mmlubench.results.document import Result


def rows_of(result: Result) -> list[dict]:
    """One row per pass of a run: its figures and the run's memory and e2e time."""
    out = []
    for name, p in result.passes.items():
        out.append(
            {
                "run": result.config.run_name,
                "pass": name,
                "engine": p.engine.name,
                "engine_options": p.engine.options,
                "device_name": result.environment.device_name,
                "questions": p.questions,
                "prompt_tokens": p.prompt_tokens,
                "core_tok_per_s": p.core_tok_per_s,
                "whole_tok_per_s": p.whole_tok_per_s,
                "computed_tokens": p.computed_tokens,
                "computed_tok_per_s": p.computed_tok_per_s,
                "mfu": p.mfu,
                "mfu_computed": p.mfu_computed,
                "compile_time_s": p.compile_time_s,
                "core_time_s": p.core_time_s,
                "whole_time_s": p.whole_time_s,
                "torch_peak_allocated_bytes": p.torch_peak_allocated_bytes,
                "run_mem_peak_used_bytes": result.metrics.mem_peak_used_bytes,
                "run_e2e_time_s": result.metrics.e2e_time_s,
            }
        )
    return out


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--parity")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    results = [document.load(r) for r in args.runs]
    rows = [row for r in results for row in rows_of(r)]
    env = results[0].environment
    doc = {
        "device_name": env.device_name,
        "driver": env.driver,
        "torch": env.torch,
        "transformers": env.transformers,
        "cuda": env.cuda,
        "date_utc": env.date_utc,
        "git": env.git.to_json(),
        "rows": rows,
    }
    by = {(r["engine"], r["pass"]): r for r in rows}
    ref_infer = by.get(("inductor", "infer"))
    ref_val = next(
        (
            r
            for r in rows
            if r["pass"] == "val"
            and r["engine_options"].get("full_logits")
            and r["engine_options"].get("batch_size") == 1
        ),
        None,
    )
    fast = by.get(("shared-prefix", "infer"))
    fast_val = next(
        (r for r in rows if r["pass"] == "val" and r["engine_options"].get("batch_size", 1) > 1),
        None,
    )
    if ref_infer and fast:
        doc["speedup_infer_core"] = fast["core_tok_per_s"] / ref_infer["core_tok_per_s"]
    if ref_val and fast_val:
        doc["speedup_val_core"] = fast_val["core_tok_per_s"] / ref_val["core_tok_per_s"]
    if args.parity:
        doc["parity"] = json.loads(Path(args.parity).read_text())
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")

    print(
        f"\n{doc['device_name']}, torch {doc['torch']}, transformers {doc['transformers']}, "
        f"CUDA {doc['cuda']}, driver {doc['driver']}, {doc['date_utc']}"
    )
    print(
        "| pass | engine | questions | prompt tok/s core | computed tok/s | MFU % | "
        "mfu_computed % | compile s | whole s | torch peak GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = r["torch_peak_allocated_bytes"]
        print(
            f"| {r['pass']} | {r['engine']} | {r['questions']} | "
            f"{fmt(r['core_tok_per_s'], ',.0f')} | {fmt(r['computed_tok_per_s'], ',.0f')} | "
            f"{fmt(r['mfu'] and 100 * r['mfu'], '.1f')} | "
            f"{fmt(r['mfu_computed'] and 100 * r['mfu_computed'], '.1f')} | "
            f"{r['compile_time_s']:.1f} | {r['whole_time_s']:.1f} | "
            f"{fmt(peak and peak / GIB, '.1f')} |"
        )
    for key in ("speedup_infer_core", "speedup_val_core"):
        if key in doc:
            print(f"{key}: {doc[key]:.1f}x")


if __name__ == "__main__":
    main()
