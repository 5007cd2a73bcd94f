"""The fp8 recipe (engines/fp8.py) against an independent float reference, on CPU in fp32.

Golden values are computed here without the code under test: e4m3 rounding by the nearest of
the 253 finite float8_e4m3fn values decoded from their bit fields (not torch's cast), scales in
float64 from numpy, and the model path through the HF modules with dequantized weights and
hooks that fake-quantize each linear layer's input. The FP8 kernel itself (torch._scaled_mm on
the tensor cores) is checked on the device by bench/parity.py --only ...,fp8.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG

from mmlubench.engines import engine_class, engine_options, fp8
from mmlubench.engines.base import Request
from mmlubench.errors import RunError
from mmlubench.results.metrics import peak_flops


def e4m3_values() -> np.ndarray:
    """Every finite non-negative float8_e4m3fn value, sorted: 4 exponent bits (bias 7), 3
    mantissa bits, subnormals at exponent 0, and S.1111.111 is NaN (no infinities)."""
    values = [m / 8 * 2.0**-6 for m in range(8)]
    values += [
        (1 + m / 8) * 2.0 ** (e - 7) for e in range(1, 16) for m in range(8) if (e, m) != (15, 7)
    ]
    return np.array(sorted(values))


E4M3 = e4m3_values()


def round_e4m3(v: np.ndarray) -> np.ndarray:
    """Nearest e4m3 value of each element (v within +-448), by search in the value table."""
    mag = np.abs(v)
    hi = np.clip(np.searchsorted(E4M3, mag), 1, len(E4M3) - 1)
    lo = hi - 1
    nearest = np.where(mag - E4M3[lo] <= E4M3[hi] - mag, E4M3[lo], E4M3[hi])
    return np.sign(v) * nearest


def expected_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dequantizable e4m3 values, scale per row) of a [M, K] array, as the recipe says: the
    largest magnitude of each row maps to 448. Scales divide in float32, as on the device."""
    scale = np.abs(x).max(axis=1, keepdims=True).astype(np.float32) / np.float32(448)
    scaled = (x.astype(np.float32) / scale).astype(np.float64)
    return round_e4m3(scaled), scale


def test_e4m3_table_is_the_format():
    assert len(E4M3) == 127 and E4M3[-1] == 448 == torch.finfo(torch.float8_e4m3fn).max
    assert E4M3[1] == 2.0**-9  # the smallest subnormal


def test_weights_get_one_scale_per_output_channel(tiny_model):
    for name, w in [
        ("q_proj", tiny_model.model.layers[0].self_attn.q_proj.weight),
        ("down_proj", tiny_model.model.layers[1].mlp.down_proj.weight),
    ]:
        w_q, scale = fp8.quantize_weight(w)
        want_q, want_scale = expected_rows(w.numpy())
        assert w_q.dtype == torch.float8_e4m3fn and w_q.shape == w.shape, name
        assert scale.shape == (1, w.shape[0]) and scale.dtype == torch.float32, name
        np.testing.assert_allclose(scale.numpy()[0], want_scale[:, 0], rtol=1e-7)
        assert np.array_equal(w_q.float().numpy(), want_q), name
        # each row's largest weight is exactly +-448 after scaling
        assert np.array_equal(np.abs(w_q.float().numpy()).max(axis=1), np.full(w.shape[0], 448))


def test_activations_get_one_scale_per_token(tiny_model):
    torch.manual_seed(0)
    ids = torch.tensor([100000, 5, 17, 4242, 99])
    # tokens of very different magnitudes: one scale per token, not one per tensor
    x = tiny_model.model.embed_tokens(ids) * torch.tensor([1e-3, 1, 30, 1e3, 6e4])[:, None]
    x_q, scale = fp8.quantize_rows(x)
    want_q, want_scale = expected_rows(x.numpy())
    assert scale.shape == (5, 1)
    np.testing.assert_allclose(scale.numpy(), want_scale, rtol=1e-7)
    assert np.array_equal(x_q.float().numpy(), want_q)


def test_saturation_and_zero_rows():
    x = torch.tensor([[448.0, -1e5, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-2.0, 1.0, 1e-30, 0.5]])
    x_q, scale = fp8.quantize_rows(x)
    got = x_q.float()
    assert torch.isfinite(got).all() and torch.isfinite(scale).all()
    assert got[0, 1] == -448 and got[2, 0] == -448  # the row's largest magnitude saturates
    assert torch.equal(got[1], torch.zeros(4))  # a row of zeros stays zeros, no 0/0
    # values above +-448 after scaling never reach the cast (it would give NaN): clamped
    big = torch.full((1, 16), 448.0) * (1 + 2**-20)
    assert fp8.quantize_rows(big)[0].float().max() == 448


