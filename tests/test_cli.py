"""A newcomer's first commands: --version, help that shows the defaults, a download
help without run flags, the engines listing, and a demo that stays out of the clone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmlubench import __version__
from mmlubench.cli.main import main


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps help anywhere, even in a path


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"mmlubench {__version__}\n"


def test_run_help_shows_the_case_defaults(capsys):
    text = help_text(capsys, "run")
    for flag, default in (
        ("--engine", "auto: shared-prefix on CUDA, eager on CPU"),
        ("--device", "cuda"),
        ("--precision", "fp16"),
        ("--val-engine", "eager"),
        ("--few-shots", "5"),
        ("--flops-per-token", "2*7e9"),
    ):
        (entry,) = [e for e in re.split(r"\n(?=  -)", text) if e.startswith(f"  {flag} ")]
        assert f"(default: {default}" in " ".join(entry.split()), flag
    assert "dtype of the weights and the compute" in text  # --precision is explained


def test_demo_help_shows_the_demo_defaults(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = help_text(capsys, "demo")
    assert f"(default: {tmp_path / 'mmlubench' / 'demo'})" in text
    assert "--precision" in text and "(default: fp32)" in text  # demo.yaml, not the case
    assert "(default: cpu)" in text and "(default: cuda)" not in text


def test_download_help_lists_only_download_flags(capsys):
    text = help_text(capsys, "download")
    for flag in ("--data", "--weights", "--repo", "--data-tar", "--data-dir", "--weight-dir"):
        assert flag in text
    for flag in (
        "--split",
        "--limit",
        "--few-shots",
        "--max-seq-len",
        "--prompt-style",
        "--engine",
        "--precision",
        "--subjects",
    ):
        assert flag not in text, flag


def test_engines_listing(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    blocks = {b.split()[0]: b for b in out.split("\n\n")[1:]}
    assert set(blocks) == {"eager", "inductor", "shared-prefix", "null"}
    assert "[default infer engine on CUDA]" in blocks["shared-prefix"].splitlines()[0]
    assert "[default infer engine on CPU, default val engine]" in blocks["eager"].splitlines()[0]
    for name, block in blocks.items():
        lines = block.splitlines()[1:]
        first_option = next((i for i, line in enumerate(lines) if " = " in line), len(lines))
        about = " ".join(line.strip() for line in lines[:first_option])
        assert about.endswith("."), (name, about)  # a whole sentence, not cut mid-way
        assert f"`{name}`" not in about and not about.startswith(name)  # no repeated name
    assert re.search(r"^\s+batch_size = \d+", blocks["eager"], re.M)
    assert re.search(r"^\s+pack_tokens = \d+", blocks["shared-prefix"], re.M)


def test_engine_option_rows():
    """Default, the case file's value where it differs, and the field's help (blank without)."""
    import dataclasses

    from mmlubench.cli.engines_doc import first_paragraph, option_rows

    @dataclasses.dataclass
    class Options:
        batch_size: int = dataclasses.field(default=8, metadata={"help": "prompts per call"})
        mode: str | None = None
        sizes: list = dataclasses.field(default_factory=lambda: [1, 2])

    assert option_rows(Options, {"batch_size": 32, "mode": None}) == [
        ("batch_size", "8 (case file: 32)", "prompts per call"),
        ("mode", "None", ""),
        ("sizes", "[1, 2]", ""),
    ]
    assert first_paragraph("`x-y`: does a thing,\nwell.\n\nMore.", "x-y") == "Does a thing, well."


def test_demo_writes_nothing_into_the_current_folder(tmp_path, monkeypatch, capsys):
    """The demo's model, data and runs go to the cache folder; `prompts` works on it."""
    cwd, cache = tmp_path / "clone", tmp_path / "cache"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert main(["demo", "--engine", "eager", "--no-validation", "--no-progress"]) == 0
    assert list(cwd.iterdir()) == []
    demo = cache / "mmlubench" / "demo"
    (run,) = (demo / "runs").iterdir()
    assert json.loads((run / "result.json").read_text())["case"] == "demo"
    out = capsys.readouterr().out
    assert f"mmlubench prompts --data-dir {demo} --out prompts.jsonl" in out
    assert main(["prompts", "--data-dir", str(demo), "--out", "p.jsonl", "--no-progress"]) == 0
    assert len(Path("p.jsonl").read_text().splitlines()) == 36


def test_demo_runs_the_default_infer_engine_of_a_gpu():
    """The demo runs on CPU but exercises what `run` uses by default on the accelerator."""
    from mmlubench.config.config import AUTO_ENGINE, load_config

    assert load_config("demo").engine == AUTO_ENGINE["cuda"] == "shared-prefix"


def test_no_loading_bar_and_transformers_bars_restored(tmp_path, capfd):
    """transformers' "Loading weights" bar never shows (loading is a step of the run, not a
    bar of its own); its bar setting is what it was once the run ends."""
    from transformers.utils import logging as hf_logging

    from mmlubench.cli.demo import make_demo

    make_demo(tmp_path)
    base = [
        "run",
        "--config",
        "demo",
        "--data-dir",
        str(tmp_path),
        "--engine",
        "null",
        "--no-validation",
        "--output-dir",
        str(tmp_path / "runs"),
    ]
    capfd.readouterr()
    assert main([*base, "--no-progress"]) == 0
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    assert main(base) == 0
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "infer (null): " in err  # the pass's own line
    assert hf_logging.is_progress_bar_enabled()


def test_cases_lists_every_case_with_its_reference_row(capsys) -> None:
    from mmlubench.cli.main import main

    assert main(["cases"]) == 0
    out = capsys.readouterr().out
    # The A100 rows of FlagPerf's case READMEs (deepseek: ../shared/REFERENCE.md).
    for case, infer_core in [
        ("deepseek_7b_mmlu", "10338.8"),
        ("llama2_7b_mmlu", "10052.2"),
        ("llama3_8b_mmlu", "9051.3"),
    ]:
        block = out.split(f"{case}  (", 1)[1].split("\n", 3)
        assert infer_core in block[2], block


def test_allocator_defaults_respect_the_users_setting(monkeypatch):
    import os

    from mmlubench.cli.main import allocator_defaults

    for key in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        monkeypatch.delenv(key, raising=False)
    allocator_defaults()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "max_split_size_mb:256")
    allocator_defaults()
    assert "PYTORCH_CUDA_ALLOC_CONF" not in os.environ
