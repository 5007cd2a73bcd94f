"""`mmlubench report RUN_DIR --html`: a self-contained page with every figure of the result
table, the charts, environment, config and warnings; rendered in headless Chromium."""

from __future__ import annotations

import base64
import copy
import html
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from report_helpers import (
    assert_real_png,
    assert_self_contained,
    needs_chromium,
    page_text,
    render,
)

from mmlubench.cli.main import main
from mmlubench.display import GIB
from mmlubench.report import html as html_report
from mmlubench.report.table import COLUMNS, LEGEND, table_row
from mmlubench.results.document import Result
from mmlubench.results.document import load as load_result


@pytest.fixture(scope="module")
def runs(demo_run_dirs: dict[str, Path]) -> dict[str, Path]:
    return demo_run_dirs


def embedded_pngs(markup: str) -> list[bytes]:
    return [
        base64.b64decode(b)
        for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', markup)
    ]


def check_page(markup: str, result: Result) -> str:
    """Checks every report must pass; returns the page text."""
    assert_self_contained(markup)
    text = page_text(markup)
    for column in COLUMNS:
        assert column in text
    for cell in table_row(result):
        assert html.escape(cell) in markup and cell in text, f"table cell {cell!r} missing"
    assert " ".join(LEGEND.split()) in text  # the legend under the table
    for key in result.metrics.to_json():  # the full metrics table
        assert key in text
    env = result.environment
    for value in (env.device_name, env.torch, env.transformers, env.date_utc, env.git.commit):
        assert value in text
    config = result.config.to_json()
    for key in ("prompt_style", "scoring", "few_shots", "max_seq_len", "flops_per_token"):
        assert key in text and str(config[key]) in text
    for warning in result.warnings:
        assert warning in text
    for png in embedded_pngs(markup):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return text


def test_cpu_run_report(runs: dict[str, Path]) -> None:
    result = load_result(runs["inductor"])
    markup = html_report.render(result, runs["inductor"].name)
    text = check_page(markup, result)
    assert runs["inductor"].name in text
    assert len(embedded_pngs(markup)) == 2  # per-subject accuracy and throughput; no memory
    assert 'id="no-memory"' in markup and "No device memory samples" in text
    assert 'id="random-weights"' not in markup
    for subject in result.infer.accuracy["reference"].per_subject:
        assert subject in text


def test_random_weights_are_loud(runs: dict[str, Path]) -> None:
    result = load_result(runs["eager_random"])
    assert result.random_weights
    markup = html_report.render(result)
    text = check_page(markup, result)
    banner = re.search(r'<div class="banner" id="random-weights">(.*?)</div>', markup)
    assert banner and "RANDOM WEIGHTS" in banner.group(1)
    # before the result table, not buried at the end
    assert markup.index('id="random-weights"') < markup.index("Result (reference columns)")
    # Both answer rules' accuracy, as the table shows only the run's rule.
    for rule in ("reference", "choices"):
        acc = result.infer.accuracy[rule].micro
        assert f"{rule} {100 * acc:.1f}%/" in text


def test_memory_chart_when_sampled(runs: dict[str, Path]) -> None:
    """A GPU run's memory samples become a chart, and the mem column shows used/total."""
    result = copy.deepcopy(load_result(runs["inductor"]))
    samples = [[0.0, 1 * GIB], [5.0, 12 * GIB], [10.0, 20 * GIB], [15.0, 18 * GIB]]
    mem = result.memory
    mem.samples, mem.peak_used_bytes, mem.total_bytes = samples, 20 * GIB, 40 * GIB
    mem.source, mem.device_index = "nvml", 0
    result.metrics.mem_peak_used_bytes, result.metrics.mem_total_bytes = 20 * GIB, 40 * GIB
    markup = html_report.render(result)
    check_page(markup, result)
    assert "20.0/40.0" in page_text(markup)
    assert 'id="no-memory"' not in markup
    pngs = embedded_pngs(markup)
    assert len(pngs) == 3
    from PIL import Image

    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            assert im.width > 300 and im.height > 150


def test_run_without_val_pass(runs: dict[str, Path]) -> None:
    result = copy.deepcopy(load_result(runs["inductor"]))
    del result.passes["val"]
    result.accuracy.agreement_val_infer = None
    m = result.metrics
    m.p_val_whole_tok_per_s = m.p_val_core_tok_per_s = m.acc_val = None
    markup = html_report.render(result)
    check_page(markup, result)
    assert len(embedded_pngs(markup)) == 2


def test_cli_writes_report(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runs["inductor"]
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(run), "--html", str(out)]) == 0
    assert out.is_file() and f"HTML report: {out}" in capsys.readouterr().out
    assert main(["report", str(run / "result.json"), "--html"]) == 0  # default: in the run
    assert (run / "report.html").read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    assert main(["report", str(tmp_path), "--html"]) == 2  # not a run folder: one-line error
    assert "no result.json" in capsys.readouterr().err


def test_run_does_not_import_matplotlib() -> None:
    code = (
        "import sys, mmlubench.cli.main, mmlubench.run.runner, mmlubench.report.table; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_chromium
def test_report_renders_in_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["inductor"]
    result = load_result(run)
    page = html_report.write(result, tmp_path / "report.html", run.name)
    png, text = render(page, tmp_path)
    assert_real_png(png, size=(1200, 2000))
    for cell in table_row(result):
        assert cell in text, f"table cell {cell!r} not in the rendered page"
    m = result.metrics
    for figure in (
        f"{m.e2e_time_s:,.1f}",
        f"{m.p_infer_core_tok_per_s:,.1f}",
        f"{m.p_val_core_tok_per_s:,.1f}",
        result.environment.device_name,
        "No device memory samples",
    ):
        assert figure in text


def test_long_timeline_is_smoothed(runs: dict[str, Path]) -> None:
    """A real run has thousands of batches: the chart smooths them over a sliding window."""
    from mmlubench.report import charts

    result = copy.deepcopy(load_result(runs["inductor"]))
    n = 5000
    result.infer.timeline = [[1, 700, 0.07, 10.0 + 0.1 * i] for i in range(n)]
    assert charts._smoothed([100.0] * 10, [0.5] * 10, 3) == [200.0] * 10
    assert charts._smoothed([1.0, 3.0, 5.0], [1.0, 1.0, 1.0], 2) == [1.0, 2.0, 4.0]
    png = charts.throughput(result)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