def test_reference_linear_is_the_dequantized_product(tiny_model):
    w = tiny_model.model.layers[0].mlp.gate_proj.weight  # [64, 32]
    x = torch.randn(7, 32, generator=torch.Generator().manual_seed(3)) * 5
    w_q, w_scale = fp8.quantize_weight(w)
    got = fp8.fp8_linear_reference(x, w_q, w_scale)
    xq, xs = expected_rows(x.numpy())
    wq, ws = expected_rows(w.numpy())
    want = (xq * xs) @ (wq * ws).T
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_scaled_mm_kernel_matches_the_reference_on_cpu(tiny_model):
    """The call as made on the device (column-major weight, [M,1] and [1,N] scales) through
    torch's CPU implementation of _scaled_mm, with an fp32 result."""
    w = tiny_model.model.layers[0].self_attn.o_proj.weight
    x = torch.randn(48, 32, generator=torch.Generator().manual_seed(4))
    w_q, w_scale = fp8.quantize_weight(w)
    got = fp8.fp8_linear(x, w_q, w_scale, out_dtype=torch.float32)
    torch.testing.assert_close(got, fp8.fp8_linear_reference(x, w_q, w_scale), rtol=1e-5, atol=1e-5)


def fake_quantized_hf_model(model):
    """An independent fp8 model: the HF modules with each decoder linear weight replaced by its
    dequantized e4m3 value, and a pre-hook that fake-quantizes each linear input per token."""
    model = copy.deepcopy(model)

    def hook(module, args):
        (x,) = args
        flat = x.reshape(-1, x.shape[-1]).double().numpy()
        q, scale = expected_rows(flat)
        return (torch.from_numpy(q * scale).to(x.dtype).reshape(x.shape),)

    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj):
            q, scale = expected_rows(lin.weight.numpy())
            lin.weight.copy_(torch.from_numpy(q * scale))
            lin.register_forward_pre_hook(hook)
    return model


def last_logits(model, name, requests, **options):
    from bench.logits import KeepLogits
    from mmlubench.run.passes import run_pass

    engine = KeepLogits(
        engine_class(name)(model, engine_options(name, options), "cpu"), len(requests)
    )
    run_pass(name, engine, requests, [0, 1, 2, 3], progress=False)
    return engine.logits


