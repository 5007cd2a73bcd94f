"""The measured ceiling for people: the device's table (`mmlubench ceiling`, FlagPerf base/-like),
the run report's notes (each pass against the spec peak and against the ceiling), and the HTML
report's section with its chart (where a pass's core time goes against the ceiling)."""

from __future__ import annotations

from mmlubench.display import num, pct
from mmlubench.report.htmlpage import esc, image, table
from mmlubench.results.ceiling_sections import Ceiling, Reading
from mmlubench.results.document import Result

DEVICE_COLUMNS = [
    "precision",
    "GEMM model shapes (TFLOP/s)",
    "GEMM square (TFLOP/s)",
    "LM head (TFLOP/s)",
    "attention (TFLOP/s)",
    "clock (MHz)",
    "power (W)",
]
READING_COLUMNS = [
    "kernel",
    "dtype",
    "shape",
    "reps",
    "median (ms)",
    "TFLOP/s",
    "GB/s",
    "clock (MHz)",
    "power (W)",
    "note",
]


def tflops(x: float | None) -> str:
    """FLOP/s as TFLOP/s to 4 significant digits (a GPU's 631.2, a CPU's 0.1234)."""
    return "-" if x is None else f"{x / 1e12:.4g}"


def gbs(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:,.0f}"


def _median(values: list[float | None]) -> float | None:
    import statistics

    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def device_rows(c: Ceiling) -> list[list[str]]:
    """One row per precision: the rates, and the clock and power medians over its kernels."""
    rows = []
    for name, p in c.precisions.items():
        rows.append(
            [
                name,
                tflops(p.gemm_model_flops_per_s),
                tflops(p.gemm_square_flops_per_s),
                tflops(p.gemm_lm_head_flops_per_s),
                tflops(p.attention_flops_per_s),
                num(_median([r.sm_clock_mhz_median for r in p.readings]), 0),
                num(_median([r.power_w_median for r in p.readings]), 0),
            ]
        )
    return rows


def reading_row(r: Reading) -> list[str]:
    ms = None if r.median_time_s is None else r.median_time_s * 1e3
    return [
        r.name,
        r.dtype,
        "x".join(str(s) for s in r.shape),
        str(r.reps),
        num(ms, 3),
        tflops(r.flops_per_s),
        gbs(r.bytes_per_s),
        num(r.sm_clock_mhz_median, 0),
        num(r.power_w_median, 0),
        r.error or "",
    ]


def summary_lines(c: Ceiling) -> list[str]:
    """What was measured where, in a few lines."""
    limit = f", power limit {num(c.power_limit_w, 0)} W" if c.power_limit_w is not None else ""
    top = (
        f", top compute clock {num(c.max_sm_clock_mhz, 0)} MHz"
        if c.max_sm_clock_mhz is not None
        else ""
    )
    out = [
        f"ceiling of {c.device_name} ({c.device}, vendor plug-in {c.vendor}){limit}{top}; "
        f"timer {c.timer}, {c.time_s:.1f} s in all",
        f"model shapes: {c.model_source} ({', '.join(f'{k} {v}' for k, v in c.model.items())})"
        f", GEMMs on {c.gemm_tokens} rows; square {c.square}^3",
    ]
    if c.pack is not None:
        p = c.pack
        out.append(
            f"attention pack: {p.pack_tokens} tokens, {p.questions} questions, "
            f"{p.attended_pairs:,} attended pairs ({p.source}); compile "
            f"{num(c.attention_compile_s)} s, not in any figure"
        )
    clock = c.copy.sm_clock_mhz_median if c.copy is not None else None
    out.append(
        f"memory bandwidth (copy, read + written): {gbs(c.bandwidth_bytes_per_s)} GB/s"
        + (f" at {num(clock, 0)} MHz" if clock is not None else "")
    )
    return out


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def format_ceiling(c: Ceiling) -> str:
    """The device's table (markdown), its context lines, then every kernel's reading."""
    details = [reading_row(r) for p in c.precisions.values() for r in p.readings]
    if c.copy is not None:
        details.append(reading_row(c.copy))
    return "\n".join(
        [
            *summary_lines(c),
            "",
            markdown_table(device_rows(c), DEVICE_COLUMNS),
            "",
            markdown_table(details, READING_COLUMNS),
        ]
    )


