"""The measured ceiling on CPU, fp32, tiny shapes: the FLOP arithmetic against a hand count, the
attention pack's pair count against the mask evaluated densely, the step's figures consistent
with each other, and a fake vendor plug-in's clock and power reaching the readings, a run's
result.json (with each pass's ceiling_fraction), its table and `mmlubench ceiling`."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pytest
import torch

from mmlubench.ceiling import measure as ceiling
from mmlubench.ceiling.attention import attended_pairs, block_mask, pick_pack, synthetic_requests
from mmlubench.cli.main import main
from mmlubench.config.config import Config
from mmlubench.device.vendors.cpu import CpuVendor
from mmlubench.results.ceiling_sections import (
    Ceiling,
    ModelDims,
    PrecisionCeiling,
    at_ceiling,
    fraction,
)
from mmlubench.results.metrics import ModelShape

# GQA, and head_dim 32 where hidden / heads would be 16 (as Qwen3 and Gemma configs do).
DIMS = ModelDims(layers=2, hidden=64, intermediate=96, heads=4, kv_heads=2, head_dim=32, vocab=1000)
FAKE = """
from mmlubench.device.vendors.cpu import CpuVendor


class ClockVendor(CpuVendor):
    name = "clock"

    def device_name(self):
        return "Clocked Accelerator 1"

    def sm_clock_mhz(self):
        return 1234.0

    def power_w(self):
        return 42.5

    def limits(self):
        return {"power_limit_w": 300.0, "max_sm_clock_mhz": 2000.0}