def test_fp8_engine_matches_an_independent_fake_quantized_model(monkeypatch, tokenizer, mmlu_dir):
    """The shared-prefix engine with fp8 on, its FP8 kernel replaced by the float reference
    (CPU has no FP8 units): same logits as the HF model computing the recipe by itself."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import build_prompts

    torch.manual_seed(2)
    model = LlamaForCausalLM(LlamaConfig(**TINY_CONFIG)).eval().requires_grad_(False)
    prompts = build_prompts(load_mmlu(mmlu_dir, "test", ["abstract_algebra"], limit=16), tokenizer)
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    packs = engine_class("shared-prefix")(
        copy.deepcopy(model),
        engine_options("shared-prefix", {"pack_tokens": 1024, "compile": False}),
        "cpu",
    ).plan(requests)
    assert len(packs) > 1, "the sample must span packs (the prefix carried over)"
    want = last_logits(fake_quantized_hf_model(model), "eager", requests, batch_size=1)
    monkeypatch.setattr(fp8, "check_device", lambda device: None)
    monkeypatch.setattr(fp8, "scaled_mm_out_dtype", lambda device: torch.float32)
    monkeypatch.setattr(fp8, "fp8_linear", fp8.fp8_linear_reference)
    got = last_logits(model, "shared-prefix", requests, pack_tokens=1024, compile=False, fp8=True)
    plain = last_logits(model, "shared-prefix", requests, pack_tokens=1024, compile=False)
    assert (got - want).abs().max().item() <= 1e-4
    # the quantization changed something: the comparison can tell fp8 from fp32
    assert (plain - want).abs().max().item() > 1e-3


def test_fp8_engine_refuses_cpu(tiny_model):
    with pytest.raises(RunError, match=r"precision fp8 needs FP8 matrix units.*device cpu"):
        engine_class("shared-prefix")(
            copy.deepcopy(tiny_model), engine_options("shared-prefix", {"fp8": True}), "cpu"
        )


def test_fp8_on_cpu_is_one_line_through_the_cli(tmp_path, tiny_model_dir, mmlu_dir, capsys):
    from mmlubench.cli.main import main

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
            "cpu",
            "--precision",
            "fp8",
            "--random-weights",
            "--output-dir",
            str(tmp_path / "runs"),
            "--no-progress",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "mmlubench: error: command line: key 'precision': fp8 needs FP8 matrix units"
    )
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"precision": "fp8", "device": "cuda", "engine": "eager"}, "precision"),
        (
            {
                "precision": "fp8",
                "device": "cuda",
                "engine": "shared-prefix",
                "val_engine": "shared-prefix",
            },
            "val_engine",
        ),
        (
            {"precision": "fp16", "engines": {"shared-prefix": {"fp8": True}}},
            "engines.shared-prefix.fp8",
        ),
    ],
)
def test_fp8_config_errors_name_the_key(overrides, key):
    from mmlubench.config.config import load_config
    from mmlubench.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"key '{key}'"):
        load_config(overrides=overrides)


def test_fp8_config_turns_the_engine_option_on():
    from mmlubench.config.config import load_config

    cfg = load_config(overrides={"precision": "fp8", "device": "cuda"})
    assert cfg.engine == "shared-prefix" and cfg.engines["shared-prefix"]["fp8"] is True
    again = load_config(overrides={**cfg.to_dict(), "case": cfg.case})  # a resumed run's
    assert again.engines["shared-prefix"]["fp8"] is True


def test_fp8_peaks_are_dense_fp8_rates():
    assert peak_flops("NVIDIA H100 80GB HBM3", "fp8") == 1978.9e12
    assert peak_flops("NVIDIA H200", "fp8") == 1978.9e12
    assert peak_flops("NVIDIA H100 PCIe", "fp8") == 1513e12
    assert peak_flops("NVIDIA L40S", "fp8") == 733e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "fp8") is None  # no FP8 units


def test_fp8_results_show_the_label_the_recipe_and_both_rules(demo_run_dirs):
    import json

    from mmlubench.report.table import agreement_line, table_row
    from mmlubench.results import document
    from mmlubench.results.assemble import fp8_recipe

    data = json.loads((demo_run_dirs["inductor"] / "result.json").read_text(encoding="utf-8"))
    assert "precision_recipe" not in data["metrics"]  # an fp16 run has none
    data["metrics"] |= {"precision": "fp8", "precision_recipe": fp8_recipe()}
    result = document.from_json(data)
    assert table_row(result)[1] == "fp8 (e4m3, row-wise)"
    assert result.metrics.precision_recipe["layers"].startswith("every nn.Linear of the decoder")
    line = agreement_line(result)
    assert line.startswith("val (fp16) / infer (fp8) agreement")
    assert "reference rule" in line and "choices rule" in line
    assert result.to_json()["metrics"]["precision_recipe"] == fp8_recipe()


def test_agreement_reports_the_answer_letter_logits_distance():
    from types import SimpleNamespace

    from mmlubench.results.pass_sections import agreement

    val = SimpleNamespace(
        top_ids=np.array([5, 6, 7]),
        choice_logits=np.array([[1.0, 0, 0, 0], [3, 4, 0, 0], [0, 0, 0, 0]], dtype=np.float32),
        sample_logits={},
    )
    infer = SimpleNamespace(
        top_ids=np.array([5, 6, 8]),
        choice_logits=np.array([[1.0, 1, 0, 0], [3, 4, 0, 0], [1, 0, 0, 0]], dtype=np.float32),
        sample_logits={},
    )
    letters = {"reference": ["A", "B", "C"], "choices": ["A", "B", "C"], "token": ["A", "B", "C"]}
    agree = agreement({"val": val, "infer": infer}, {"val": letters, "infer": letters})
    # rows: ||(0,1,0,0)|| / ||(1,0,0,0)|| = 1, then 0; a val row of zeros has no ratio
    assert agree.letter_logits_rel_l2_mean == 0.5 and agree.letter_logits_rel_l2_max == 1.0
    assert agree.same_top_token == 2 / 3


def test_fp8_layer_compiles_to_one_graph(monkeypatch, tiny_model, tokenizer, mmlu_dir):
    """Compiled, the fp8 decoder layer (weights as (e4m3, scale) pairs) is one graph for all
    layers and packs, and computes what the uncompiled one does."""
    from torch._dynamo.utils import counters

    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import build_prompts

    prompts = build_prompts(load_mmlu(mmlu_dir, "test", ["global_facts"], limit=12), tokenizer)
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    monkeypatch.setattr(fp8, "check_device", lambda device: None)
    monkeypatch.setattr(fp8, "scaled_mm_out_dtype", lambda device: torch.float32)
    monkeypatch.setattr(fp8, "fp8_linear", fp8.fp8_linear_reference)
    model = copy.deepcopy(tiny_model)
    eager = last_logits(model, "shared-prefix", requests, pack_tokens=1024, compile=False, fp8=True)
    torch._dynamo.reset()
    counters.clear()
    compiled = last_logits(model, "shared-prefix", requests, pack_tokens=1024, fp8=True)
    assert counters["stats"]["unique_graphs"] == 1
    assert (compiled - eager).abs().max().item() <= 1e-4
