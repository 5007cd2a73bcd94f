"""The human-readable table, in the reference's column order, made from a result document."""

from __future__ import annotations

import json
from pathlib import Path

from mmlubench.errors import MmlubenchError

GIB = 1024**3
COLUMNS = ["tool", "precision", "e2e_time", "p_val_whole", "p_val_core", "p_infer_whole",
           "*p_infer_core", "*MFU", "acc (infer/val)", "mem"]


def load_result(run_dir: str | Path) -> dict:
    path = Path(run_dir)
    if path.is_dir():
        path = path / "result.json"
    if not path.is_file():
        raise MmlubenchError(f"{path}: no result.json here (is this a run folder?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MmlubenchError(f"{path}: not valid JSON: {e}") from None


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table_row(result: dict) -> list[str]:
    m = result["metrics"]
    mem = "-"
    if m.get("mem_peak_used_bytes") is not None and m.get("mem_total_bytes"):
        mem = f"{m['mem_peak_used_bytes'] / GIB:.1f}/{m['mem_total_bytes'] / GIB:.1f}"
    return [
        result["passes"]["infer"]["engine"]["name"],
        m["precision"],
        _num(m["e2e_time_s"]),
        _num(m["p_val_whole_tok_per_s"]),
        _num(m["p_val_core_tok_per_s"]),
        _num(m["p_infer_whole_tok_per_s"]),
        _num(m["p_infer_core_tok_per_s"]),
        _pct(m["mfu"]),
        f"{_pct(m['acc_infer'])}/{_pct(m['acc_val'])}",
        mem,
    ]


def markdown_table(rows: list[list[str]], header: list[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_report(result: dict) -> str:
    """Warnings, a few context lines, then the table (printed last, as users look there)."""
    m = result["metrics"]
    env = result.get("environment", {})
    infer = result["passes"]["infer"]
    out = []
    for w in result.get("warnings", []):
        out.append(f"WARNING: {w}")
    out.append(
        f"case {result['case']} on {env.get('device_name')} x{m.get('devices', 1)}, "
        f"{m['questions']} questions, {m['prompt_tokens']} prompt tokens, "
        f"torch {env.get('torch')}, transformers {env.get('transformers')}"
    )
    out.append(
        f"infer: compile/warm-up {infer['compile_time_s']:.1f} s, "
        f"core {infer['core_time_s']:.1f} s, computed tokens {infer['computed_tokens']} "
        f"({_num(infer['computed_tok_per_s'])} tok/s), mfu_computed {_pct(infer['mfu_computed'])}"
    )
    agree = result["accuracy"].get("agreement_val_infer")
    if agree:
        out.append(f"val/infer agreement: top token {_pct(agree['same_top_token'])}, "
                   f"letter ({result['accuracy']['rule']} rule) "
                   f"{_pct(agree['same_letter_' + result['accuracy']['rule']])}")
    out.append("")
    out.append(markdown_table([table_row(result)]))
    if result.get("random_weights"):
        out.append("(random weights: accuracy is meaningless; throughput, MFU and memory are real)")
    return "\n".join(out)
