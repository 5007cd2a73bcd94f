"""What a new user trips on, one test each: the aligned terminal table, compare's warning for a
val pass in one run only, the demo's meaningless accuracy and banner, the accuracy notes
(standard error, MMLU categories), the hf CLI in hints."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest

from mmlubench.report.table import COLUMNS, aligned_table, markdown_table
from mmlubench.results import document

H200 = Path(__file__).resolve().parent / "fixtures" / "h200_result.json"


def h200() -> document.Result:
    """The H200 fixture as a document; its timelines and samples are cut to one number a row
    (the fixture keeps only their shape), which the reader refuses: left out here."""
    data = json.loads(H200.read_text(encoding="utf-8"))
    for p in data["passes"].values():
        p["timeline"] = []
    data["memory"]["samples"] = data["memory"]["power_samples"] = []
    return document.from_json(data, H200)


def test_aligned_table_on_a_terminal():
    rows = [["eager", "fp32", "12.3", "-", "-", "1,000.0", "2,000.0", "1.0%", "25.0%/-", "-"]]
    text = aligned_table(rows, width=200)
    header, rule, row = text.splitlines()
    assert len(header) == len(rule) == len(row) and "|" not in text
    assert header.startswith("tool ") and row.startswith("eager")
    assert row.index("2,000.0") + len("2,000.0") == header.index("*p_infer_core (tok/s)") + len(
        "*p_infer_core (tok/s)"
    )  # numbers right-aligned under their header
    narrow = aligned_table(rows, width=60)  # wider than the terminal: one line per column
    assert narrow.splitlines()[0].split() == ["tool", "eager"] and len(narrow.splitlines()) == 10
    assert markdown_table(rows).startswith("| " + " | ".join(COLUMNS) + " |")


def test_compare_warns_when_only_one_run_has_a_val_pass():
    from mmlubench.report.compare import setting_warnings

    with_val = h200()
    without = copy.deepcopy(with_val)
    without.passes.pop("val")
    without.metrics.p_val_whole_tok_per_s = without.metrics.p_val_core_tok_per_s = None
    warnings = setting_warnings([with_val, without], ["a", "b"])
    assert any(
        w.startswith(
            "runs differ in val pass (a: run, b: not run): e2e_time counts a val pass in one run"
        )
        for w in warnings
    )


def test_accuracy_notes_and_categories():
    from mmlubench.report.accuracy_notes import categories, stderr
    from mmlubench.results.document import Accuracy
    from mmlubench.results.lmeval import mean_stderr, pooled_sample_stderr

    a = Accuracy(
        micro=0.5,
        macro=0.5,
        correct=15,
        total=30,
        per_subject={"abstract_algebra": 0.3, "anatomy": 0.6},
        per_subject_total={"abstract_algebra": 10, "anatomy": 20},
    )
    se = [mean_stderr([1.0] * 3 + [0.0] * 7), mean_stderr([1.0] * 12 + [0.0] * 8)]
    assert stderr(a) == pytest.approx(pooled_sample_stderr(se, [10, 20]))
    # the original MMLU mapping: anatomy is a health subject, "other"
    assert categories(a) == [
        ("STEM", pytest.approx(0.3), 10, pytest.approx(se[0])),
        ("other", pytest.approx(0.6), 20, pytest.approx(se[1])),
    ]


def test_demo_accuracy_is_not_meaningful_and_the_page_says_demo(demo_run_dirs):
    from mmlubench.report import html as html_report

    run = demo_run_dirs["inductor"]  # real (tiny, random) weights: only the demo says so
    result = document.load(run)
    assert result.case == "demo" and result.random_weights is False
    assert result.accuracy_meaningful is False
    assert any(w.startswith("DEMO:") for w in result.warnings)
    assert 'id="demo"' in html_report.render(result, "demo run")


def test_demo_says_generated_only_when_it_generates(tmp_path, monkeypatch):
    from mmlubench.cli import commands
    from mmlubench.cli import main as cli

    monkeypatch.setattr(commands, "run", lambda args: 0)  # the files, not the run
    lines = []
    for _ in range(2):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["demo", "--dir", str(tmp_path / "demo")]) == 0
        lines.append(out.getvalue())
    assert "were generated under" in lines[0] and "were generated" not in lines[1]
    assert "are reused under" in lines[1]


def test_hints_name_the_hf_cli():
    from mmlubench.model.load import download_hint

    hint = download_hint(Path("/data/deepseek_7b_hf"))
    assert "hf download deepseek-ai/deepseek-llm-7b-base --local-dir /data/deepseek_7b_hf" in hint
    assert "huggingface-cli" not in hint
