"""Charts of a run (per-subject accuracy, throughput over time, memory over time) and of a
comparison of runs, drawn with matplotlib's Agg backend and returned as PNG bytes.

matplotlib is imported inside the functions: `mmlubench run` never pays for it. Every function
takes result documents (`document.Result`) and nothing else, so a chart can be redrawn from any
finished run folder.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from mmlubench.display import GIB
from mmlubench.results.document import Pass, Result

PASS_COLORS = {"val": "#4c72b0", "infer": "#dd8452"}


def _pyplot() -> Any:
    """pyplot on the Agg backend (no display, no GUI toolkit); imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["text.parse_math"] = False  # labels are names ("$^$"), never maths
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG as a `data:` URI, so an HTML page can embed it without any fetch."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def subject_accuracy(result: Result) -> bytes:
    """Horizontal bars: accuracy per subject, val beside infer, for the run's scoring rule."""
    plt = _pyplot()
    rule = result.accuracy.rule
    passes = result.pass_names()
    per_subject = {name: result.rule_accuracy(name).per_subject for name in passes}
    subjects = sorted({s for table in per_subject.values() for s in table})
    height = 0.4 / max(len(passes), 1) * 2
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * max(len(subjects), 1) * len(passes)))
    for k, name in enumerate(passes):
        values = [100 * per_subject[name].get(s, float("nan")) for s in subjects]
        ys = [i + (k - (len(passes) - 1) / 2) * height for i in range(len(subjects))]
        micro = 100 * result.rule_accuracy(name).micro
        ax.barh(
            ys,
            values,
            height=height,
            color=PASS_COLORS.get(name),
            label=f"{name} ({result.passes[name].engine.name}), micro {micro:.1f}%",
        )
        ax.axvline(micro, color=PASS_COLORS.get(name), linestyle="--", linewidth=1)
    ax.axvline(25, color="grey", linestyle=":", linewidth=1, label="chance (25%)")
    ax.set_yticks(range(len(subjects)), [s.replace("_", " ") for s in subjects], fontsize=8)
    ax.invert_yaxis()  # alphabetical from the top
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"accuracy, % ({rule} scoring rule)")
    title = "Accuracy per subject"
    if result.random_weights:
        title += " (RANDOM WEIGHTS: meaningless)"
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _smoothed(tokens: Sequence[float], seconds: Sequence[float], window: int) -> list[float]:
    """Throughput over a sliding window of batches: summed tokens over summed core seconds."""
    out = []
    tok_sum = sec_sum = 0.0
    for i, (tok, sec) in enumerate(zip(tokens, seconds, strict=True)):
        tok_sum += tok
        sec_sum += sec
        if i >= window:
            tok_sum -= tokens[i - window]
            sec_sum -= seconds[i - window]
        out.append(tok_sum / sec_sum if sec_sum > 0 else float("nan"))
    return out


def throughput(result: Result) -> bytes:
    """One panel per pass: core tok/s per batch (dots, and smoothed), and the running whole-pass
    tok/s (tokens so far over wall time since the pass began), against time in the pass."""
    plt = _pyplot()
    passes = result.pass_names()
    fig, axes = plt.subplots(len(passes), 1, figsize=(9, 3.2 * len(passes)), squeeze=False)
    for ax, name in zip(axes[:, 0], passes, strict=True):
        p = result.passes[name]
        if not p.timeline:
            ax.text(
                0.5, 0.5, "no timeline recorded", ha="center", va="center", transform=ax.transAxes
            )
        else:
            _throughput_series(ax, p, PASS_COLORS.get(name))
        ax.set_title(
            f"{name} pass ({p.engine.name}): core {p.core_tok_per_s or 0:,.0f}"
            f" tok/s, whole {p.whole_tok_per_s or 0:,.0f} tok/s"
        )
        ax.set_xlabel("seconds since the pass began")
        ax.set_ylabel("prompt tokens / s")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _throughput_series(ax: Any, p: Pass, color: str | None) -> None:
    """A pass's panel of `throughput`: its batches' core tok/s and the running whole tok/s."""
    timeline = p.timeline
    tokens = [row[1] for row in timeline]
    core = [row[2] for row in timeline]
    t = [row[3] for row in timeline]
    per_batch = [
        tok / sec if sec > 0 else float("nan") for tok, sec in zip(tokens, core, strict=True)
    ]
    window = max(1, len(timeline) // 50)
    if window == 1:  # few batches: each one is a point
        ax.plot(t, per_batch, color=color, marker="o", markersize=3, label="core, per batch")
    else:
        ax.scatter(t, per_batch, s=6, alpha=0.3, color=color, label="core, per batch")
        ax.plot(
            t,
            _smoothed(tokens, core, window),
            color=color,
            label=f"core, over {window} batches",
        )
    running, total = [], 0.0
    for tok, ti in zip(tokens, t, strict=True):
        total += tok
        running.append(total / ti if ti > 0 else float("nan"))
    ax.plot(
        t,
        running,
        color="black",
        linestyle="--",
        linewidth=1,
        label="whole, running (tokens so far / time so far)",
    )
    compile_s = p.compile_time_s
    first = t[0] - core[0]
    if first > 0.3 * t[-1]:
        # A long warm-up would squeeze the batches to the right: start after it.
        ax.set_xlim(first - 0.02 * (t[-1] - first), t[-1] + 0.02 * (t[-1] - first))
        ax.plot([], [], " ", label=f"x axis starts after compile/warm-up ({compile_s:.1f} s)")
    elif compile_s > 0.01 * t[-1]:
        ax.axvspan(
            0,
            compile_s,
            color="grey",
            alpha=0.15,
            label=f"compile/warm-up {compile_s:.1f} s",
        )
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)


