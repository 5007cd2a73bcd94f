"""Several runs side by side (`mmlubench compare RUN_DIR...`).

One row per run: the reference columns plus the device, with each throughput, MFU and e2e time
followed by its ratio to the first run. Before the table, a warning for every setting in which
the runs differ that makes their throughputs (or accuracies) incomparable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mmlubench import safefile
from mmlubench.display import commit_label, pct, run_label
from mmlubench.report.table import COLUMNS, LEGEND, markdown_table, table_row
from mmlubench.results import document
from mmlubench.results.document import Metrics, Result

COMPARE_COLUMNS = ["run", "device", *COLUMNS]
# Reference column -> its figure, for the columns that get a ratio to the first run.
RATIO_COLUMNS: dict[str, Callable[[Metrics], float | None]] = {
    "e2e_time (s)": lambda m: m.e2e_time_s,
    "p_val_whole (tok/s)": lambda m: m.p_val_whole_tok_per_s,
    "p_val_core (tok/s)": lambda m: m.p_val_core_tok_per_s,
    "p_infer_whole (tok/s)": lambda m: m.p_infer_whole_tok_per_s,
    "*p_infer_core (tok/s)": lambda m: m.p_infer_core_tok_per_s,
    "*MFU": lambda m: m.mfu,
}
RATIO_NOTE = (
    "(x.xx) = this run / the first run; higher is better for throughputs and MFU, "
    "lower is better for e2e_time"
)


def _flops_per_token(r: Result) -> object:
    value = r.metrics.flops_per_token
    return f"{r.config.flops_per_token} = {'null' if value is None else f'{value:.4g}'}"


def _model(r: Result) -> object:
    """Which model: architecture and shape, and config.json's hash where recorded."""
    m = r.model
    shape = (
        f"{m.architecture} {m.n_params} params, {m.num_hidden_layers} layers, vocab {m.vocab_size}"
    )
    return f"{shape}, config sha256 {m.config_sha256[:12]}" if m.config_sha256 else shape


# Settings that must agree for a fair comparison: (name, how to read it, what differs if not).
SETTINGS: list[tuple[str, Callable[[Result], object], str]] = [
    ("model", _model, "different models"),
    ("prompt_style", lambda r: r.config.prompt_style, "different prompts and token counts"),
    ("scoring", lambda r: r.config.scoring, "accuracies follow different answer rules"),
    ("flops_per_token", _flops_per_token, "MFU counts different FLOPs per token"),
    ("split", lambda r: r.config.split, "different questions"),
    ("subjects", lambda r: r.config.subjects, "different questions"),
    ("limit", lambda r: r.config.limit, "different questions"),
    ("questions", lambda r: r.metrics.questions, "different questions"),
    ("prompt_tokens", lambda r: r.metrics.prompt_tokens, "different prompt tokens"),
    ("few_shots", lambda r: r.config.few_shots, "different prompt lengths"),
    ("max_seq_len", lambda r: r.config.max_seq_len, "different truncation"),
    (
        "random_weights",
        lambda r: r.random_weights,
        "random-weight accuracy is meaningless, and e2e_time skips the checkpoint load",
    ),
    ("precision", lambda r: r.metrics.precision, "different arithmetic and memory traffic"),
    (
        "val pass",
        lambda r: "run" if r.metrics.p_val_whole_tok_per_s is not None else "not run",
        "e2e_time counts a val pass in one run and not in the other",
    ),
]


def load_runs(run_dirs: Sequence[str | Path]) -> tuple[list[str], list[Result]]:
    """Labels and result documents of the given run folders, in order."""
    return [run_label(d) for d in run_dirs], [document.load(d) for d in run_dirs]


def setting_warnings(results: Sequence[Result], labels: Sequence[str]) -> list[str]:
    """One message per setting whose value is not the same in every run."""
    out = []
    for name, read, why in SETTINGS:
        values = [read(r) for r in results]
        if any(v != values[0] for v in values[1:]):
            listed = ", ".join(f"{label}: {v}" for label, v in zip(labels, values, strict=True))
            out.append(f"runs differ in {name} ({listed}): {why}; not a like-for-like comparison")
    return out


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


def compare_rows(results: Sequence[Result], labels: Sequence[str]) -> list[list[str]]:
    """Rows of COMPARE_COLUMNS, ratio columns annotated with value / first run's value."""
    rows = []
    first = results[0].metrics
    for label, r in zip(labels, results, strict=True):
        cells = table_row(r)
        for col, figure in RATIO_COLUMNS.items():
            cells[COLUMNS.index(col)] += _ratio(figure(r.metrics), figure(first))
        device = r.environment.device_name or "-"
        devices = r.metrics.devices
        rows.append([label, f"{device} x{devices}" if devices != 1 else device, *cells])
    return rows