def pass_line(result: Result, name: str) -> str | None:
    """One pass against the spec peak and against the measured ceiling."""
    p = result.passes[name]
    at = p.at_ceiling
    if at is None:
        return None
    return (
        f"{name}: mfu_computed {pct(p.mfu_computed)} of the spec peak, "
        f"ceiling_fraction {pct(p.ceiling_fraction)} of the measured ceiling (at the "
        f"ceiling {at.time_s:.2f} s of core {p.core_time_s:.2f} s: GEMMs "
        f"{at.gemm_time_s:.2f} s, attention {at.attention_time_s:.2f} s)"
    )


def notes(result: Result) -> list[str]:
    """The report's lines on the ceiling (none when the run did not measure it)."""
    c = result.ceiling
    if c is None:
        return []
    rates = c.precisions.get(result.metrics.precision)
    out = []
    if rates is not None:
        out.append(
            f"measured ceiling ({rates.precision}, {c.device_name}, {c.time_s:.1f} s, "
            f"outside e2e): GEMMs at the model's shapes "
            f"{tflops(rates.gemm_model_flops_per_s)} TFLOP/s, square "
            f"{tflops(rates.gemm_square_flops_per_s)}, attention "
            f"{tflops(rates.attention_flops_per_s)}; copy {gbs(c.bandwidth_bytes_per_s)} "
            "GB/s"
        )
        failed = [r.name for r in rates.readings if r.error]
        if failed:
            out.append(
                f"ceiling: not measured here: {', '.join(failed)} (see ceiling.precisions"
                f".{rates.precision}.readings)"
            )
    return out + [line for n in result.pass_names() if (line := pass_line(result, n))]


def chart(result: Result) -> bytes | None:
    """Each pass's core time beside its time at the measured ceiling (GEMMs, attention); the
    gap is time the ceiling does not explain. None without a ceiling."""
    names = [n for n in result.pass_names() if result.passes[n].at_ceiling is not None]
    if not names:
        return None
    from mmlubench.report.charts import _png, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.9 * len(names)))
    for i, n in enumerate(names):
        p, at = result.passes[n], result.passes[n].at_ceiling
        ax.barh(
            i - 0.2,
            p.core_time_s,
            height=0.35,
            color="#999999",
            label="core time" if i == 0 else None,
        )
        ax.barh(
            i + 0.2,
            at.gemm_time_s,
            height=0.35,
            color="#4c72b0",
            label="GEMMs at the ceiling" if i == 0 else None,
        )
        ax.barh(
            i + 0.2,
            at.attention_time_s,
            left=at.gemm_time_s,
            height=0.35,
            color="#dd8452",
            label="attention at the ceiling" if i == 0 else None,
        )
        ax.annotate(
            f"{pct(p.ceiling_fraction)} of ceiling",
            (p.core_time_s, i - 0.2),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
            va="center",
        )
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()  # passes in run order, top down
    ax.set_xlabel("seconds")
    ax.set_title("Where the core time goes against the measured ceiling")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8)
    ax.set_xlim(
        0,
        1.2
        * max(max(result.passes[n].core_time_s, result.passes[n].at_ceiling.time_s) for n in names),
    )
    return _png(fig)


def html_section(result: Result) -> str:
    """The HTML report's ceiling section ('' when the run did not measure it)."""
    c = result.ceiling
    if c is None:
        return ""
    png = chart(result)
    details = [reading_row(r) for p in c.precisions.values() for r in p.readings]
    details += [reading_row(c.copy)] if c.copy is not None else []
    return (
        "<h2>Against the measured ceiling</h2>\n"
        + "".join(f'<p class="sub">{esc(line)}</p>\n' for line in notes(result))
        + (image(png, "core time against the measured ceiling") if png else "")
        + table(DEVICE_COLUMNS, device_rows(c), numeric_from=1)
        + "".join(f'<p class="sub">{esc(line)}</p>\n' for line in summary_lines(c))
        + "<details><summary>Every kernel</summary>\n"
        + table(READING_COLUMNS, details, numeric_from=3)
        + "</details>\n"
    )
