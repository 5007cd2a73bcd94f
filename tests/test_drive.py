"""bench/drive.py, the driver of measurements on a GPU machine, exercised with its CPU stage;
and every reusable tool in bench/ answers --help."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.drive import parse_lane

BENCH = Path(__file__).resolve().parents[1] / "bench"
# Modules the tools import, not tools themselves (no command line of their own).
HELPERS = {"logits.py", "stages.py", "varlen_split.py"}
TOKENIZER = Path(__file__).resolve().parent / "fixtures" / "tokenizers" / "smollm2-135m"


def drive(tmp_path: Path, mmlu_dir: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(BENCH / "drive.py"), "--model", str(TOKENIZER)]
    argv += ["--mmlu", str(mmlu_dir), "--out", str(tmp_path / "out")]
    argv += ["--work", str(tmp_path / "work"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def members(tarball: Path) -> dict[str, bytes]:
    with tarfile.open(tarball) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_lanes_name_their_gpus_and_known_stages() -> None:
    assert parse_lane("0=case,case-warm") == ("0", ["case", "case-warm"])
    assert parse_lane("2,3=dp") == ("2,3", ["dp"])
    for bad in ("case", "0=", "=case"):
        with pytest.raises(ValueError, match="GPUS=STAGE"):
            parse_lane(bad)
    with pytest.raises(ValueError, match="unknown stage"):
        parse_lane("0=case,nope")


def test_the_cpu_stage_comes_back_in_one_tarball(tmp_path, mmlu_dir) -> None:
    done = drive(
        tmp_path,
        mmlu_dir,
        "--lane",
        "cpu=cpu",
        "--budget-s",
        "400",
        "--name",
        "cpu",
        "--extra=--subjects abstract_algebra,anatomy",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| cpu | cpu | ok |" in done.stdout
    files = members(tmp_path / "out" / "cpu.tar.gz")
    [result] = [n for n in files if n.startswith("runs/") and n.endswith("/result.json")]
    doc = json.loads(files[result])
    assert doc["metrics"]["questions"] == 4 and doc["config"]["device"] == "cpu"
    [stage] = json.loads(files["stages.json"])
    assert stage["stage"] == "cpu" and stage["status"] == "ok"
    assert {"logs/cpu.log", "versions.txt", "commit.txt", "summary.txt"} <= set(files)
    assert not any(n.startswith("cache") for n in files)


def test_a_stage_past_the_deadline_is_skipped_and_the_tarball_still_written(
    tmp_path, mmlu_dir
) -> None:
    done = drive(tmp_path, mmlu_dir, "--lane", "cpu=cpu", "--budget-s", "5")
    assert done.returncode == 1
    assert "| cpu | cpu | skipped |" in done.stdout
    files = members(tmp_path / "out" / "drive.tar.gz")
    assert b"skipped cpu" in files["logs/cpu.log"]


def test_an_unknown_stage_is_one_line_before_any_work(tmp_path, mmlu_dir) -> None:
    done = drive(tmp_path, mmlu_dir, "--lane", "0=case,nope")
    assert done.returncode == 2 and done.stderr.startswith("drive.py: error: unknown stage")
    assert not (tmp_path / "work").exists()


def _help(script: Path) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300
    )
    return script.name, done.returncode, done.stdout


def test_every_bench_tool_answers_help() -> None:
    tools = sorted(p for p in BENCH.glob("*.py") if p.name not in HELPERS)
    assert len(tools) > 10
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(_help, tools))
    bad = [name for name, rc, out in answers if rc != 0 or not out.startswith("usage:")]
    assert bad == [], "bench tools without a working --help"
