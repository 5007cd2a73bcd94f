"""Metric formulas on synthetic numbers, the peak-FLOPs table, FLOPs per token, FLOP counts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mmlubench.config.config import parse_flops_per_token
from mmlubench.results.metrics import ModelShape, mfu, peak_flops, throughput, work_flops


def test_reference_mfu():
    """REFERENCE.md: 2 x 7e9 x 10338.8 / 312e12 = 46.4%."""
    value = mfu(2 * 7e9, 10338.8, 312e12)
    assert value == pytest.approx(0.46392, abs=1e-5)
    assert round(100 * value, 1) == 46.4
    # The sibling cases of the same table: llama2_7b 10052.2 tok/s -> 45.1%.
    assert round(100 * mfu(2 * 7e9, 10052.2, 312e12), 1) == 45.1
    # Spread over devices, the peak is multiplied.
    assert mfu(2 * 7e9, 10338.8, 312e12, devices=2) == pytest.approx(value / 2)


def test_mfu_unknown_inputs_are_none():
    assert mfu(None, 1000.0, 312e12) is None
    assert mfu(1e9, None, 312e12) is None
    assert mfu(1e9, 1000.0, None) is None
    assert mfu(1e9, 1000.0, 0.0) is None


def test_throughput():
    # The reference: p_infer_core = tokens / core seconds. 9_973_265 tokens in 964.6 s.
    assert throughput(9_973_265, 964.6) == pytest.approx(10339.27, abs=0.01)
    assert throughput(100, 4.0) == 25.0
    assert throughput(100, 0.0) is None


@pytest.mark.parametrize(
    "name,precision,expected",
    [
        ("NVIDIA H100 80GB HBM3", "fp16", 989.4e12),  # H100 SXM5
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
        ("NVIDIA H100 80GB HBM3", "fp32", 66.9e12),
        ("NVIDIA H100 PCIe", "fp16", 756.5e12),
        ("NVIDIA H100 NVL", "bf16", 835.5e12),
        ("NVIDIA H200", "fp16", 989.4e12),
        ("NVIDIA H200 NVL", "fp16", 835.5e12),
        ("NVIDIA H20", "fp16", 148e12),
        ("NVIDIA A100-SXM4-40GB", "fp16", 312e12),  # the reference's GPU
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA A100 80GB PCIe", "fp32", 19.5e12),
        ("NVIDIA A800-SXM4-80GB", "fp16", 312e12),
        ("NVIDIA L40S", "fp16", 362.05e12),
        ("NVIDIA L40", "fp16", 181.05e12),
        ("NVIDIA L4", "fp16", 121e12),
        ("NVIDIA A10", "fp16", 125e12),
        ("Tesla V100-SXM2-16GB", "fp16", 125e12),
        ("Tesla V100-PCIE-32GB", "fp16", 112e12),
        ("Tesla V100-SXM2-16GB", "bf16", None),  # no BF16 on V100
        ("NVIDIA GeForce RTX 4090", "fp16", 165.2e12),
        ("NVIDIA GH200 480GB", "fp16", 989.4e12),  # the H100's Hopper GPU
        ("NVIDIA B200", "bf16", 2250e12),
        ("AMD Instinct MI300X", "fp16", 1307.4e12),  # ROCm's torch.cuda.get_device_name
        ("AMD Instinct MI300X", "fp32", 163.4e12),
        ("AMD Instinct MI325X", "bf16", 1307.4e12),
        ("AMD Instinct MI250X", "fp16", 383e12),
        ("AMD Instinct MI210", "fp16", 181e12),
        # Unknown devices: never a guessed number.
        ("AMD EPYC 7B13", "fp32", None),
        ("AMD Instinct MI300A", "fp16", None),  # not the MI300X
        ("NVIDIA A10G", "fp16", None),  # not the A10
        ("NVIDIA RTX A1000 Laptop GPU", "fp16", None),  # not an A100
        ("NVIDIA H800", "fp16", None),
        ("Tesla V100S-PCIE-32GB", "fp16", None),
        ("", "fp16", None),
        (None, "fp16", None),
    ],
)
def test_peak_flops_table(name, precision, expected):
    assert peak_flops(name, precision) == expected


@pytest.mark.parametrize(
    "expr,n_params,expected",
    [
        ("2*7e9", None, 1.4e10),
        (" 2 * 7e9 ", None, 1.4e10),
        ("14000000000", None, 1.4e10),
        ("2*params", 6_910_365_696, 13_820_731_392.0),
        ("params*2", 1000, 2000.0),
        ("2*params", None, None),  # needs the model first
        ("6*1.5e9*2", None, 1.8e10),
    ],
)
def test_parse_flops_per_token(expr, n_params, expected):
    assert parse_flops_per_token(expr, n_params) == expected


@pytest.mark.parametrize("expr", ["abc", "", "2**7", "2+7e9", "2*", "0*7e9", "-2*7e9", "2*parms"])
def test_parse_flops_per_token_rejects(expr):
    with pytest.raises(ValueError):
        parse_flops_per_token(expr, 1000)


# deepseek-llm-7b-base, by hand: d = 4096, f = 11008, 30 layers, 32 heads, 32 KV heads (MHA).
D, F, L, V = 4096, 11008, 30, 102400
PER_LAYER = 4 * D * D + 3 * D * F  # q, k, v, o + gate, up, down = 202,375,168 weights
assert PER_LAYER == 202_375_168
DEEPSEEK_MATMUL_FLOPS = 2 * L * PER_LAYER  # 12,142,510,080 FLOPs per token
# All parameters: untied embedding and LM head, two RMSNorms per layer, a final norm.
DEEPSEEK_PARAMS = 2 * V * D + L * (PER_LAYER + 2 * D) + D


def test_model_shape_of_deepseek_7b(tokenizer_dir):
    config = SimpleNamespace(**json.loads((tokenizer_dir / "config.json").read_text()))
    shape = ModelShape.from_config(config)
    assert shape == ModelShape(
        layers=30, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=102400
    )
    assert shape.matmul_flops_per_token == 12_142_510_080 == DEEPSEEK_MATMUL_FLOPS
    assert shape.attention_flops_per_pair == 4 * D * L == 491_520
    assert shape.lm_head_flops_per_row == 2 * D * V == 838_860_800
    # "~6.9e9 parameters" (REFERENCE.md); 2*params is close to the reference's 2*7e9.
    assert DEEPSEEK_PARAMS == 6_910_365_696
    assert parse_flops_per_token("2*params", DEEPSEEK_PARAMS) == pytest.approx(1.382e10, rel=1e-3)


def test_model_shape_with_grouped_kv_heads():
    shape = ModelShape(layers=2, hidden=64, intermediate=128, heads=8, kv_heads=2, vocab=1000)
    # k and v project to 64 * 2 / 8 = 16 each.
    assert shape.matmul_flops_per_token == 2 * 2 * (64 * 64 + 2 * 64 * 16 + 64 * 64 + 3 * 64 * 128)
    config = SimpleNamespace(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=8,
        num_key_value_heads=None,
        vocab_size=1000,
    )
    assert ModelShape.from_config(config).kv_heads == 8  # missing KV heads: MHA


def test_work_flops():
    shape = ModelShape(layers=1, hidden=2, intermediate=3, heads=1, kv_heads=1, vocab=5)
    # per token 2 * (4 * 2 * 2 + 3 * 2 * 3) = 68; per pair 4 * 2 = 8; per row 2 * 2 * 5 = 20
    assert work_flops(shape, tokens=10, attention_pairs=55, logit_rows=3) == (
        10 * 68 + 55 * 8 + 3 * 20
    )
