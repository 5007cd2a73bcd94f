"""The start-up's overlaps: the questions read and tokenized in a helper process
(run/questions.py) are exactly the ones the run reads itself, errors included; the engines'
early starts run in a thread beside the first pass where one runs before the last
(run/pass_steps.EarlyStart).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from conftest import MMLU_DIR, TOKENIZER_DIR

from mmlubench.cli.main import main
from mmlubench.errors import DataError, ModelError
from mmlubench.run import pass_steps, questions
from mmlubench.run.questions import Ahead, QuestionSpec

SPEC = QuestionSpec(
    str(MMLU_DIR),
    "test",
    ["abstract_algebra", "nutrition"],
    None,
    5,
    str(TOKENIZER_DIR),
    "reference",
    2048,
    True,
)


def inline(spec: QuestionSpec) -> tuple[list, list[int]]:
    return questions.tokenize(spec, *questions.read(spec))


def same_prompts(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert (x.subject, x.index, x.answer, x.text) == (y.subject, y.index, y.answer, y.text)
        assert x.ids.tolist() == y.ids.tolist()
        assert (x.prefix_len, x.dropped) == (y.prefix_len, y.dropped)


@pytest.mark.parametrize(
    "spec",
    [SPEC, replace(SPEC, max_seq_len=600, bos=False)],
    ids=["whole", "truncated-no-bos"],
)
def test_the_helper_gives_the_prompts_read_here(spec):
    tokenizer, prompts, choice_ids, times = Ahead(spec).result()
    want, want_choices = inline(spec)
    same_prompts(prompts, want)
    assert choice_ids == want_choices
    assert tokenizer.bos_token_id == 100000
    assert set(times) == {"data_load_s", "tokenize_s"}
    if spec.max_seq_len == 600:
        assert any(p.dropped for p in prompts)
        assert all(p.ids[0] != 100000 for p in prompts)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (replace(SPEC, mmlu_path="/nonexistent/mmlu"), DataError),
        (replace(SPEC, weight_path="/nonexistent/model"), ModelError),
        (replace(SPEC, subjects=["no_such_subject"]), DataError),
    ],
)
def test_an_input_error_is_the_one_met_here(spec, error):
    with pytest.raises(error) as here:
        inline(spec)
    with pytest.raises(error) as helper:
        Ahead(spec).result()
    assert str(helper.value) == str(here.value)


def test_a_failed_helper_leaves_the_reading_here():
    ahead = Ahead(SPEC)
    ahead.process.wait()
    Path(ahead.path).write_bytes(b"not a pickle")
    _, prompts, _, _ = ahead.result()
    same_prompts(prompts, inline(SPEC)[0])
    assert not Path(ahead.path).exists()


def test_stop_ends_the_helper_and_removes_its_file():
    ahead = Ahead(SPEC)
    ahead.stop()
    assert ahead.process.poll() is not None
    assert not Path(ahead.path).exists()


def test_the_helper_is_started_off_the_cpu_only(monkeypatch):
    cfg = SimpleNamespace(**{k: getattr(SPEC, k) for k in SPEC.__dataclass_fields__}, device="cpu")
    assert Ahead.start(cfg) is None
    monkeypatch.setattr(questions, "usable_cores", lambda: 1)
    assert Ahead.start(replace_ns(cfg, device="cuda:0")) is None
    monkeypatch.setattr(questions, "usable_cores", lambda: 2)
    ahead = Ahead.start(replace_ns(cfg, device="cuda:0"))
    assert isinstance(ahead, Ahead)
    ahead.stop()


def replace_ns(ns: SimpleNamespace, **changes) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(ns), **changes})


def run_null(tmp_path: Path, tiny_model_dir: Path, name: str) -> Path:
    out = tmp_path / name
    argv = ["run", "--random-weights", "--data-dir", "/", "--weight-dir", str(tiny_model_dir)]
    argv += ["--mmlu-dir", str(MMLU_DIR), "--device", "cpu", "--output-dir", str(out)]
    argv += ["--engine", "null", "--no-validation", "--no-progress", "--no-ceiling"]
    assert main(argv) == 0
    (run_dir,) = out.iterdir()
    return run_dir


def test_a_run_takes_the_helpers_questions(tmp_path, tiny_model_dir, monkeypatch):
    plain = run_null(tmp_path, tiny_model_dir, "plain")
    started = []

    def start(cfg):
        started.append(Ahead(QuestionSpec.from_config(cfg)))
        return started[-1]

    monkeypatch.setattr(Ahead, "start", staticmethod(start))
    helped = run_null(tmp_path, tiny_model_dir, "helped")
    assert len(started) == 1 and started[0].process.poll() == 0
    assert not Path(started[0].path).exists()
    for name in ("fingerprint.json", "predictions.jsonl"):
        assert (helped / name).read_text() == (plain / name).read_text()
    timings = json.loads((helped / "result.json").read_text())["timings"]
    assert timings["data_load_s"] >= 0 and timings["model_import_s"] >= 0


class Recorder:
    """An engine class whose early start records its arguments (or fails)."""

    calls: ClassVar[list] = []
    fail = False

    @classmethod
    def start_early(cls, options, run) -> None:
        import threading

        cls.calls.append((run, threading.current_thread().name))
        if cls.fail:
            raise RuntimeError("early start failed")


def early_cfg(validation: bool) -> SimpleNamespace:
    return SimpleNamespace(
        validation=validation,
        val_engine="eager",
        engine="shared-prefix",
        engines={},
        device="cuda:0",
        weight_path=Path("/models/m"),
        precision="fp16",
    )


@pytest.fixture
def recorder(monkeypatch):
    Recorder.calls, Recorder.fail = [], False
    monkeypatch.setattr(pass_steps, "engine_class", lambda name: Recorder)
    return Recorder


def test_early_starts_run_beside_the_first_pass(recorder):
    early = pass_steps.EarlyStart(early_cfg(validation=True))
    assert early.background
    early.start()
    early.wait()
    runs = [run for run, _ in recorder.calls]
    assert [r.first_pass for r in runs] == [True, False]
    assert runs[1] == pass_steps.EarlyRun("cuda:0", "/models/m", "float16", False)
    assert {thread for _, thread in recorder.calls} == {"early-start"}


def test_with_one_pass_they_run_at_once(recorder):
    early = pass_steps.EarlyStart(early_cfg(validation=False))
    assert not early.background
    early.start()
    assert [(r.first_pass, t) for r, t in recorder.calls] == [(True, "MainThread")]


def test_a_failed_early_start_is_raised_by_wait(recorder):
    recorder.fail = True
    early = pass_steps.EarlyStart(early_cfg(validation=True))
    early.start()
    with pytest.raises(RuntimeError, match="early start failed"):
        early.wait()
    early.wait()  # raised once
