"""One run as a self-contained HTML page (`mmlubench report RUN_DIR --html`).

The page holds the reference-style table, the pass details, per-subject accuracy, throughput
over the run, memory over time, environment, config and warnings. Charts are PNGs embedded as
base64; the CSS is inline; nothing is fetched when the page is opened.
"""

from __future__ import annotations

from pathlib import Path

from mmlubench import charts
from mmlubench.htmlpage import esc, image, kv_table, page, table
from mmlubench.report import COLUMNS, GIB, table_row

RANDOM_BANNER = ("RANDOM WEIGHTS: this run used a model with random weights. Accuracy is "
                 "meaningless; throughput, MFU and memory are real.")

PASS_FIELDS = [
    ("engine", "engine"), ("questions", "questions"), ("batches", "batches"),
    ("prompt_tokens", "prompt tokens"), ("whole_time_s", "whole time (s)"),
    ("core_time_s", "core time (s)"), ("compile_time_s", "compile/warm-up (s)"),
    ("whole_tok_per_s", "whole (tok/s)"), ("core_tok_per_s", "core (tok/s)"),
    ("mfu", "MFU"), ("computed_tokens", "computed tokens"), ("padded_tokens", "padded tokens"),
    ("computed_tok_per_s", "computed (tok/s)"), ("mfu_computed", "MFU of computed work"),
    ("torch_peak_allocated_bytes", "torch peak allocated"),
]


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal; None shows as '-'."""
    return "-" if value is None else f"{100 * value:.1f}%"


def fmt(key: str, value: object) -> str:
    """A value for display, chosen by the unit its key carries."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key == "mfu" or key.startswith(("mfu_", "acc_")):
        return f"{100 * value:.2f}%"
    if key.endswith("_bytes"):
        return f"{value / GIB:.2f} GiB ({int(value)} B)"
    if key.endswith("_s"):
        return f"{value:,.3f}"
    if isinstance(value, float) and (abs(value) >= 1e7 or 0 < abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def _header(result: dict, run_name: str) -> str:
    env = result.get("environment", {})
    m = result["metrics"]
    git = env.get("git") or {}
    commit = (git.get("commit") or "-")[:12] + (" (dirty)" if git.get("dirty") else "")
    return (
        f"<h1>mmlubench report: {esc(result['case'])}</h1>\n"
        f'<p class="sub">run <code>{esc(run_name)}</code> &middot; '
        f"{esc(env.get('device_name'))} x{esc(m.get('devices', 1))} &middot; "
        f"{esc(env.get('date_utc'))} &middot; git {esc(commit)}</p>\n"
    )


def _warnings(result: dict) -> str:
    out = ""
    if result.get("random_weights") or result.get("accuracy_meaningful") is False:
        out += f'<div class="banner" id="random-weights">{esc(RANDOM_BANNER)}</div>\n'
    warnings = result.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        out += f'<h2>Warnings</h2>\n<ul class="warnings">{items}</ul>\n'
    return out


def _result_table(result: dict) -> str:
    m = result["metrics"]
    infer = result["passes"]["infer"]
    lines = [
        f"{m['questions']} questions, {m['prompt_tokens']} prompt tokens "
        f"({m.get('truncated_prompts', 0)} truncated), scoring rule "
        f"<code>{esc(result['accuracy']['rule'])}</code>",
        f"infer: compile/warm-up {infer['compile_time_s']:.1f} s, core "
        f"{infer['core_time_s']:.1f} s, computed tokens {infer['computed_tokens']}",
    ]
    agree = result["accuracy"].get("agreement_val_infer")
    if agree:
        rule = result["accuracy"]["rule"]
        lines.append(f"val/infer agreement: top token {pct(agree['same_top_token'])}, "
                     f"letter ({esc(rule)} rule) "
                     f"{pct(agree.get('same_letter_' + rule))}")
    return (
        "<h2>Result (reference columns)</h2>\n"
        + table(COLUMNS, [table_row(result)], "metrics", numeric_from=2)
        + "".join(f'<p class="sub">{line}</p>\n' for line in lines)
        + "<p class=\"sub\">Throughputs are prompt tokens per second; e2e_time in seconds; "
        "mem is peak used / total device memory in GiB (NVML).</p>\n"
    )


def _passes(result: dict) -> str:
    names = [n for n in ("val", "infer") if n in result["passes"]]
    rows = []
    for key, label in PASS_FIELDS:
        row = [label]
        for n in names:
            value = result["passes"][n].get(key)
            if key == "engine":
                opts = ", ".join(f"{k}={v}" for k, v in (value.get("options") or {}).items())
                row.append(f"{value['name']} ({opts})" if opts else value["name"])
            else:
                row.append(fmt(key, value))
        rows.append(row)
    return "<h2>Passes</h2>\n" + table(["", *names], rows)


def _metrics(result: dict) -> str:
    rows = [[k, fmt(k, v)] for k, v in result["metrics"].items()]
    rows += [[f"timings.{k}", fmt(k, v)] for k, v in (result.get("timings") or {}).items()]
    return ("<details><summary>All metrics (result.json <code>metrics</code>)</summary>\n"
            + table(["key", "value"], rows, numeric_from=1) + "</details>\n")


def _subjects(result: dict) -> str:
    rule = result["accuracy"]["rule"]
    names = [n for n in ("val", "infer") if n in result["passes"]]
    acc = {n: result["passes"][n]["accuracy"][rule] for n in names}
    subjects = sorted({s for a in acc.values() for s in a["per_subject"]})
    rows = [[s] + [pct(acc[n]["per_subject"].get(s)) for n in names] for s in subjects]
    rows.append(["micro average"] + [pct(acc[n]["micro"]) for n in names])
    rows.append(["macro average"] + [pct(acc[n]["macro"]) for n in names])
    note = ""
    if result.get("random_weights"):
        note = f'<p class="note">{esc(RANDOM_BANNER)}</p>\n'
    return (
        f"<h2>Accuracy per subject ({esc(rule)} rule)</h2>\n{note}"
        + image(charts.subject_accuracy(result), f"accuracy per subject, {rule} rule")
        + "<details><summary>Table</summary>\n"
        + table(["subject", *names], rows, numeric_from=1)
        + "</details>\n"
    )


def _throughput(result: dict) -> str:
    return (
        "<h2>Throughput over the run</h2>\n"
        '<p class="sub">Per batch: prompt tokens over the synchronized engine-call time. '
        "The running whole-pass rate counts planning, compile/warm-up, copies and scoring.</p>\n"
        + image(charts.throughput(result), "throughput over the run")
    )


def _memory(result: dict) -> str:
    mem = result.get("memory") or {}
    png = charts.memory(result)
    if png is None:
        return (
            "<h2>Device memory over time</h2>\n"
            '<p class="note" id="no-memory">No device memory samples in this run '
            f"(memory source: {esc(mem.get('source'))}; device "
            f"{esc(result.get('environment', {}).get('device'))}). Memory is sampled through "
            "NVML on CUDA devices only: CPU runs, or runs where NVML was unavailable, have "
            "none, and the table's mem column shows '-'.</p>\n"
        )
    extra = {k: fmt(k, v) for k, v in mem.items() if k != "samples"}
    return ("<h2>Device memory over time</h2>\n" + image(png, "device memory over time")
            + kv_table(extra))


def render(result: dict, run_name: str = "") -> str:
    """The whole report page for one result document."""
    body = [
        _header(result, run_name),
        _warnings(result),
        _result_table(result),
        _passes(result),
        _metrics(result),
        _subjects(result),
        _throughput(result),
        _memory(result),
        "<h2>Environment</h2>\n" + kv_table(result.get("environment") or {}),
        "<h2>Model</h2>\n" + kv_table(result.get("model") or {}),
        "<h2>Config</h2>\n" + kv_table(result.get("config") or {}),
    ]
    return page(f"mmlubench {result['case']} {run_name}".strip(), "".join(body))


def write(result: dict, out: str | Path, run_name: str = "") -> Path:
    """Render the page and write it to `out` (parents created); returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, run_name), encoding="utf-8")
    return path
