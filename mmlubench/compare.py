"""Several runs side by side (`mmlubench compare RUN_DIR...`).

One row per run: the reference columns plus the device, with each throughput, MFU and e2e time
followed by its ratio to the first run. Before the table, a warning for every setting in which
the runs differ that makes their throughputs (or accuracies) incomparable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mmlubench.report import COLUMNS, load_result, markdown_table, table_row

COMPARE_COLUMNS = ["run", "device", *COLUMNS]
# Reference column -> metrics key, for the columns that get a ratio to the first run.
RATIO_COLUMNS = {
    "e2e_time": "e2e_time_s",
    "p_val_whole": "p_val_whole_tok_per_s",
    "p_val_core": "p_val_core_tok_per_s",
    "p_infer_whole": "p_infer_whole_tok_per_s",
    "*p_infer_core": "p_infer_core_tok_per_s",
    "*MFU": "mfu",
}
RATIO_NOTE = ("(x.xx) = this run / the first run; higher is better for throughputs and MFU, "
              "lower is better for e2e_time")


def _config(key: str) -> Callable[[dict], object]:
    return lambda r: (r.get("config") or {}).get(key)


def _metric(key: str) -> Callable[[dict], object]:
    return lambda r: r["metrics"].get(key)


def _flops_per_token(r: dict) -> object:
    expr = (r.get("config") or {}).get("flops_per_token")
    value = r["metrics"].get("flops_per_token")
    return f"{expr} = {value:.4g}" if value is not None else f"{expr} = null"


# Settings that must agree for a fair comparison: (name, how to read it, what differs if not).
SETTINGS: list[tuple[str, Callable[[dict], object], str]] = [
    ("prompt_style", _config("prompt_style"), "different prompts and token counts"),
    ("scoring", _config("scoring"), "accuracies follow different answer rules"),
    ("flops_per_token", _flops_per_token, "MFU counts different FLOPs per token"),
    ("split", _config("split"), "different questions"),
    ("subjects", _config("subjects"), "different questions"),
    ("limit", _config("limit"), "different questions"),
    ("questions", _metric("questions"), "different questions"),
    ("prompt_tokens", _metric("prompt_tokens"), "different prompt tokens"),
    ("few_shots", _config("few_shots"), "different prompt lengths"),
    ("max_seq_len", _config("max_seq_len"), "different truncation"),
    ("random_weights", lambda r: bool(r.get("random_weights")),
     "random-weight accuracy is meaningless, and e2e_time skips the checkpoint load"),
    ("precision", _metric("precision"), "different arithmetic and memory traffic"),
]


def run_label(run_dir: str | Path) -> str:
    """The run folder's name (the folder above, when given a result.json)."""
    path = Path(run_dir)
    return (path.parent if path.suffix == ".json" else path).resolve().name


def load_runs(run_dirs: Sequence[str | Path]) -> tuple[list[str], list[dict]]:
    """Labels and result documents of the given run folders, in order."""
    return [run_label(d) for d in run_dirs], [load_result(d) for d in run_dirs]


def setting_warnings(results: Sequence[dict], labels: Sequence[str]) -> list[str]:
    """One message per setting whose value is not the same in every run."""
    out = []
    for name, read, why in SETTINGS:
        values = [read(r) for r in results]
        if any(v != values[0] for v in values[1:]):
            listed = ", ".join(f"{label}: {v}" for label, v in zip(labels, values, strict=True))
            out.append(f"runs differ in {name} ({listed}): {why}; not a like-for-like "
                       "comparison")
    return out


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


def compare_rows(results: Sequence[dict], labels: Sequence[str]) -> list[list[str]]:
    """Rows of COMPARE_COLUMNS, ratio columns annotated with value / first run's value."""
    rows = []
    first = results[0]["metrics"]
    for label, r in zip(labels, results, strict=True):
        cells = table_row(r)
        for col, key in RATIO_COLUMNS.items():
            i = COLUMNS.index(col)
            cells[i] += _ratio(r["metrics"].get(key), first.get(key))
        device = (r.get("environment") or {}).get("device_name") or "-"
        devices = r["metrics"].get("devices", 1)
        rows.append([label, f"{device} x{devices}" if devices != 1 else device, *cells])
    return rows


def format_compare(results: Sequence[dict], labels: Sequence[str]) -> str:
    """Warnings, then the side-by-side table and how to read its ratios."""
    out = [f"WARNING: {w}" for w in setting_warnings(results, labels)]
    out += [f"WARNING: {label}: RANDOM WEIGHTS, accuracy is meaningless"
            for label, r in zip(labels, results, strict=True) if r.get("random_weights")]
    if out:
        out.append("")
    out.append(markdown_table(compare_rows(results, labels), COMPARE_COLUMNS))
    out.append(RATIO_NOTE)
    return "\n".join(out)


def write_png(results: Sequence[dict], labels: Sequence[str], out: str | Path) -> Path:
    """The comparison chart as a PNG file."""
    from mmlubench import charts

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(charts.comparison(results, labels))
    return path


def render_html(results: Sequence[dict], labels: Sequence[str]) -> str:
    """A self-contained page: warnings, the table, the chart and each run's environment."""
    from mmlubench import charts
    from mmlubench.htmlpage import esc, image, page, table

    warnings = setting_warnings(results, labels)
    body = [f"<h1>mmlubench comparison of {len(results)} runs</h1>\n"]
    random = [label for label, r in zip(labels, results, strict=True) if r.get("random_weights")]
    if random:
        body.append(f'<div class="banner">RANDOM WEIGHTS in {esc(", ".join(random))}: '
                    "their accuracy is meaningless.</div>\n")
    if warnings:
        body.append('<h2>Warnings</h2>\n<ul class="warnings">'
                    + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>\n")
    body.append("<h2>Results</h2>\n" + table(COMPARE_COLUMNS, compare_rows(results, labels),
                                              "metrics", numeric_from=4))
    body.append(f'<p class="sub">{esc(RATIO_NOTE)}</p>\n')
    body.append(image(charts.comparison(results, labels), "comparison of runs"))
    env_rows = []
    for label, r in zip(labels, results, strict=True):
        env = r.get("environment") or {}
        git = env.get("git") or {}
        commit = (git.get("commit") or "-")[:12] + (" (dirty)" if git.get("dirty") else "")
        cfg = r.get("config") or {}
        env_rows.append([label, r["passes"]["infer"]["engine"]["name"], env.get("device_name"),
                         env.get("torch"), env.get("transformers"), env.get("cuda"), commit,
                         env.get("date_utc"), cfg.get("prompt_style"), cfg.get("scoring"),
                         r["metrics"].get("questions"), bool(r.get("random_weights"))])
    body.append("<h2>Runs</h2>\n" + table(
        ["run", "engine", "device", "torch", "transformers", "cuda", "git", "date",
         "prompt_style", "scoring", "questions", "random weights"], env_rows))
    return page("mmlubench comparison", "".join(body))


def write_html(results: Sequence[dict], labels: Sequence[str], out: str | Path) -> Path:
    """Write the comparison page; returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(results, labels), encoding="utf-8")
    return path
