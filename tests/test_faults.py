"""Faults a run must survive or report clearly, forced on a CPU: out of memory (a test hook makes
the runner raise torch.OutOfMemoryError on a chosen batch), NaN logits (a checkpoint whose
embedding row of one token is NaN), and a crash while writing results."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_shared_prefix import requests_from, tiny_llama

from bench.logits import KeepLogits
from mmlubench.cli.main import main
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts
from mmlubench.engines import engine_class, engine_options
from mmlubench.results.files import write_json_atomic, write_predictions
from mmlubench.run import faults
from mmlubench.run.passes import run_pass

SUBJECTS = ["abstract_algebra", "college_computer_science", "global_facts"]


def run(
    model_dir: Path, mmlu_dir: Path, out: Path, *extra: str, random: bool = True
) -> tuple[int, str, str]:
    """`mmlubench run` in-process, infer pass only, 2 questions of each subject."""
    args = [
        "run",
        "--data-dir",
        "/",
        "--weight-dir",
        str(model_dir),
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        ",".join(SUBJECTS),
        "--limit",
        "2",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--output-dir",
        str(out),
        "--no-progress",
        "--no-validation",
        *(["--random-weights"] if random else []),
        *extra,
    ]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(args)
    return rc, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def prompts(mmlu_dir, tokenizer):
    return build_prompts(load_mmlu(mmlu_dir, "test", SUBJECTS, limit=2), tokenizer)


def longest(prompts) -> str:
    p = max(prompts, key=lambda p: len(p.ids))  # eager batches start with the longest
    return f"{p.subject}#{p.index}"


def test_oom_batch_is_split_and_recorded(
    tmp_path, tiny_model_dir, mmlu_dir, prompts, monkeypatch, caplog
):
    monkeypatch.setenv("MMLUBENCH_INJECT_OOM", "infer:0")
    with caplog.at_level(logging.WARNING, logger="mmlubench"):
        rc, _, err = run(
            tiny_model_dir,
            mmlu_dir,
            tmp_path,
            "--engine",
            "eager",
            "--set",
            "engines.eager.method=padded",
            "--set",
            "engines.eager.batch_size=4",
        )
    assert rc == 0, err
    assert "infer pass: out of device memory on a batch of 4 questions" in caplog.text
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    infer = result["passes"]["infer"]
    assert infer["oom_backoff_count"] == 1
    assert infer["oom_backoffs"] == [
        {
            "attempt": 0,
            "questions": 4,
            "prompt_tokens": infer["oom_backoffs"][0]["prompt_tokens"],
            "first_question": longest(prompts),
            "split_into": [2, 2],
        }
    ]
    assert infer["batches"] == 3  # 6 questions: 4 (split into 2 + 2) and 2
    assert infer["prompt_tokens"] == sum(len(p.ids) for p in prompts)  # none lost, none twice
    assert any("ran out of device memory" in w for w in result["warnings"])
    records = [json.loads(x) for x in (run_dir / "progress.jsonl").open()]
    assert [r["kind"] for r in records if r["kind"] in ("batch", "oom_backoff")] == [
        "oom_backoff",
        "batch",
        "batch",
        "batch",
    ]
    # The same answers as without the fault (same model: random weights of seed 0).
    monkeypatch.delenv("MMLUBENCH_INJECT_OOM")
    rc, _, err = run(
        tiny_model_dir,
        mmlu_dir,
        tmp_path / "plain",
        "--engine",
        "eager",
        "--set",
        "engines.eager.method=padded",
        "--set",
        "engines.eager.batch_size=4",
    )
    assert rc == 0, err
    (plain,) = (tmp_path / "plain").iterdir()
    assert (plain / "predictions.jsonl").read_text() == (run_dir / "predictions.jsonl").read_text()


def test_a_question_that_cannot_fit_alone_is_named(
    tmp_path, tiny_model_dir, mmlu_dir, prompts, monkeypatch
):
    monkeypatch.setenv("MMLUBENCH_INJECT_OOM", "infer:0,infer:1")  # the batch, then its half
    rc, _, err = run(
        tiny_model_dir,
        mmlu_dir,
        tmp_path,
        "--engine",
        "eager",
        "--set",
        "engines.eager.method=padded",
        "--set",
        "engines.eager.batch_size=2",
    )
    assert rc == 2
    assert err.startswith(f"mmlubench: error: infer pass: question {longest(prompts)} (")
    assert "does not fit in device memory even alone" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("result.json"))


def test_an_engine_that_cannot_split_says_so(tmp_path, tiny_model_dir, mmlu_dir, monkeypatch):
    monkeypatch.setenv("MMLUBENCH_INJECT_OOM", "infer:0")
    rc, _, err = run(
        tiny_model_dir, mmlu_dir, tmp_path, "--engine", "null", "--set", "engines.null.batch_size=2"
    )
    assert rc == 2
    assert "out of device memory on a batch of 2 questions" in err
    assert "engine null cannot split a batch" in err


def test_shared_prefix_split_keeps_pack_length_and_answers(monkeypatch):
    """A pack that runs out of memory is re-packed with half the questions, same length."""
    spec = [(50, 30, 0)] * 5 + [(40, 0, 1), (70, 20, 2), (70, 20, 2), (64, 30, 0)]
    requests = requests_from(spec)
    model = tiny_llama()
    options = dict(pack_tokens=512, block_size=64, compile=False, fuse_projections=False)

    def one_pass():
        engine = engine_class("shared-prefix")(
            model, engine_options("shared-prefix", options), "cpu"
        )
        kept = KeepLogits(engine, len(requests))
        result = run_pass(
            "infer", faults.wrap(kept, "infer"), requests, [65, 66, 67, 68], progress=False
        )
        result.logits = kept.logits
        return engine, result

    engine, plain = one_pass()
    (pack,) = engine.plan(requests)
    parts = engine.split(pack)
    assert sorted(r for p in parts for r in p.rows) == list(range(len(requests)))
    assert max(len(p.rows) for p in parts) <= (len(requests) + 1) // 2
    assert all(len(p.payload.ids) == 512 for p in parts)  # the compiled shape
    assert sum(p.prompt_tokens for p in parts) == pack.prompt_tokens
    assert engine.split(parts[0].__class__(rows=[0], prompt_tokens=1, work=pack.work)) is None

    monkeypatch.setenv("MMLUBENCH_INJECT_OOM", "infer:0")
    _, split = one_pass()
    assert split.batches == len(parts) and len(split.oom_backoffs) == 1
    assert np.array_equal(split.top_ids, plain.top_ids)
    assert (split.logits - plain.logits).abs().max().item() <= 1e-5


def nan_checkpoint(root: Path, tokenizer_dir: Path, poisoned: int) -> Path:
    """A tiny checkpoint whose embedding of token `poisoned` is NaN: only prompts holding that
    token get NaN logits (causal attention carries it to their last position)."""
    model = tiny_llama()
    with torch.no_grad():
        model.model.embed_tokens.weight[poisoned] = float("nan")
    path = root / "nan_model"
    model.save_pretrained(str(path))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, path / name)
    return path


def test_nan_logits_name_the_question_and_leave_no_result(
    tmp_path, tokenizer_dir, mmlu_dir, prompts
):
    counts: dict[int, list[int]] = {}
    for k, p in enumerate(prompts):
        for t in set(p.ids.tolist()):
            counts.setdefault(t, []).append(k)
    token, (k,) = next((t, ks) for t, ks in sorted(counts.items()) if len(ks) == 1)
    model = nan_checkpoint(tmp_path, tokenizer_dir, token)
    rc, out, err = run(
        model,
        mmlu_dir,
        tmp_path / "runs",
        "--engine",
        "eager",
        "--set",
        "engines.eager.method=padded",
        "--set",
        "engines.eager.batch_size=4",
        random=False,
    )
    assert rc == 2, out + err
    label = f"{prompts[k].subject}#{prompts[k].index}"
    assert err.strip().splitlines()[-1] == (
        "mmlubench: error: infer pass: non-finite logits (NaN/Inf) from engine eager for 1 "
        f"question(s): {label}"
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "result.json").exists() and not (run_dir / "predictions.jsonl").exists()
    assert "run folder" not in out


def test_atomic_writes_leave_no_partial_file(tmp_path, tokenizer, prompts):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"ok": 1})
    for bad in ({"a": list(range(10000)), "z": object()}, {"x": float("nan")}):
        with pytest.raises((TypeError, ValueError)):
            write_json_atomic(path, bad)  # fails after part of the document was written
        assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]

    class Broken:  # a pass whose 4th prediction cannot be written
        top_ids = np.array([1, 2, 3, -(2**70) + 1, 5, 6], dtype=object)
        choice_logits = np.zeros((6, 4), dtype=np.float32)

    preds = tmp_path / "predictions.jsonl"
    with pytest.raises(Exception):  # noqa: B017 - whatever breaks, nothing partial stays
        write_predictions(preds, prompts, {"infer": Broken()}, tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


class HostOutOfMemory:
    """An engine whose first `load` fails as torch's CPU allocator does when host memory runs
    out (a RuntimeError, which torch.OutOfMemoryError is not)."""

    def __init__(self, inner):
        self.inner, self.failed = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def load(self, batch):
        if not self.failed:
            self.failed = True
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                "allocate memory: you tried to allocate 41070624768 bytes. Error code 12"
            )
        return self.inner.load(batch)


def test_host_memory_running_out_on_a_cpu_backs_off_as_device_memory_does():
    requests = requests_from([(60, 20, 0)] * 4 + [(50, 10, 1)] * 3)
    model = tiny_llama()
    options = engine_options("eager", {"method": "padded", "batch_size": 8})

    def one_pass(wrap):
        engine = KeepLogits(engine_class("eager")(model, options, "cpu"), len(requests))
        result = run_pass("infer", wrap(engine), requests, [65, 66, 67, 68], progress=False)
        return result, engine.logits

    plain, plain_logits = one_pass(lambda e: e)
    split, split_logits = one_pass(HostOutOfMemory)
    assert plain.batches == 1 and split.batches > 1 and len(split.oom_backoffs) == 1
    assert np.array_equal(split.top_ids, plain.top_ids)
    assert (split_logits - plain_logits).abs().max().item() <= 1e-5


def test_other_runtime_errors_are_not_taken_for_running_out_of_memory():
    from mmlubench.run.backoff import out_of_memory

    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(ValueError("DefaultCPUAllocator: can't allocate memory"))