"""


class ClockVendor(CpuVendor):
    def sm_clock_mhz(self):
        return 1234.0

    def power_w(self):
        return 42.5


def test_flops_by_hand():
    # Per layer, per token, 2 x N x K of: q/k/v [64 -> (4 + 2 + 2) x 32 = 256], o [128 -> 64],
    # gate/up [64 -> 192], down [96 -> 64].
    per_layer = 2 * (64 * 256 + 128 * 64 + 64 * 192 + 96 * 64)
    assert per_layer == 2 * 43008
    assert DIMS.decoder_flops_per_token == 2 * per_layer
    assert DIMS.decoder_gemms(10)["q/k/v"] == (10, 256, 64)
    assert DIMS.lm_head_flops_per_row == 2 * 64 * 1000
    assert DIMS.attention_flops_per_pair == 4 * 32 * 4
    # Where head_dim x heads == hidden it is metrics.ModelShape's count.
    dims = ModelDims(2, 64, 96, 4, 2, 16, 1000)
    shape = ModelShape(2, 64, 96, 4, 2, 1000)
    assert dims.decoder_flops_per_token == shape.matmul_flops_per_token
    assert dims.attention_flops_per_pair * dims.layers == shape.attention_flops_per_pair
    # Time at the ceiling: 1000 tokens, 5000 pairs, 3 logit rows at round rates.
    rates = PrecisionCeiling("fp32", None, 1e9, 2e9, None, 1e8, [])
    at = at_ceiling(DIMS, rates, 1000, 5000, 3, devices=2)
    gemm = 1000 * 172032 / 1e9 + 3 * 128000 / 2e9
    attention = 5000 * 512 * 2 / 1e8
    assert at.gemm_flops == 1000 * 172032 + 3 * 128000
    assert at.attention_flops == 5000 * 512 * 2
    assert at.gemm_time_s == pytest.approx(gemm / 2) and at.attention_time_s == pytest.approx(
        attention / 2
    )
    assert fraction(at, 2.0) == pytest.approx((gemm + attention) / 2 / 2.0)
    assert (
        at_ceiling(DIMS, PrecisionCeiling("fp32", None, 1e9, 2e9, None, None, []), 1, 1, 1) is None
    )  # no attention rate: no fraction


def test_pack_pairs_match_the_mask():
    pack = pick_pack(synthetic_requests(), 1024, 1024, 128)
    T = len(pack.ids)
    q, k = torch.arange(T)[:, None], torch.arange(T)[None, :]
    mask = block_mask(pack, 128, torch.device("cpu"))
    dense = mask.mask_mod(0, 0, q, k)
    assert attended_pairs(pack.seg_start, pack.pre_start, pack.pre_end) == int(dense.sum())
    # The planner's own count covers the real tokens; padding attends only itself.
    padding = T - pack.work.tokens
    assert int(dense.sum()) == pack.work.attention_pairs + padding


def test_step_figures_are_consistent():
    vendor = ClockVendor("cpu")
    c = ceiling.measure_device(
        torch.device("cpu"),
        vendor,
        ["fp32", "fp8"],
        DIMS,
        "tiny",
        synthetic_requests(),
        "synthetic",
        ceiling.PackOptions(),
    )
    assert c.timer == "synchronize+perf_counter" and c.gemm_tokens == 128
    fp32 = c.precisions["fp32"]
    by = {r.name: r for r in fp32.readings}
    assert list(by) == ["q/k/v", "o", "gate/up", "down", "lm_head", "square", "attention"]
    for r in fp32.readings:
        assert r.error is None and r.reps >= 2 and r.median_time_s > 0
        assert r.flops_per_s == pytest.approx(r.flops / r.median_time_s)
        assert r.sm_clock_mhz_median == 1234.0 and r.power_w_median == 42.5
    for name, (m, n, k) in DIMS.decoder_gemms(128).items():
        assert by[name].shape == [m, n, k] and by[name].flops == 2 * m * n * k
    assert by["lm_head"].shape == [c.pack.questions, 1000, 64]
    dec = [by[n] for n in ("q/k/v", "o", "gate/up", "down")]
    assert fp32.gemm_decoder_flops_per_s == pytest.approx(
        sum(r.flops for r in dec) / sum(r.median_time_s for r in dec)
    )
    lm = by["lm_head"]
    assert fp32.gemm_model_flops_per_s == pytest.approx(
        (2 * sum(r.flops for r in dec) + lm.flops)
        / (2 * sum(r.median_time_s for r in dec) + lm.median_time_s)
    )
    assert by["attention"].flops == c.pack.attended_pairs * DIMS.attention_flops_per_pair
    assert fp32.attention_flops_per_s == by["attention"].flops_per_s
    assert c.copy.moved_bytes == 2 * c.copy.shape[0]
    assert c.bandwidth_bytes_per_s == pytest.approx(c.copy.moved_bytes / c.copy.median_time_s)
    # fp8: the CPU has no FP8 units, so its decoder and square GEMMs are null, said why; its
    # LM head and attention run in fp16 as the engine's do.
    fp8 = {r.name: r for r in c.precisions["fp8"].readings}
    assert fp8["q/k/v"].error and "FP8" in fp8["q/k/v"].error and fp8["q/k/v"].flops is None
    assert c.precisions["fp8"].gemm_decoder_flops_per_s is None
    assert fp8["lm_head"].dtype == "fp16" and fp8["attention"].dtype == "fp16"
    assert Ceiling.from_json(json.loads(json.dumps(c.to_json()))).to_json() == c.to_json()


def test_enabled_by_default_on_accelerators_only():
    assert not ceiling.enabled(Config(device="cpu"))
    assert ceiling.enabled(Config(device="cpu", ceiling=True))
    assert ceiling.enabled(Config(device="cuda"))
    assert not ceiling.enabled(Config(device="cuda", ceiling=False))


@pytest.fixture
def clock_plugin(tmp_path, monkeypatch):
    """The fake plug-in above as an importable module, known by the name `clock`."""
    from mmlubench.device import vendors

    (tmp_path / "clock_vendor.py").write_text(FAKE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(vendors.BUILTIN, "clock", "clock_vendor:ClockVendor")
    yield
    sys.modules.pop("clock_vendor", None)


def cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0
    return out.getvalue()


def test_run_reports_against_the_ceiling(clock_plugin, tmp_path, tiny_model_dir, mmlu_dir):
    stdout = cli(
        "run",
        "--set",
        "vendor=clock",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--data-dir",
        str(tiny_model_dir.parent),
        "--weight-dir",
        tiny_model_dir.name,
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        "abstract_algebra,global_facts",
        "--limit",
        "3",
        "--random-weights",
        "--engine",
        "eager",
        "--no-progress",
        "--output-dir",
        str(tmp_path / "runs"),
        "--set",
        "ceiling=true",
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    doc = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    c = doc["ceiling"]
    assert c["vendor"] == "clock" and c["device_name"] == "Clocked Accelerator 1"
    assert c["power_limit_w"] == 300.0 and c["max_sm_clock_mhz"] == 2000.0
    assert c["pack"]["source"] == "the run's prompts"
    readings = c["precisions"]["fp32"]["readings"] + [c["copy"]]
    assert {r["sm_clock_mhz_median"] for r in readings} == {1234.0}
    assert {r["power_w_median"] for r in readings} == {42.5}
    dims, rates = ModelDims(**c["model"]), PrecisionCeiling.from_json(c["precisions"]["fp32"])
    for name in ("val", "infer"):
        p = doc["passes"][name]
        at = at_ceiling(dims, rates, p["computed_tokens"], p["attention_pairs"], p["logit_rows"])
        assert p["at_ceiling"]["time_s"] == pytest.approx(at.time_s)
        assert p["ceiling_fraction"] == pytest.approx(at.time_s / p["core_time_s"])
        assert f"{name}: mfu_computed" in stdout
    assert "measured ceiling (fp32, Clocked Accelerator 1" in stdout
    assert "ceiling_fraction" in stdout
    from mmlubench.report import html as html_report
    from mmlubench.results import document

    page = html_report.render(document.load(run_dir))
    assert "Against the measured ceiling" in page and "data:image/png;base64" in page


def test_ceiling_command(clock_plugin, tiny_model_dir, mmlu_dir):
    args = (
        "ceiling",
        "--set",
        "vendor=clock",
        "--device",
        "cpu",
        "--model-dir",
        str(tiny_model_dir),
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        "global_facts",
    )
    table = cli(*args)
    assert "| fp32 |" in table and "| 1,234 | 42 |" in table
    assert "MMLU test prompts (global_facts)" in table
    doc = json.loads(cli(*args, "--format", "json"))
    assert (
        doc["model"]["hidden"]
        == json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    )
    gemm = doc["precisions"]["fp32"]["readings"][0]
    assert gemm["sm_clock_mhz_median"] == 1234.0
    assert np.isfinite(doc["bandwidth_bytes_per_s"])
