"""`mmlubench compare RUN_DIR...`: one row per run with ratios to the first run, warnings when
settings make runs incomparable, and an HTML page / PNG chart."""

from __future__ import annotations

import copy
import html
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
from mmlubench.report import compare
from mmlubench.report.table import COLUMNS
from mmlubench.results.document import Result
from mmlubench.results.document import load as load_result


@pytest.fixture(scope="module")
def runs(demo_run_dirs: dict[str, Path]) -> dict[str, Path]:
    return demo_run_dirs


@pytest.fixture(scope="module")
def pair(runs: dict[str, Path]) -> tuple[list[str], list[Result]]:
    return compare.load_runs([runs["inductor"], runs["eager_random"]])


# Ratio column -> the metric it shows, written out here (not read from compare.RATIO_COLUMNS).
RATIO_KEYS = {
    "e2e_time (s)": "e2e_time_s",
    "p_val_whole (tok/s)": "p_val_whole_tok_per_s",
    "p_val_core (tok/s)": "p_val_core_tok_per_s",
    "p_infer_whole (tok/s)": "p_infer_whole_tok_per_s",
    "*p_infer_core (tok/s)": "p_infer_core_tok_per_s",
    "*MFU": "mfu",
}


def test_rows_and_ratios(pair: tuple[list[str], list[Result]]) -> None:
    labels, results = pair
    rows = compare.compare_rows(results, labels)
    assert [r[0] for r in rows] == labels
    assert all(len(r) == len(compare.COMPARE_COLUMNS) == len(COLUMNS) + 2 for r in rows)
    assert rows[0][1] == results[0].environment.device_name
    assert rows[1][2] == "eager" and rows[0][2] == "inductor"
    assert sorted(compare.RATIO_COLUMNS) == sorted(RATIO_KEYS)
    a, b = (r.metrics.to_json() for r in results)
    for col, key in RATIO_KEYS.items():
        i = compare.COMPARE_COLUMNS.index(col)
        if a[key] is None:  # CPU: MFU is null, no ratio
            assert rows[0][i] == rows[1][i] == "-"
            continue
        assert rows[0][i].endswith("(1.00x)")
        assert rows[1][i] == f"{b[key]:,.1f} ({b[key] / a[key]:.2f}x)"


def test_mfu_ratio(pair: tuple[list[str], list[Result]]) -> None:
    labels, results = copy.deepcopy(pair)
    results[0].metrics.mfu, results[1].metrics.mfu = 0.2, 0.5
    rows = compare.compare_rows(results, labels)
    i = compare.COMPARE_COLUMNS.index("*MFU")
    assert rows[0][i] == "20.0% (1.00x)" and rows[1][i] == "50.0% (2.50x)"


def test_text_output_warns_on_random_weights(pair: tuple[list[str], list[Result]]) -> None:
    labels, results = pair
    text = compare.format_compare(results, labels)
    first, table = text.split("\n\n", 1)
    assert "runs differ in random_weights" in first
    assert f"WARNING: {labels[1]}: RANDOM WEIGHTS" in first
    assert table.splitlines()[0].startswith("| run | device | tool |")
    assert "runs differ" not in compare.format_compare([results[0]] * 2, labels[:1] * 2)


SETTINGS_CHANGES = {
    "prompt_style": ("config", "prompt_style", "lm-eval"),
    "scoring": ("config", "scoring", "choices"),
    "split": ("config", "split", "val"),
    "subjects": ("config", "subjects", ["arithmetic"]),
    "limit": ("config", "limit", 3),
    "few_shots": ("config", "few_shots", 3),
    "max_seq_len": ("config", "max_seq_len", 512),
    "questions": ("metrics", "questions", 7),
    "prompt_tokens": ("metrics", "prompt_tokens", 99),
    "precision": ("metrics", "precision", "fp16"),
    "flops_per_token": ("metrics", "flops_per_token", 1.4e10),
    "random_weights": (None, "random_weights", True),
    "model": ("model", "config_sha256", "0" * 64),  # another model's config.json
    "val pass": ("metrics", "p_val_whole_tok_per_s", None),  # e2e_time counts one pass less
}


def test_every_setting_is_checked() -> None:
    assert sorted(name for name, _, _ in compare.SETTINGS) == sorted(SETTINGS_CHANGES)


@pytest.mark.parametrize("setting", sorted(SETTINGS_CHANGES))
def test_each_incomparable_setting_warns(runs: dict[str, Path], setting: str) -> None:
    base = load_result(runs["inductor"])
    other = copy.deepcopy(base)
    section, key, value = SETTINGS_CHANGES[setting]
    setattr(getattr(other, section) if section else other, key, value)
    warnings = compare.setting_warnings([base, other], ["a", "b"])
    assert len(warnings) == 1 and warnings[0].startswith(f"runs differ in {setting} ("), warnings
    assert compare.setting_warnings([base, copy.deepcopy(base)], ["a", "b"]) == []


def test_cli_compare_html_and_png(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_html, out_png = tmp_path / "cmp.html", tmp_path / "cmp.png"
    dirs = [str(runs["inductor"]), str(runs["eager_random"])]
    assert main(["compare", *dirs, "--html", str(out_html), "--png", str(out_png)]) == 0
    printed = capsys.readouterr().out
    assert "| run | device |" in printed and "(1.00x)" in printed
    assert_real_png(out_png)
    markup = out_html.read_text(encoding="utf-8")
    assert_self_contained(markup)
    assert markup.count('src="data:image/png;base64,') == 1
    text = page_text(markup)
    labels, results = compare.load_runs(dirs)
    for row in compare.compare_rows(results, labels):
        for cell in row:
            assert html.escape(cell) in markup and cell in text, f"cell {cell!r} missing"
    assert "RANDOM WEIGHTS" in text and "runs differ in random_weights" in text
    assert main(["compare", dirs[0], str(tmp_path)]) == 2  # not a run folder
    assert "no result.json" in capsys.readouterr().err


@needs_chromium
def test_compare_renders_in_chromium(pair: tuple[list[str], list[Result]], tmp_path: Path) -> None:
    labels, results = pair
    page = compare.write_html(results, labels, tmp_path / "compare.html")
    png, text = render(page, tmp_path)
    assert_real_png(png, size=(1200, 2000))
    for label, result in zip(labels, results, strict=True):
        m = result.metrics
        assert label in text
        assert f"{m.p_infer_core_tok_per_s:,.1f}" in text
        assert f"{m.e2e_time_s:,.1f}" in text
    b, a = results[1].metrics, results[0].metrics
    ratio = b.p_infer_core_tok_per_s / a.p_infer_core_tok_per_s
    assert f"({ratio:.2f}x)" in text
    assert "runs differ in random_weights" in text
