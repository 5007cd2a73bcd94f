"""`mmlubench report`: the result document read through its typed sections, the table with units
and legend, bad result files as one-line errors, and the json / flagperf formats."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mmlubench.cli.main import main
from mmlubench.results import document

REPO = Path(__file__).resolve().parents[1]
# FlagPerf's keys, copied by hand from FlagOpen/FlagPerf (commit 1b5a0303):
# inference/run_inference.py, the `infer_info` dict it logs as "Finish Info"...
FLAGPERF_FINISH_INFO = [
    "vendor",
    "compiler",
    "precision",
    "batchsize",
    "flops",
    "e2e_time(second)",
    "p_validation_whole(qps)",
    "p_validation_core(qps)",
    "p_inference_whole(qps)",
    "*p_inference_core(qps)",
    "val_average_acc",
    "infer_average_acc",
]
# ...and inference/run.py, which parses that line back and adds these before printing.
FLAGPERF_HOST = ["vendor_usage(GiB)", "vendor_max_mem(GiB)", "*MFU"]


@pytest.fixture(scope="module")
def runs(demo_run_dirs: dict[str, Path]) -> dict[str, Path]:
    return demo_run_dirs


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["report", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def sections(value: object, where: str = "") -> list[tuple[str, document.Section]]:
    """Every section inside `value`, with where it is."""
    if isinstance(value, document.Section):
        found = [(where, value)]
        for name in vars(value):
            found += sections(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in sections(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [s for v in value for s in sections(v, where)]
    return []


def test_document_round_trips_and_declares_every_key(runs: dict[str, Path]) -> None:
    for run in runs.values():
        raw = (run / "result.json").read_text(encoding="utf-8")
        result = document.load(run)
        assert json.dumps(result.to_json()) == json.dumps(json.loads(raw))  # keys, order, values
        undeclared = [(where, sorted(s.extra)) for where, s in sections(result) if s.extra]
        assert undeclared == [], "keys results.assemble writes but document does not declare"


def test_earlier_results_still_load() -> None:
    """The device runs kept under bench/results/ (older documents, some keys added since)."""
    paths = sorted(REPO.glob("bench/results/*/*.result.json"))
    assert paths
    for path in paths:
        result = document.load(path)
        assert result.infer.oom_backoff_count == len(result.infer.oom_backoffs)
        assert result.metrics.p_infer_core_tok_per_s > 0


def test_model_config_hash(runs: dict[str, Path]) -> None:
    """compare tells runs of different models apart by config.json's content."""
    result = document.load(runs["inductor"])
    config = json.loads((Path(result.model.path) / "config.json").read_text(encoding="utf-8"))
    expected = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    assert result.model.config_sha256 == expected


