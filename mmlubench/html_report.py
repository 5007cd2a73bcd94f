"""One run as a self-contained HTML page (`mmlubench report RUN_DIR --html`).

The page holds the reference-style table, the pass details, per-subject accuracy, throughput
over the run, memory over time, environment, config and warnings. Charts are PNGs embedded as
base64; the CSS is inline; nothing is fetched when the page is opened.
"""

from __future__ import annotations

from pathlib import Path

from mmlubench import charts, safefile
from mmlubench.display import GIB, commit_label, pct
from mmlubench.document import Result
from mmlubench.htmlpage import esc, image, kv_table, page, table
from mmlubench.report import COLUMNS, LEGEND, accuracy_lines, agreement_line, table_row

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


def _header(result: Result, run_name: str) -> str:
    env = result.environment
    return (
        f"<h1>mmlubench report: {esc(result.case)}</h1>\n"
        f'<p class="sub">run <code>{esc(run_name)}</code> &middot; '
        f"{esc(env.device_name)} x{esc(result.metrics.devices)} &middot; "
        f"{esc(env.date_utc)} &middot; git {esc(commit_label(env.git.commit, env.git.dirty))}"
        "</p>\n"
    )


def _warnings(result: Result) -> str:
    out = ""
    if result.random_weights or not result.accuracy_meaningful:
        out += f'<div class="banner" id="random-weights">{esc(RANDOM_BANNER)}</div>\n'
    warnings = result.warnings
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        out += f'<h2>Warnings</h2>\n<ul class="warnings">{items}</ul>\n'
    return out


def _result_table(result: Result) -> str:
    m, infer = result.metrics, result.infer
    lines = [
        f"{m.questions} questions, {m.prompt_tokens} prompt tokens "
        f"({m.truncated_prompts} truncated), scoring rule "
        f"<code>{esc(result.accuracy.rule)}</code>",
        f"infer: compile/warm-up {infer.compile_time_s:.1f} s, core "
        f"{infer.core_time_s:.1f} s, computed tokens {infer.computed_tokens}",
    ]
    lines += [esc(line) for line in [agreement_line(result), *accuracy_lines(result)[:1]]
              if line]  # [:1]: both rules' accuracy; the random-weights banner is above
    return (
        "<h2>Result (reference columns)</h2>\n"
        + table(COLUMNS, [table_row(result)], "metrics", numeric_from=2)
        + f'<p class="sub">{esc(LEGEND)}</p>\n'
        + "".join(f'<p class="sub">{line}</p>\n' for line in lines)
    )


def _passes(result: Result) -> str:
    names = result.pass_names()
    rows = []
    for key, label in PASS_FIELDS:
        row = [label]
        for n in names:
            if key == "engine":
                engine = result.passes[n].engine
                opts = ", ".join(f"{k}={v}" for k, v in engine.options.items())
                row.append(f"{engine.name} ({opts})" if opts else engine.name)
            else:
                row.append(fmt(key, getattr(result.passes[n], key)))
        rows.append(row)
    return "<h2>Passes</h2>\n" + table(["", *names], rows)


def _metrics(result: Result) -> str:
    rows = [[k, fmt(k, v)] for k, v in result.metrics.to_json().items()]
    rows += [[f"timings.{k}", fmt(k, v)] for k, v in result.timings.items()]
    return ("<details><summary>All metrics (result.json <code>metrics</code>)</summary>\n"
            + table(["key", "value"], rows, numeric_from=1) + "</details>\n")


def _subjects(result: Result) -> str:
    rule = result.accuracy.rule
    names = result.pass_names()
    acc = {n: result.rule_accuracy(n) for n in names}
    subjects = sorted({s for a in acc.values() for s in a.per_subject})
    rows = [[s] + [pct(acc[n].per_subject.get(s)) for n in names] for s in subjects]
    rows.append(["micro average"] + [pct(acc[n].micro) for n in names])
    rows.append(["macro average"] + [pct(acc[n].macro) for n in names])
    note = ""
    if result.random_weights:
        note = f'<p class="note">{esc(RANDOM_BANNER)}</p>\n'
    return (
        f"<h2>Accuracy per subject ({esc(rule)} rule)</h2>\n{note}"
        + image(charts.subject_accuracy(result), f"accuracy per subject, {rule} rule")
        + "<details><summary>Table</summary>\n"
        + table(["subject", *names], rows, numeric_from=1)
        + "</details>\n"
    )


def _throughput(result: Result) -> str:
    return (
        "<h2>Throughput over the run</h2>\n"
        '<p class="sub">Per batch: prompt tokens over the synchronized engine-call time. '
        "The running whole-pass rate counts planning, compile/warm-up, copies and scoring.</p>\n"
        + image(charts.throughput(result), "throughput over the run")
    )


def _memory(result: Result) -> str:
    mem = result.memory
    png = charts.memory(result)
    if png is None:
        return (
            "<h2>Device memory over time</h2>\n"
            '<p class="note" id="no-memory">No device memory samples in this run '
            f"(memory source: {esc(mem.source)}; device "
            f"{esc(result.environment.device)}). Memory is sampled by the vendor "
            "plug-in (NVML on NVIDIA, the backend's mem_get_info elsewhere): CPU runs have "
            "none, and the table's mem column shows '-'.</p>\n"
        )
    extra = {k: fmt(k, v) for k, v in mem.to_json().items() if k != "samples"}
    return ("<h2>Device memory over time</h2>\n" + image(png, "device memory over time")
            + kv_table(extra))


def _power(result: Result) -> str:
    """Power over time and each pass's energy figures (null where nothing measured them)."""
    png = charts.power(result)
    energy = {f"{name}.{k}": fmt(k, getattr(result.passes[name], k))
              for name in result.pass_names()
              for k in ("energy_j", "avg_power_w", "tokens_per_joule", "joules_per_question",
                        "energy_source")}
    if png is None:
        return ("<h2>Power and energy</h2>\n"
                '<p class="note" id="no-power">No power samples in this run (vendor plug-in '
                f"{esc(result.memory.vendor or '-')} reads none on device "
                f"{esc(result.environment.device)}).</p>\n" + kv_table(energy))
    return ("<h2>Power and energy</h2>\n" + image(png, "device power over time")
            + kv_table(energy))


def render(result: Result, run_name: str = "") -> str:
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
        _power(result),
        "<h2>Environment</h2>\n" + kv_table(result.environment.to_json()),
        "<h2>Model</h2>\n" + kv_table(result.model.to_json()),
        "<h2>Config</h2>\n" + kv_table(result.config.to_json()),
    ]
    return page(f"mmlubench {result.case} {run_name}".strip(), "".join(body))


def write(result: Result, out: str | Path, run_name: str = "") -> Path:
    """Render the page and write it to `out` (parents created); returns the path."""
    path = Path(out)
    safefile.make_parent(path)
    safefile.write_text(path, render(result, run_name))
    return path