def energy_lines(results: Sequence[Result], labels: Sequence[str]) -> list[str]:
    """The infer pass's energy of each run that measured it, with ratios to the first run."""
    first = results[0].infer
    out = []
    for label, r in zip(labels, results, strict=True):
        m = r.infer
        if m.energy_j is not None:
            out.append(
                f"energy (infer) {label}: {m.energy_j:,.0f} J"
                f"{_ratio(m.energy_j, first.energy_j)}, {m.avg_power_w:.0f} W average, "
                f"{m.tokens_per_joule:,.1f} tok/J"
                f"{_ratio(m.tokens_per_joule, first.tokens_per_joule)}, "
                f"{m.joules_per_question:.2f} J/question"
            )
    return out


def format_compare(results: Sequence[Result], labels: Sequence[str]) -> str:
    """Warnings, then the side-by-side table, its legend and how to read its ratios."""
    out = [f"WARNING: {w}" for w in setting_warnings(results, labels)]
    out += [
        f"WARNING: {label}: RANDOM WEIGHTS, accuracy is meaningless"
        for label, r in zip(labels, results, strict=True)
        if r.random_weights
    ]
    if out:
        out.append("")
    out.append(markdown_table(compare_rows(results, labels), COMPARE_COLUMNS))
    out += [LEGEND, RATIO_NOTE, *energy_lines(results, labels), *category_lines(results, labels)]
    return "\n".join(out)


def category_lines(results: Sequence[Result], labels: Sequence[str]) -> list[str]:
    """Each run's infer accuracy by MMLU category (runs that kept per-subject counts)."""
    from mmlubench.report.accuracy_notes import categories

    out = []
    for label, r in zip(labels, results, strict=True):
        parts = [
            f"{name} {pct(acc)} ({n})" for name, acc, n, _ in categories(r.rule_accuracy("infer"))
        ]
        if parts:
            out.append(
                f"acc by MMLU category {label} ({r.accuracy.rule} rule): " + ", ".join(parts)
            )
    return out


def write_png(results: Sequence[Result], labels: Sequence[str], out: str | Path) -> Path:
    """The comparison chart as a PNG file."""
    from mmlubench.report import charts

    path = Path(out)
    safefile.make_parent(path)
    safefile.write_bytes(path, charts.comparison(results, labels))
    return path


def render_html(results: Sequence[Result], labels: Sequence[str]) -> str:
    """A self-contained page: warnings, the table, the chart and each run's environment."""
    from mmlubench.report import charts
    from mmlubench.report.htmlpage import esc, image, page, table

    warnings = setting_warnings(results, labels)
    body = [f"<h1>mmlubench comparison of {len(results)} runs</h1>\n"]
    random = [label for label, r in zip(labels, results, strict=True) if r.random_weights]
    if random:
        body.append(
            f'<div class="banner">RANDOM WEIGHTS in {esc(", ".join(random))}: '
            "their accuracy is meaningless.</div>\n"
        )
    if warnings:
        body.append(
            '<h2>Warnings</h2>\n<ul class="warnings">'
            + "".join(f"<li>{esc(w)}</li>" for w in warnings)
            + "</ul>\n"
        )
    body.append(
        "<h2>Results</h2>\n"
        + table(COMPARE_COLUMNS, compare_rows(results, labels), "metrics", numeric_from=4)
    )
    body.append(f'<p class="sub">{esc(RATIO_NOTE)}</p>\n')
    body.append(image(charts.comparison(results, labels), "comparison of runs"))
    body += [f"<p>{esc(line)}</p>\n" for line in category_lines(results, labels)]
    body.append("<h2>Runs</h2>\n" + _runs_table(results, labels))
    return page("mmlubench comparison", "".join(body), wide=True)


def _runs_table(results: Sequence[Result], labels: Sequence[str]) -> str:
    """The comparison page's table of what produced each run."""
    from mmlubench.report.htmlpage import table

    env_rows = []
    for label, r in zip(labels, results, strict=True):
        env = r.environment
        env_rows.append(
            [
                label,
                r.infer.engine.name,
                env.device_name,
                env.torch,
                env.transformers,
                env.cuda,
                commit_label(env.git.commit, env.git.dirty),
                env.date_utc,
                r.config.prompt_style,
                r.config.scoring,
                r.metrics.questions,
                r.random_weights,
            ]
        )
    return table(
        [
            "run",
            "engine",
            "device",
            "torch",
            "transformers",
            "cuda",
            "git",
            "date",
            "prompt_style",
            "scoring",
            "questions",
            "random weights",
        ],
        env_rows,
    )


def write_html(results: Sequence[Result], labels: Sequence[str], out: str | Path) -> Path:
    """Write the comparison page; returns the path."""
    path = Path(out)
    safefile.make_parent(path)
    safefile.write_text(path, render_html(results, labels))
    return path
