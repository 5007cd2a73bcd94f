"""End to end on the CPU: `mmlubench run` with a tiny random Llama (real tokenizer, real MMLU),
the inductor, eager and null engines; `mmlubench report`; `mmlubench demo`; and batched,
left-padded eager logits against batch size 1."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BOS, TINY_PARAMS, read_rows

from mmlubench.cli.main import main

SUBJECTS = ["abstract_algebra", "college_computer_science", "global_facts"]
LIMIT = 2
# The reference table's metrics, as result.json names them.
TABLE_KEYS = [
    "precision",
    "e2e_time_s",
    "p_val_whole_tok_per_s",
    "p_val_core_tok_per_s",
    "p_infer_whole_tok_per_s",
    "p_infer_core_tok_per_s",
    "mfu",
    "acc_infer",
    "acc_val",
    "mem_peak_used_bytes",
    "mem_total_bytes",
]


def run_cli(model_dir: Path, mmlu_dir: Path, out: Path, *extra: str) -> tuple[Path, dict, str]:
    """`mmlubench run` in-process; returns (run folder, result.json, stdout)."""
    args = [
        "run",
        "--data-dir",
        str(model_dir.parent),
        "--weight-dir",
        model_dir.name,
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        ",".join(SUBJECTS),
        "--limit",
        str(LIMIT),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--random-weights",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(args)
    assert rc == 0, stdout.getvalue()
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    return run_dir, result, stdout.getvalue()


def predictions(run_dir: Path) -> list[dict]:
    lines = (run_dir / "predictions.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines.pop() == ""
    return [json.loads(x) for x in lines]


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.fixture(scope="module")
def inductor_run(tmp_path_factory, tiny_model_dir, mmlu_dir):
    """The case with the reference method (inductor infer, eager val), with compile options
    cheap for a CPU."""
    out = tmp_path_factory.mktemp("runs_inductor")
    return run_cli(
        tiny_model_dir,
        mmlu_dir,
        out,
        "--engine",
        "inductor",
        "--set",
        "engines.inductor.mode=null",
        "--set",
        "engines.inductor.warmup_iters=1",
        "--set",
        "engines.inductor.warmup_times=1",
    )


@pytest.fixture(scope="module")
def questions(mmlu_dir):
    """(subject, index, gold answer) of the questions the runs cover, from the raw CSVs."""
    return [(s, i, read_rows("test", s)[i][5]) for s in SUBJECTS for i in range(LIMIT)]


def test_result_has_the_reference_table(inductor_run):
    _, result, _ = inductor_run
    m = result["metrics"]
    for key in TABLE_KEYS:
        assert key in m, key
    assert m["precision"] == "fp32"
    for key in TABLE_KEYS[1:6]:
        assert isinstance(m[key], float) and m[key] > 0, key
    # No peak FLOP/s is known for a CPU: MFU is null, never a guess; NVML memory is null too.
    assert m["mfu"] is None and m["peak_flops_per_s"] is None
    assert m["mem_peak_used_bytes"] is None and m["mem_total_bytes"] is None
    assert any("MFU is null" in w for w in result["warnings"])
    assert any("RANDOM WEIGHTS" in w for w in result["warnings"])
    assert result["random_weights"] is True and result["accuracy_meaningful"] is False
    assert result["passes"]["infer"]["engine"]["name"] == "inductor"
    assert result["passes"]["infer"]["engine"]["options"]["mode"] is None
    assert result["passes"]["val"]["engine"]["name"] == "eager"
    assert result["model"]["n_params"] == TINY_PARAMS
    assert result["config"]["subjects"] == SUBJECTS and result["config"]["limit"] == LIMIT


def test_prompt_tokens_and_throughputs(inductor_run, questions, reference_prompt):
    _, result, _ = inductor_run
    m, val, infer = result["metrics"], result["passes"]["val"], result["passes"]["infer"]
    tokens = sum(len(reference_prompt(s, i)[1]) for s, i, _ in questions)  # BOS included
    assert m["questions"] == len(questions) == 6
    assert m["prompt_tokens"] == val["prompt_tokens"] == infer["prompt_tokens"] == tokens
    assert m["p_val_whole_tok_per_s"] == pytest.approx(tokens / val["whole_time_s"])
    assert m["p_val_core_tok_per_s"] == pytest.approx(tokens / val["core_time_s"])
    assert m["p_infer_whole_tok_per_s"] == pytest.approx(tokens / infer["whole_time_s"])
    assert m["p_infer_core_tok_per_s"] == pytest.approx(tokens / infer["core_time_s"])
    # Whole time holds core time (and, for infer, the compile/warm-up, kept out of core).
    assert val["whole_time_s"] >= val["core_time_s"] > 0
    assert infer["whole_time_s"] >= infer["core_time_s"] + infer["compile_time_s"]
    assert infer["compile_time_s"] > 0
    assert m["e2e_time_s"] >= val["whole_time_s"] + infer["whole_time_s"]
    # The reference method's infer computed every prompt token once; the prefix-cache val
    # computed each few-shot prefix once and every question's own tokens.
    assert infer["computed_tokens"] == tokens
    assert val["engine"]["options"]["method"] == "prefix-cache"  # which val method ran
    assert val["computed_tokens"] < tokens


def test_predictions(inductor_run, questions, raw_tokenizer):
    run_dir, result, _ = inductor_run
    rows = predictions(run_dir)
    assert [(r["subject"], r["index"], r["gold"]) for r in rows] == questions
    same = sum(r["val"]["top_id"] == r["infer"]["top_id"] for r in rows)
    assert same / len(rows) >= 0.99
    assert result["accuracy"]["agreement_val_infer"]["same_top_token"] >= 0.99
    # The reference rule applied here, independently: decode, keep A-D, compare.
    for name, key in (("infer", "acc_infer"), ("val", "acc_val")):
        letters = [
            "".join(c for c in raw_tokenizer.decode([r[name]["top_id"]]) if c in "ABCD")
            for r in rows
        ]
        assert [r[name]["reference"] for r in rows] == letters
        hits = sum(letter == r["gold"] for letter, r in zip(letters, rows, strict=True))
        assert result["metrics"][key] == pytest.approx(hits / len(rows))


def test_report_reprints_the_table(inductor_run, capsys):
    run_dir, _, stdout = inductor_run
    printed = table_lines(stdout)
    assert printed[0].startswith("| tool | precision | e2e_time (s) | p_val_whole (tok/s) |")
    assert printed[2].startswith("| inductor | fp32 |")
    assert main(["report", str(run_dir)]) == 0
    assert table_lines(capsys.readouterr().out) == printed
    assert main(["report", str(run_dir / "result.json")]) == 0
    assert table_lines(capsys.readouterr().out) == printed
    assert main(["report", str(run_dir.parent / "nothing")]) == 2


def test_eager_with_peak_flops(tmp_path, tiny_model_dir, mmlu_dir, questions):
    _, result, stdout = run_cli(
        tiny_model_dir,
        mmlu_dir,
        tmp_path,
        "--engine",
        "eager",
        "--peak-flops",
        "1e12",
        "--flops-per-token",
        "2*params",
        "--scoring",
        "choices",
        "--set",
        "engines.eager.method=padded",
        "--set",
        "engines.eager.batch_size=4",
    )
    m = result["metrics"]
    assert m["flops_per_token"] == 2 * TINY_PARAMS
    assert m["peak_flops_per_s"] == 1e12 and m["peak_flops_source"] == "config"
    assert m["mfu"] == pytest.approx(2 * TINY_PARAMS * m["p_infer_core_tok_per_s"] / 1e12)
    assert not any("MFU is null" in w for w in result["warnings"])
    assert result["accuracy"]["rule"] == "choices"
    assert m["acc_infer"] == result["passes"]["infer"]["accuracy"]["choices"]["micro"]
    assert result["accuracy"]["agreement_val_infer"]["same_top_token"] == 1.0  # same model
    assert result["passes"]["infer"]["batches"] == 2  # 6 questions, batches of 4
    assert "| eager | fp32 |" in stdout


def test_null_engine_without_validation(tmp_path, tiny_model_dir, mmlu_dir):
    run_dir, result, _ = run_cli(
        tiny_model_dir, mmlu_dir, tmp_path, "--engine", "null", "--no-validation"
    )
    m = result["metrics"]
    assert "val" not in result["passes"]
    assert m["p_val_whole_tok_per_s"] is None and m["p_val_core_tok_per_s"] is None
    assert m["acc_val"] is None
    assert m["p_infer_core_tok_per_s"] > 0
    assert m["computed_tokens"] == 0  # the null engine runs no model
    rows = predictions(run_dir)
    assert len(rows) == 6
    assert all(r["infer"]["top_id"] == 0 and r["infer"]["reference"] == "" for r in rows)
    assert m["acc_infer"] == 0.0


def test_warm_up_is_announced_with_its_time(tmp_path, tiny_model_dir, mmlu_dir, capfd):
    """With progress shown, a pass whose engine warms up says when it starts and ends; an
    engine that compiles nothing (eager) says nothing of it."""
    args = [
        "run",
        "--data-dir",
        str(tiny_model_dir.parent),
        "--weight-dir",
        tiny_model_dir.name,
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        "global_facts",
        "--limit",
        "1",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--random-weights",
        "--engine",
        "shared-prefix",
        "--set",
        "engines.shared-prefix.compile=false",
        "--set",
        "engines.shared-prefix.pack_tokens=4096",
        "--output-dir",
        str(tmp_path),
    ]
    assert main(args) == 0
    lines = [x.split("\r")[-1] for x in capfd.readouterr().err.splitlines()]
    start = lines.index("infer: compiling/warming up shared-prefix ...")
    end = next(
        i
        for i, x in enumerate(lines)
        if x.startswith("infer: shared-prefix compiled/warmed up in ")
    )
    assert start < end and lines[end].endswith(" s")
    assert not any(x.startswith("val: ") and "warm" in x for x in lines)
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    timings = result["timings"]
    per_pass = ("setup_s", "plan_s", "finish_s")
    assert list(timings) == [
        "startup_s",
        "early_start_s",
        "device_open_s",
        "data_load_s",
        "tokenize_s",
        "model_import_s",
        "model_check_s",
        "run_log_s",
        "model_load_s",
        *(f"{name}_{key}" for name in ("val", "infer") for key in per_pass),
        "end_s",
    ]
    assert all(v >= 0 for v in timings.values())
    for name in ("val", "infer"):
        p = result["passes"][name]
        assert p["plan_time_s"] == timings[f"{name}_plan_s"]
        assert p["whole_time_s"] >= p["plan_time_s"] + p["compile_time_s"] + p["core_time_s"]
    # The steps outside the passes and the passes' whole times are the whole e2e time (laps of
    # one clock; the pass's own clock starts and stops microseconds inside its lap).
    outside = sum(v for k, v in timings.items() if not k.endswith("_plan_s"))
    wholes = sum(p["whole_time_s"] for p in result["passes"].values())
    assert outside + wholes == pytest.approx(result["metrics"]["e2e_time_s"], abs=0.01)


def test_e2e_time_counts_from_the_call(tmp_path, tiny_model_dir, mmlu_dir):
    time.sleep(1.0)  # mmlubench.cli was imported before this test started
    t0 = time.perf_counter()
    _, result, _ = run_cli(
        tiny_model_dir, mmlu_dir, tmp_path, "--engine", "null", "--no-validation"
    )
    assert result["metrics"]["e2e_time_s"] <= time.perf_counter() - t0


def test_a_device_torch_does_not_see_is_one_line(tmp_path, tiny_model_dir, mmlu_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    rc = main(
        [
            "run",
            "--data-dir",
            str(tiny_model_dir.parent),
            "--weight-dir",
            tiny_model_dir.name,
            "--mmlu-dir",
            str(mmlu_dir),
            "--subjects",
            "global_facts",
            "--limit",
            "1",
            "--device",
            "cuda:1",
            "--random-weights",
            "--output-dir",
            str(tmp_path / "runs"),
            "--no-progress",
        ]
    )
    assert rc == 2
    assert capsys.readouterr().err == (
        "mmlubench: error: device 'cuda:1' asked for, but torch sees no cuda device (use "
        "--device cpu, or a build of torch for cuda)\n"
    )
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made


def test_bad_run_input_is_one_line(tmp_path, tiny_model_dir, mmlu_dir, capsys):
    rc = main(
        [
            "run",
            "--data-dir",
            str(tmp_path),
            "--weight-dir",
            "missing",
            "--mmlu-dir",
            str(mmlu_dir),
            "--subjects",
            "global_facts",
            "--limit",
            "1",
            "--device",
            "cpu",
            "--output-dir",
            str(tmp_path / "runs"),
            "--no-progress",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmlubench: error: {tmp_path / 'missing'}")
    assert "Traceback" not in err


def test_demo(tmp_path, capsys):
    rc = main(["demo", "--dir", str(tmp_path), "--engine", "eager", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("DEMO:")
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    assert result["case"] == "demo" and result["metrics"]["questions"] == 36
    assert len(predictions(run_dir)) == 36
    assert table_lines(out)[2].startswith("| eager | fp32 |")


def test_batched_left_padded_eager_matches_batch_one(mmlu_dir, tokenizer, tiny_model):
    """Length-sorted batches of 8 with left padding give batch-1 logits (fp32, 1e-4).

    Sensitive enough: without the attention mask and the position ids, the same batches are
    off by ~0.2 (with either one alone, transformers still finds where each row starts)."""
    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import build_prompts
    from mmlubench.engines import engine_class, engine_options
    from mmlubench.engines.base import Request

    ds = load_mmlu(mmlu_dir, "test", ["global_facts", "high_school_us_history"], limit=6)
    prompts = build_prompts(ds, tokenizer)
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    lengths = sorted({len(r.ids) for r in requests})
    assert len(lengths) >= 8 and lengths[-1] > 3 * lengths[0]  # really ragged batches

    def last_logits(n: int = len(requests), **options) -> torch.Tensor:
        cls = engine_class("eager")
        engine = cls(tiny_model, engine_options("eager", options), "cpu")
        out = torch.full((n, 102400), float("nan"))
        with torch.inference_mode():
            batches = engine.plan(requests[:n])
            for batch in batches:
                out[batch.rows] = engine.forward(engine.load(batch)).float()
        return out, batches

    one, batches1 = last_logits(method="padded", batch_size=1)
    eight, batches8 = last_logits(method="padded", batch_size=8)
    assert len(batches1) == 12 and [len(b.rows) for b in batches8] == [8, 4]
    assert torch.isfinite(one).all() and torch.isfinite(eight).all()
    assert (eight - one).abs().max().item() < 1e-4
    assert torch.equal(one.argmax(-1), eight.argmax(-1))
    # Batch 1 is the plain HF call, last position, computed here without the engine.
    with torch.inference_mode():
        for k in (0, 7, 11):
            ids = torch.from_numpy(np.asarray(requests[k].ids, dtype=np.int64))[None]
            assert ids[0, 0] == BOS
            direct = tiny_model(input_ids=ids).logits[0, -1]
            torch.testing.assert_close(one[k], direct, rtol=1e-5, atol=1e-5)
    # The reference's call: batch 1, logits at every position (the short prompts only: the
    # logits of a 2000-token prompt alone take 0.8 GB).
    full, _ = last_logits(6, method="reference")
    assert (full - one[:6]).abs().max().item() < 1e-5
