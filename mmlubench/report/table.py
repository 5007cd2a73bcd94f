"""The human-readable table of one run, in the reference's column order, with units and a
legend; `mmlubench report --format` also gives the document itself (json) or FlagPerf's lines.
"""

from __future__ import annotations

import json

from mmlubench.display import gib, num, pct
from mmlubench.results.document import Result

COLUMNS = [
    "tool",
    "precision",
    "e2e_time (s)",
    "p_val_whole (tok/s)",
    "p_val_core (tok/s)",
    "p_infer_whole (tok/s)",
    "*p_infer_core (tok/s)",
    "*MFU",
    "acc (infer/val)",
    "mem (GiB)",
]
LEGEND = "\n".join(
    [
        "* headline figures (starred as in FlagPerf's tables). tok/s = prompt tokens per second;",
        "  whole = over the pass's wall time, core = over the synchronized model calls only.",
        "  MFU = flops_per_token x tokens computed per core second / peak FLOP/s "
        "('-': peak unknown,",
        "  give --peak-flops). acc = micro accuracy, infer/val pass. "
        "mem = peak used / total, whole",
        "  device ('-': not measured on this device).",
    ]
)
RANDOM_NOTE = (
    "RANDOM WEIGHTS: accuracy is meaningless (chance is ~25% under the choices rule; "
    "the reference rule reads the top token of the whole vocabulary and is near 0%); "
    "throughput, MFU and memory are real."
)
FORMATS = ("table", "markdown", "json", "flagperf", "lm-eval")
# How the table names a precision whose name alone does not say what ran (engines/fp8.py).
PRECISION_LABELS = {"fp8": "fp8 (e4m3, row-wise)"}


def table_row(result: Result) -> list[str]:
    """The reference table's row (COLUMNS) for one run."""
    m = result.metrics
    mem = "-"
    if m.mem_peak_used_bytes is not None and m.mem_total_bytes:
        mem = f"{gib(m.mem_peak_used_bytes)}/{gib(m.mem_total_bytes)}"
    return [
        result.infer.engine.name,
        PRECISION_LABELS.get(m.precision, m.precision),
        num(m.e2e_time_s),
        num(m.p_val_whole_tok_per_s),
        num(m.p_val_core_tok_per_s),
        num(m.p_infer_whole_tok_per_s),
        num(m.p_infer_core_tok_per_s),
        pct(m.mfu),
        f"{pct(m.acc_infer)}/{pct(m.acc_val)}",
        mem,
    ]


def aligned_table(
    rows: list[list[str]], header: list[str] = COLUMNS, width: int | None = None
) -> str:
    """Columns padded to one width each, for a terminal; wider than `width` columns (the
    terminal's), each row is printed as one `column  value` line per column instead."""
    import shutil

    width = width or shutil.get_terminal_size((160, 24)).columns
    sizes = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    if sum(sizes) + 2 * (len(sizes) - 1) > width:
        pad = max(len(h) for h in header)
        return "\n\n".join(
            "\n".join(f"{h:<{pad}}  {v}" for h, v in zip(header, r, strict=True)) for r in rows
        )
    line = "  ".join("-" * n for n in sizes)
    fmt = [
        h.rjust(n) if i else h.ljust(n) for i, (h, n) in enumerate(zip(header, sizes, strict=True))
    ]
    body = [
        "  ".join(
            v.rjust(n) if i else v.ljust(n) for i, (v, n) in enumerate(zip(r, sizes, strict=True))
        )
        for r in rows
    ]
    return "\n".join(["  ".join(fmt), line, *body])


