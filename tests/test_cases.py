"""The packaged cases: their reference rows, and `mmlubench run --config <case> --random-weights`
end to end on the CPU for each (tiny model from the case's config, its real tokenizer)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from case_helpers import CASES, CONFIGS, make_model_dir, model_files
from conftest import read_rows, reference_text

from mmlubench.cli.main import main
from mmlubench.config.cases import format_cases, packaged_cases, parse_reference, vs_reference
from mmlubench.config.config import load_config
from mmlubench.errors import ConfigError

# The peak the reference divides by (A100 fp16 312 TFLOP/s; fp32 rows count TF32, 156).
A100_PEAK = {"fp16": 312e12, "fp32": 156e12}
FLOPS = {"deepseek_7b_mmlu": 2 * 7e9, "llama2_7b_mmlu": 2 * 7e9, "llama3_8b_mmlu": 2 * 8e9}
FLOPS_EXPR = {"deepseek_7b_mmlu": "2*7e9", "llama2_7b_mmlu": "2*7e9", "llama3_8b_mmlu": "2*8e9"}
SUBJECTS = ["abstract_algebra", "global_facts"]


@pytest.mark.parametrize("case", CASES)
def test_case_config(case):
    cfg = load_config(CONFIGS / f"{case}.yaml")
    assert cfg.case == case
    assert cfg.weight_dir == case.replace("_mmlu", "_hf")  # FlagPerf's parameters.yaml names
    assert math.prod(float(f) for f in cfg.flops_per_token.split("*")) == FLOPS[case]
    assert cfg.hf_repo and "/" in cfg.hf_repo
    rows = parse_reference(cfg.reference)
    assert "fp16" in rows
    for precision, row in rows.items():
        # The README's MFU is its own p_infer_core x flops / peak, to the digit it prints.
        mfu = FLOPS[case] * row.p_infer_core_tok_per_s / A100_PEAK[precision]
        assert round(mfu, 3) == row.mfu
        assert row.device == "NVIDIA A100-SXM4-40GB"
        assert row.source == f"FlagOpen/FlagPerf inference/benchmarks/{case}/README.md"
        assert row.p_val_whole_tok_per_s < row.p_val_core_tok_per_s  # whole time >= core time
        assert row.p_infer_whole_tok_per_s < row.p_infer_core_tok_per_s


def test_cases_listing():
    text = format_cases(packaged_cases())
    for case in CASES:
        assert f"{case}  ({case}.yaml)" in text
    assert "weight folder: DATA_DIR/llama3_8b_hf" in text
    assert "MFU 46.4%, acc 65.2%/65.2%, mem 34.5/40 GiB" in text


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"fp8": {}}, "reference.fp8: expected a precision"),
        ({"fp16": {"device": "x"}}, "reference.fp16: missing keys"),
        ({"fp16": "fast"}, "reference.fp16: expected a mapping"),
    ],
)
def test_bad_reference_is_named(tmp_path, bad, message):
    path = tmp_path / "case.yaml"
    path.write_text(json.dumps({"reference": bad}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_vs_reference_line():
    cfg = load_config(CONFIGS / "llama3_8b_mmlu.yaml")
    metrics = SimpleNamespace(
        precision="fp16",
        p_infer_core_tok_per_s=18102.6,
        p_infer_whole_tok_per_s=None,
        p_val_core_tok_per_s=7979.6,
        e2e_time_s=1207.5,
        acc_infer=0.1,
    )
    result = SimpleNamespace(
        config=SimpleNamespace(reference=cfg.reference), metrics=metrics, random_weights=True
    )
    line = vs_reference(result)
    assert "p_infer_core 18,102.6 vs 9,051.3 (2.00x)" in line
    assert "p_val_core 7,979.6 vs 7,979.6 (1.00x)" in line
    assert "e2e_time 1,207.5 vs 2,415.0 (0.50x)" in line
    assert "acc" not in line.split(";", 1)[1]  # random weights: no accuracy comparison
    metrics.precision = "bf16"  # no reference row in bf16
    assert vs_reference(result) is None


# FlagPerf's llama3_8b_mmlu ran without a BOS (docs/CASES.md); the other cases with one.
BOS_IN_PROMPT = {"deepseek_7b_mmlu": True, "llama2_7b_mmlu": True, "llama3_8b_mmlu": False}


def expected_tokens(case: str, mmlu_dir: Path, limit: int) -> int:
    """Prompt tokens of the sample, computed independently: the reference prompt text, the raw
    `tokenizers` library, one BOS prepended by hand where the case has one (no prompt here
    needs truncation)."""
    from tokenizers import Tokenizer

    files = model_files(case)
    raw = Tokenizer.from_file(str(files / "tokenizer.json"))
    bos = json.loads((files / "tokenizer_config.json").read_text(encoding="utf-8"))["bos_token"]
    bos = bos["content"] if isinstance(bos, dict) else bos
    total = 0
    for subject in SUBJECTS:
        dev = read_rows("dev", subject)
        for row in read_rows("test", subject)[:limit]:
            ids = [raw.token_to_id(bos)] * BOS_IN_PROMPT[case] + raw.encode(
                reference_text(subject, dev, row), add_special_tokens=False
            ).ids
            assert len(ids) < 2048
            total += len(ids)
    return total


@pytest.mark.parametrize("case", CASES)
def test_run_case_end_to_end(case, tmp_path, mmlu_dir):
    model_dir = make_model_dir(case, tmp_path / "model")
    out = tmp_path / "runs"
    args = [
        "run",
        "--config",
        str(CONFIGS / f"{case}.yaml"),
        "--data-dir",
        str(tmp_path),
        "--weight-dir",
        "model",
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
        "--random-weights",
        "--output-dir",
        str(out),
        "--no-progress",
        "--engine",
        "shared-prefix",  # deepseek's `engine: auto` is eager on CPU
        "--set",
        "engines.shared-prefix.compile=false",
        "--set",
        "engines.shared-prefix.pack_tokens=4096",
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    (run_dir,) = out.iterdir()
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    m = result["metrics"]
    assert result["case"] == case
    assert m["questions"] == 4
    assert m["prompt_tokens"] == expected_tokens(case, mmlu_dir, 2)
    # A tiny model is not the case's own: MFU counts 2 x its parameters, not the case's 2 x 7e9
    # (which gave a headline MFU of 39,518% on such a model), and the run says both.
    assert m["flops_per_token"] == 2 * result["model"]["n_params"] != FLOPS[case]
    assert any(
        w.startswith(f"the model is not case {case}'s own (hidden_size 64")
        for w in result["warnings"]
    )
    assert any(
        f"flops_per_token {FLOPS_EXPR[case]} is case {case}'s" in w for w in result["warnings"]
    )
    assert m["mfu"] is None or m["mfu"] <= 1.0
    real = json.loads((model_files(case) / "config.json").read_text(encoding="utf-8"))
    assert result["model"]["vocab_size"] == real["vocab_size"]
    assert (
        json.loads((model_dir / "config.json").read_text())["num_key_value_heads"]
        == result["model"]["num_key_value_heads"]
    )
    # Same weights in both passes: the same top token for every question.
    assert result["accuracy"]["agreement_val_infer"]["same_top_token"] == 1.0
    assert result["config"]["reference"]["fp16"]["source"].endswith(f"{case}/README.md")
    assert "| shared-prefix | fp32 |" in stdout.getvalue()
    if case == "llama2_7b_mmlu":  # FlagPerf's llama2 rule: the top token is the letter's token
        from tokenizers import Tokenizer

        raw = Tokenizer.from_file(str(model_files(case) / "tokenizer.json"))
        rows = [
            json.loads(line)
            for line in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        hits = sum(r["infer"]["top_id"] == raw.token_to_id("\u2581" + r["gold"]) for r in rows)
        assert result["accuracy"]["rule"] == "token"
        assert m["acc_infer"] == hits / len(rows)
        assert all(r["infer"]["token"] in ("", "A", "B", "C", "D") for r in rows)
    # Only Llama-2 has an fp32 reference row to compare an fp32 run with.
    assert ("vs reference (inductor on NVIDIA A100-SXM4-40GB, fp32" in stdout.getvalue()) == (
        case == "llama2_7b_mmlu"
    )


def test_token_rule():
    """`token`: right only when the top token is one of the four answer tokens (ids here are
    Llama-2's "\u2581A".."\u2581D"); any other token, even a bare "A", answers nothing."""
    from mmlubench.data.scoring import token_letter

    ids = [319, 350, 315, 360]
    assert [token_letter(i, ids) for i in ids] == ["A", "B", "C", "D"]
    assert token_letter(29909, ids) == ""  # "A" without the leading space


def test_llama3_prompts_have_no_bos_and_the_reference_truncation(tmp_path, mmlu_dir):
    """`mmlubench prompts --config llama3_8b_mmlu`: no BOS, and truncation by the reference's
    rule (drop examples while text tokens + 1 > 2048), computed here with raw `tokenizers`."""
    from conftest import truncate_reference
    from tokenizers import Tokenizer

    subject, limit = "high_school_european_history", 6
    model_dir = make_model_dir("llama3_8b_mmlu", tmp_path / "model")
    out = tmp_path / "prompts.jsonl"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "prompts",
                    "--config",
                    str(CONFIGS / "llama3_8b_mmlu.yaml"),
                    "--data-dir",
                    str(tmp_path),
                    "--weight-dir",
                    "model",
                    "--mmlu-dir",
                    str(mmlu_dir),
                    "--subjects",
                    subject,
                    "--limit",
                    str(limit),
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    dev = read_rows("dev", subject)
    dropped = 0
    for p, row in zip(got, read_rows("test", subject)[:limit], strict=True):
        text, ids, n = truncate_reference(
            reference_text(subject, dev, row), lambda t: raw.encode(t, add_special_tokens=False).ids
        )
        assert p["text"] == text and p["dropped"] == n
        assert p["ids"] == ids[1:]  # truncate_reference counts a BOS; this case has none
        assert p["ids"][0] != raw.token_to_id("<|begin_of_text|>")
        dropped += n
    assert dropped > 0, "the sample must include truncated prompts"


@pytest.mark.parametrize("case", CASES)
def test_case_model_is_matched_by_config(case):
    """Each family case names its model by config.json: the real config agrees (so its
    flops_per_token holds and `--model` picks the case), the tiny one does not."""
    from case_helpers import tiny_config

    from mmlubench.config.cases import case_for_model, model_differences
    from mmlubench.config.mfu import resolve_flops_per_token

    cfg = load_config(CONFIGS / f"{case}.yaml")
    real = json.loads((model_files(case) / "config.json").read_text(encoding="utf-8"))
    assert model_differences(real, cfg.model_config) == []
    assert case_for_model(real).name == case
    # The case's own model keeps the reference's 2 x 7e9, whatever its counted parameters.
    assert resolve_flops_per_token(cfg.flops_per_token, "case", case, [], 6_910_365_696) == (
        FLOPS[case],
        [],
    )
    tiny = tiny_config(real)
    assert model_differences(tiny, cfg.model_config)[0].startswith("hidden_size 64, the case's")
    assert case_for_model(tiny) is None
    differs = model_differences(tiny, cfg.model_config)
    value, warnings = resolve_flops_per_token(cfg.flops_per_token, "case", case, differs, 1000)
    assert value == 2000.0 and "MFU counts 2*params = 2000" in warnings[0]


def test_given_flops_per_token_is_used_and_checked():
    """A value the user gives is used as given; far from 2 x params it warns."""
    from mmlubench.config.mfu import resolve_flops_per_token

    assert resolve_flops_per_token("2*7e9", "user", "mmlu", None, 6_910_365_696) == (1.4e10, [])
    value, warnings = resolve_flops_per_token("2*7e9", "user", "mmlu", [], 135_000_000)
    assert value == 1.4e10 and "is 51.85x 2*params" in warnings[0]
    # 2*params counts the active parameters (a MoE's experts a token is not routed to left out)
    assert resolve_flops_per_token("2*params", "case", "mmlu", None, 12_900_000_000) == (
        2.58e10,
        [],
    )
    cfg = load_config(CONFIGS / "mmlu.yaml", None, {"flops_per_token": "2*7e9"})
    assert cfg.flops_per_token_set_by == "user"
    assert load_config(CONFIGS / "deepseek_7b_mmlu.yaml").flops_per_token_set_by == "case"