def broken(run: Path, tmp_path: Path, edit) -> Path:
    """A copy of `run` whose result.json went through `edit` (data -> data or raw text)."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    data = json.loads((copy / "result.json").read_text(encoding="utf-8"))
    edited = edit(data)
    text = edited if isinstance(edited, str) else json.dumps(edited)
    (copy / "result.json").write_text(text, encoding="utf-8")
    return copy


def drop(*keys: str):
    def edit(data: dict) -> dict:
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
        return data

    return edit


@pytest.mark.parametrize(
    "edit,words",
    [
        (drop("metrics"), "missing key 'metrics'"),
        (drop("passes", "infer", "core_time_s"), "missing key 'passes.infer.core_time_s'"),
        (drop("environment", "git", "commit"), "missing key 'environment.git.commit'"),
        (lambda d: {**d, "metrics": [1, 2]}, "not an object: 'metrics'"),
        (
            lambda d: {**d, "metrics": {**d["metrics"], "e2e_time_s": "fast"}},
            "not a float: 'metrics.e2e_time_s'",
        ),
        (lambda d: [d], "not a result document"),
        (lambda d: '{"schema": "mmlubench.result/1", "case": ', "not valid JSON"),
    ],
)
def test_bad_result_is_one_line(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, words: str
) -> None:
    run = broken(runs["inductor"], tmp_path, edit)
    for fmt in ("markdown", "json", "flagperf"):
        rc, out, err = report(capsys, run, "--format", fmt)
        assert (rc, out) == (2, "")
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"mmlubench: error: {run / 'result.json'}: ") and words in err, err


def test_not_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = report(capsys, tmp_path)
    assert (rc, out) == (2, "") and err.count("\n") == 1
    assert f"{tmp_path / 'result.json'}: no result.json here" in err


def table_and_after(text: str) -> list[str]:
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    return lines[first:]


def test_table_has_units_and_a_legend(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = report(capsys, runs["inductor"])
    assert rc == 0
    header, _, row, *after = table_and_after(out)
    assert header == (
        "| tool | precision | e2e_time (s) | p_val_whole (tok/s) | "
        "p_val_core (tok/s) | p_infer_whole (tok/s) | *p_infer_core (tok/s) | "
        "*MFU | acc (infer/val) | mem (GiB) |"
    )
    assert row.startswith("| inductor | fp32 |")
    legend = " ".join(after)
    assert after[0].startswith("* ")  # the starred columns explained right under the table
    for words in (
        "prompt tokens per second",
        "whole =",
        "core =",
        "MFU =",
        "peak FLOP/s",
        "acc =",
        "mem =",
        "--peak-flops",
    ):
        assert words in legend, words
    assert "RANDOM WEIGHTS" not in out


def test_random_weights_show_both_rules_once(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = document.load(runs["eager_random"])
    rc, out, _ = report(capsys, runs["eager_random"])
    assert rc == 0
    assert out.count("RANDOM WEIGHTS") == 1  # said once, not as a warning and again as a note
    assert "meaningless" in out and "~25% under the choices rule" in out
    after = " ".join(table_and_after(out))
    infer, val = result.infer.accuracy, result.passes["val"].accuracy
    for rule in ("reference", "choices"):
        both = f"{100 * infer[rule].micro:.1f}%/{100 * val[rule].micro:.1f}%"
        assert f"{rule} {both}" in after, (rule, both)
    # The choices rule picks a letter for every question; the reference rule, on a random
    # model, reads whatever top token the whole vocabulary gives, and its accuracy differs.
    assert infer["choices"].micro != infer["reference"].micro


def test_json_format_is_the_document(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = report(capsys, runs["inductor"], "--format", "json")
    assert rc == 0
    assert json.loads(out) == json.loads((runs["inductor"] / "result.json").read_text())


def test_flagperf_format(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    result = document.load(runs["eager_random"])
    m = result.metrics
    rc, out, _ = report(capsys, runs["eager_random"], "--format", "flagperf")
    assert rc == 0
    first, *padded = out.rstrip("\n").split("\n")
    # FlagPerf's run.py finds this line and reads the dict back with ast.literal_eval.
    assert first.startswith("Finish Info {")
    info = ast.literal_eval("{" + first.split("{")[1])
    assert list(info) == FLAGPERF_FINISH_INFO
    assert info["precision"] == "fp32" and info["compiler"] == "eager"
    assert info["vendor"] == "cpu" and info["batchsize"] == 8
    assert info["e2e_time(second)"] == round(m.e2e_time_s, 3)
    assert info["*p_inference_core(qps)"] == round(m.p_infer_core_tok_per_s, 3)
    assert info["p_validation_whole(qps)"] == round(m.p_val_whole_tok_per_s, 3)
    assert info["infer_average_acc"] == round(m.acc_infer, 3)
    # flops = flops_per_token x tokens per core second (all prompt tokens computed here).
    assert info["flops"] == pytest.approx(m.flops_per_token * m.p_infer_core_tok_per_s)
    # Then every key as run.py prints it: key.ljust(43) + " : " + value.
    assert [line[:43].rstrip() for line in padded] == FLAGPERF_FINISH_INFO + FLAGPERF_HOST
    assert all(line[43:46] == " : " for line in padded)
    values = {line[:43].rstrip(): line[46:] for line in padded}
    assert values["*MFU"] == "None"  # no peak FLOP/s known for this CPU: not a guess
    assert values["vendor_usage(GiB)"] == "None"  # a CPU run measures no device memory


def test_flagperf_mfu_and_memory_from_the_result(runs: dict[str, Path]) -> None:
    from mmlubench.display import GIB
    from mmlubench.report.flagperf import host_info

    result = document.load(runs["inductor"])
    result.metrics.mfu = 0.4644
    result.metrics.mem_peak_used_bytes, result.metrics.mem_total_bytes = 28.7 * GIB, 40 * GIB
    assert host_info(result) == {
        "vendor_usage(GiB)": 28.7,
        "vendor_max_mem(GiB)": 40.0,
        "*MFU": "46.4%",
    }