def markdown_table(rows: list[list[str]], header: list[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_lines(result: Result) -> list[str]:
    """With random weights: both answer rules' accuracy (the table shows one) and the note."""
    if not result.random_weights:
        return []
    names = list(reversed(result.pass_names()))  # infer first, as in the table
    rules = [
        f"{rule} {'/'.join(pct(result.rule_accuracy(n, rule).micro) for n in names)}"
        + (" (the table's)" if rule == result.accuracy.rule else "")
        for rule in ("reference", "choices", "token")
        if rule in result.infer.accuracy
    ]
    return [f"accuracy ({'/'.join(names)}) by answer rule: {', '.join(rules)}", RANDOM_NOTE]


def context_lines(result: Result) -> list[str]:
    """What the run was, the infer pass's compile and computed work, val/infer agreement."""
    m, env, infer = result.metrics, result.environment, result.infer
    out = [
        f"case {result.case} on {env.device_name} x{m.devices}, {m.questions} questions, "
        f"{m.prompt_tokens} prompt tokens, torch {env.torch}, transformers {env.transformers}",
        f"infer: compile/warm-up {infer.compile_time_s:.1f} s, core {infer.core_time_s:.1f} s, "
        f"computed tokens {infer.computed_tokens} ({num(infer.computed_tok_per_s)} tok/s), "
        f"mfu_computed {pct(infer.mfu_computed)}",
    ]
    agreement = agreement_line(result)
    return out + ([agreement] if agreement else [])


def agreement_line(result: Result) -> str | None:
    """How often the val and infer passes agree; None when only one pass ran."""
    agree, rule = result.accuracy.agreement_val_infer, result.accuracy.rule
    if agree is None:
        return None
    if result.metrics.precision == "fp8":  # fp8's accuracy cost: both rules, named as such
        letters = ", ".join(
            f"{r} rule {pct(agree.same_letter(r))}" for r in ("reference", "choices")
        )
        rel, whole = agree.letter_logits_rel_l2_mean, agree.logits_rel_l2_mean
        return (
            f"val (fp16) / infer (fp8) agreement, the accuracy cost of fp8: top token "
            f"{pct(agree.same_top_token)}, letter: {letters}"
            + (f"; answer-letter logits rel L2 {rel:.2e} (mean)" if rel is not None else "")
            + (
                f"; last-position logits rel L2 {whole:.2e} (mean of "
                f"{agree.logits_sample_questions} questions)"
                if whole is not None
                else ""
            )
        )
    return (
        f"val/infer agreement: top token {pct(agree.same_top_token)}, "
        f"letter ({rule} rule) {pct(agree.same_letter(rule))}"
    )


def energy_lines(result: Result) -> list[str]:
    """One note per pass with energy figures (the vendor plug-in's counter); none without."""
    out = []
    for name in result.pass_names():
        p = result.passes[name]
        if p.energy_j is not None:
            limit = f" (limit {p.power_limit_w:,.0f} W)" if p.power_limit_w is not None else ""
            clock = (
                f", compute clock {p.sm_clock_mhz_median:,.0f} MHz median"
                if p.sm_clock_mhz_median is not None
                else ""
            )
            out.append(
                f"{name} energy: {p.energy_j:,.0f} J, {num(p.avg_power_w)} W average"
                f"{limit}{clock}, {num(p.tokens_per_joule)} prompt tokens/J, "
                f"{num(p.joules_per_question, 2)} J/question ({p.energy_source})"
            )
    return out


def format_report(result: Result, aligned: bool = False) -> str:
    """Warnings, a few context lines, then the table (printed last, as users look there) and
    its legend. The random-weights warning is said once, under the table. `aligned`: the
    table in padded columns (a terminal), else markdown."""
    out = [f"WARNING: {w}" for w in result.warnings if not w.startswith("RANDOM WEIGHTS")]
    out += context_lines(result)
    out += energy_lines(result)
    from mmlubench.report.ceiling import notes  # each pass against the measured ceiling

    out += notes(result)
    from mmlubench.config.cases import vs_reference  # the case's FlagPerf row, if it has one

    out += [line for line in [vs_reference(result)] if line]
    from mmlubench.report.accuracy_notes import accuracy_notes

    out += accuracy_notes(result)
    table = (aligned_table if aligned else markdown_table)([table_row(result)])
    out += ["", table, LEGEND, *accuracy_lines(result)]
    return "\n".join(out)


def render(result: Result, fmt: str = "table") -> str:
    """The report in one of FORMATS: the table (aligned on a terminal, else markdown; or
    markdown), result.json itself (json), or the lines FlagPerf logs at the end of a case
    (flagperf); lm-eval's layout needs the run folder (lmeval.from_run)."""
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
    if fmt == "flagperf":
        from mmlubench.report.flagperf import format_flagperf

        return format_flagperf(result)
    return format_report(result, aligned=fmt == "table" and _stdout_is_terminal())


def _stdout_is_terminal() -> bool:
    import sys

    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
