"""FLOP accounting per architecture (metrics.ModelShape): counts by hand, and against the weight
matrices of the model transformers itself builds from each config (on the meta device: shapes
only, no memory)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmlubench.results.metrics import ModelShape

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARCHS = sorted(p.parent.name for p in (FIXTURES / "archs").glob("*/config.json"))
CASE_MODELS = ["deepseek-llm-7b-base", "llama-2-7b", "llama-3-8b", "smollm2-135m"]


def arch_config(name: str):
    from transformers import AutoConfig

    folder = FIXTURES / ("archs" if name in ARCHS else "tokenizers") / name
    return AutoConfig.from_pretrained(str(folder))


def small_configs() -> dict:
    """Architectures with no config carried: transformers' own config classes, small sizes
    (MoE with a shared expert and dense layers, MoE without, a two-matrix MLP)."""
    from transformers import GPTNeoXConfig, PhiConfig, Qwen2MoeConfig, Qwen3MoeConfig

    common = dict(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return {
        "qwen2_moe": Qwen2MoeConfig(
            **common,
            intermediate_size=96,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=80,
            num_experts=6,
            num_experts_per_tok=2,
            mlp_only_layers=[0],
            decoder_sparse_step=1,
        ),
        "qwen3_moe": Qwen3MoeConfig(
            **common,
            head_dim=24,
            intermediate_size=96,
            moe_intermediate_size=40,
            num_experts=8,
            num_experts_per_tok=3,
            decoder_sparse_step=2,
        ),
        "gpt_neox": GPTNeoXConfig(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=256,
        ),
        "phi": PhiConfig(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=256,
        ),
    }


def meta_model(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def weights_per_token(model, config) -> int:
    """Weights of the decoder layers' matrices a token passes through: every 2-D weight
    (nn.Linear and the routers' matrices); experts stacked in a 3-D tensor count only the
    top-k of them."""
    layers = model.get_decoder().layers
    total = 0.0
    for name, p in layers.named_parameters():
        if p.ndim == 3:  # [experts, out, in]
            total += p.numel() * config.num_experts_per_tok / p.shape[0]
        elif p.ndim == 2:
            total += p.numel()
        else:
            assert p.ndim == 1, name  # norms and biases: negligible, left out
    return int(total)


@pytest.mark.parametrize("name", ARCHS + CASE_MODELS)
def test_counts_match_the_model_transformers_builds(name):
    config = arch_config(name)
    shape = ModelShape.from_config(config)
    model = meta_model(config)
    assert shape.matmul_weights_per_token == weights_per_token(model, config)
    assert shape.matmul_flops_per_token == 2 * shape.matmul_weights_per_token
    assert shape.lm_head_flops_per_row == 2 * model.get_output_embeddings().weight.numel()


@pytest.mark.parametrize("name", ["qwen2_moe", "qwen3_moe", "gpt_neox", "phi"])
def test_counts_of_moe_and_two_matrix_mlps(name):
    config = small_configs()[name]
    shape = ModelShape.from_config(config)
    assert shape.matmul_weights_per_token == weights_per_token(meta_model(config), config)


def test_hand_counts():
    """Per-layer weights by hand, from the model cards' numbers."""
    qwen3 = ModelShape.from_config(arch_config("qwen3-8b"))
    # head_dim 128 given apart: q 4096x(32x128), k and v 4096x(8x128), o, SwiGLU 3x4096x12288
    per_layer = 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096 + 3 * 4096 * 12288
    assert qwen3.matmul_weights_per_token == 36 * per_layer == 6_945_767_424
    assert qwen3.attention_flops_per_pair == 4 * 32 * 128 * 36
    gemma3 = ModelShape.from_config(arch_config("gemma-3-270m"))
    # 4 heads of 256 (1024 wide, hidden 640), one KV head; GeGLU counts as gate, up, down
    per_layer = 640 * 1024 + 2 * 640 * 256 + 1024 * 640 + 3 * 640 * 2048
    assert gemma3.matmul_weights_per_token == 18 * per_layer == 100_270_080
    assert gemma3.attention_flops_per_pair == 4 * 1024 * 18  # not 4 x hidden x layers
    mixtral = ModelShape.from_config(arch_config("mixtral-8x7b-v0.1"))
    # router 4096x8 + 2 of 8 SwiGLU experts of 14336
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 8 + 2 * 3 * 4096 * 14336
    assert mixtral.matmul_weights_per_token == 32 * per_layer == 12_617_515_008
    # 46.7e9 parameters in all; 12.9e9 of them run per token (Mistral AI's figures)
    n_params = sum(p.numel() for p in meta_model(arch_config("mixtral-8x7b-v0.1")).parameters())
    assert n_params == pytest.approx(46.7e9, rel=1e-3)
    assert n_params - mixtral.idle_expert_params == pytest.approx(12.9e9, rel=1e-2)


def test_moe_shape_fields():
    shape = ModelShape.from_config(small_configs()["qwen2_moe"])
    assert (shape.experts, shape.experts_per_token, shape.moe_layers) == (6, 2, 3)
    # router 64x6, 2 experts of 32, shared expert of 80 and its 64x1 gate
    assert shape.matmul_weights_per_token == 4 * (2 * 64 * 64 + 2 * 64 * 32) + 3 * 64 * 96 + 3 * (
        64 * 6 + 2 * 3 * 64 * 32 + 3 * 64 * 80 + 64
    )
    dense = ModelShape.from_config(arch_config("llama-3.1-8b"))
    assert (dense.experts, dense.moe_layers, dense.idle_expert_params) == (0, 0, 0)
    assert ModelShape.from_config(small_configs()["gpt_neox"]).gated_mlp is False
