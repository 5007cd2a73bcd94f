"""The real-model comparison of fp8 and fp16: SmolLM2-135M runs side by side (smol_fp8.sh, kept
in bench/results/2026-11-28_h200x2_reference-full/).

For each run's result.json: val and infer accuracy under the reference and choices rules, the
in-run val/infer agreement (same letter under both rules, same top token) and the relative L2
of the four answer-letter logits (infer vs val), throughput and time; with --parity, the
summary of bench/parity.py's JSON (fp8 and shared-prefix against eager batch 1). Writes JSON
and prints one line per run.

    python bench/smol_compare.py RUN_DIR [RUN_DIR ...] [--parity parity.json] --out smol.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RULES = ("reference", "choices")


def run_summary(run: Path) -> dict:
    """The figures of one finished run (its result.json), or why there are none."""
    path = run / "result.json"
    if not path.is_file():
        return {"run": run.name, "missing": f"{path} not found (run failed or timed out)"}
    r = json.loads(path.read_text(encoding="utf-8"))
    passes, m = r["passes"], r["metrics"]
    out: dict = {
        "run": run.name,
        "precision": m["precision"],
        "questions": m["questions"],
        "e2e_time_s": m["e2e_time_s"],
        "random_weights": r["random_weights"],
    }
    for name, p in passes.items():
        out[name] = {
            "engine": p["engine"]["name"],
            "core_tok_per_s": p["core_tok_per_s"],
            "whole_time_s": p["whole_time_s"],
            "compile_time_s": p["compile_time_s"],
            **{
                f"acc_{rule}": p["accuracy"][rule]["micro"]
                for rule in RULES
                if rule in p["accuracy"]
            },
        }
    agree = (r.get("accuracy") or {}).get("agreement_val_infer")
    if agree:
        out["agreement_val_infer"] = agree
    if "precision_recipe" in m:
        out["precision_recipe"] = m["precision_recipe"]
    return out


def parity_summary(path: Path) -> dict:
    """What bench/parity.py measured against eager batch 1 (absent file: why)."""
    if not path.is_file():
        return {"missing": f"{path} not found (not run, failed or timed out)"}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {
        "questions": doc.get("questions"),
        "precision": doc.get("precision"),
        **{k: v for k, v in doc.items() if k.endswith("_vs_eager")},
    }


def line(s: dict) -> str:
    """One printed row: accuracies, agreement and rel L2 of a run."""
    if "missing" in s:
        return f"{s['run']}: {s['missing']}"
    cells = [f"{s['run']} ({s['precision']}, {s['questions']} q, e2e {s['e2e_time_s']:.0f} s)"]
    for name in ("val", "infer"):
        if name in s:
            p = s[name]
            cells.append(
                f"{name} {p['engine']}: ref {100 * p['acc_reference']:.2f}% / choices "
                f"{100 * p['acc_choices']:.2f}%"
            )
    a = s.get("agreement_val_infer")
    if a:
        rel = a.get("letter_logits_rel_l2_mean")
        cells.append(
            f"same letter ref {100 * a['same_letter_reference']:.2f}% / choices "
            f"{100 * a['same_letter_choices']:.2f}%, letter-logit rel L2 mean "
            + (f"{rel:.3e}" if rel is not None else "n/a")
        )
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (holding result.json)")
    ap.add_argument("--parity", type=Path, help="bench/parity.py's JSON, if it ran")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc: dict = {
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)",
        "runs": [run_summary(r) for r in args.runs],
    }
    if args.parity:
        doc["parity"] = parity_summary(args.parity)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for s in doc["runs"]:
        print(line(s))
    for key, c in (doc.get("parity") or {}).items():
        if key.endswith("_vs_eager"):
            print(
                f"parity {key}: rel L2 mean {c['rel_l2_mean']:.3e} max {c['rel_l2_max']:.3e}, "
                f"same letter {100 * c['same_choice']:.2f}%"
            )


if __name__ == "__main__":
    main()