def _run_series_png(fig: Any, ax: Any, unit: str, title: str) -> bytes:
    """Finish a chart of device samples against run time (memory, power) as a PNG."""
    ax.set_xlabel("seconds since the run began")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def memory(result: Result) -> bytes | None:
    """Device memory used (NVML) against time since the run began; None without samples."""
    mem = result.memory
    samples = mem.samples
    if not samples:
        return None
    plt = _pyplot()
    t = [s[0] for s in samples]
    used = [s[1] / GIB for s in samples]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(t, used, marker="o", markersize=3, label="used (whole device, NVML)")
    peak = max(used)
    total = (mem.total_bytes or 0) / GIB
    if total and total <= 2.5 * peak:
        ax.axhline(total, color="red", linestyle="--", linewidth=1, label=f"total {total:.1f} GiB")
    elif total:  # a line at the total would flatten the curve: name it instead
        ax.plot([], [], " ", label=f"total {total:.1f} GiB (off the scale)")
    ax.annotate(
        f"peak {peak:.1f} GiB",
        (t[used.index(peak)], peak),
        textcoords="offset points",
        xytext=(5, 5),
        fontsize=8,
    )
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.15 * peak))
    return _run_series_png(fig, ax, "GiB", f"Device memory used ({len(samples)} samples)")


def power(result: Result) -> bytes | None:
    """Device power (the vendor plug-in's samples) against time since the run began, with each
    pass's average from its energy counter; None without samples."""
    samples = result.memory.power_samples
    if not samples:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(
        [s[0] for s in samples],
        [s[1] for s in samples],
        marker="o",
        markersize=3,
        label=f"power ({result.memory.vendor or 'device'})",
    )
    for name in result.pass_names():
        p = result.passes[name]
        if p.avg_power_w is not None:
            ax.axhline(
                p.avg_power_w,
                linestyle="--",
                linewidth=1,
                color="C1" if name == "infer" else "C2",
                label=f"{name}: {p.avg_power_w:.0f} W average, {p.energy_j:,.0f} J",
            )
    ax.set_ylim(0, 1.15 * max(s[1] for s in samples))
    return _run_series_png(fig, ax, "W", f"Device power ({len(samples)} samples)")


def comparison(results: Sequence[Result], labels: Sequence[str]) -> bytes:
    """Several runs side by side: the four throughputs, e2e time and accuracy."""
    plt = _pyplot()
    keys = [
        ("p_val_whole_tok_per_s", "val whole"),
        ("p_val_core_tok_per_s", "val core"),
        ("p_infer_whole_tok_per_s", "infer whole"),
        ("p_infer_core_tok_per_s", "infer core"),
    ]
    n = len(results)
    fig, (ax_tp, ax_e2e, ax_acc) = plt.subplots(
        1, 3, figsize=(13, 2.5 + 0.35 * n), gridspec_kw={"width_ratios": [3, 1.3, 1.3]}
    )
    height = 0.8 / len(keys)
    for k, (key, name) in enumerate(keys):
        values = [getattr(r.metrics, key) or 0.0 for r in results]
        ys = [i + (k - (len(keys) - 1) / 2) * height for i in range(n)]
        ax_tp.barh(ys, values, height=height, label=name)
    ax_tp.set_yticks(range(n), labels, fontsize=8)
    ax_tp.invert_yaxis()
    ax_tp.set_xlabel("prompt tokens / s")
    ax_tp.set_title("Throughput")
    # Below the axes, never on the bars.
    ax_tp.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(keys))
    ax_tp.grid(axis="x", alpha=0.3)
    ax_e2e.barh(range(n), [r.metrics.e2e_time_s for r in results], color="grey")
    ax_e2e.set_yticks(range(n), [""] * n)
    ax_e2e.invert_yaxis()
    ax_e2e.set_xlabel("seconds")
    ax_e2e.set_title("e2e_time")
    ax_e2e.grid(axis="x", alpha=0.3)
    acc = [100 * r.metrics.acc_infer for r in results]
    colors = ["#c44e52" if r.random_weights else "#55a868" for r in results]
    ax_acc.barh(range(n), acc, color=colors)
    for i, value in enumerate(acc):  # a run at 0% still shows its figure
        ax_acc.text(value + 1, i, f"{value:.1f}%", va="center", fontsize=8)
    ax_acc.set_yticks(range(n), [""] * n)
    ax_acc.invert_yaxis()
    ax_acc.set_xlim(0, 100)
    ax_acc.set_xlabel("%  (red: random weights)")
    ax_acc.set_title("infer accuracy")
    ax_acc.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)
