"""Tiny random models of many architectures, built from transformers' own config classes.

HF initialises biases to zero and norm weights to one, which would hide a bias or a norm the
engine under test skipped: `perturb` gives every bias, every norm weight and every expert
router noise. Windows are shorter than the MMLU prompts (~600-2048 tokens), so sliding-window
layers really cut the attention.
"""

from __future__ import annotations

import torch

VOCAB = 102400  # the deepseek tokenizer of the test fixtures
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    bos_token_id=100000,
    eos_token_id=100001,
    pad_token_id=100001,
    tie_word_embeddings=False,
)
WINDOW = 160

# name -> (config class, model class, config overrides)
ARCHS: dict[str, tuple[str, str, dict]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(attention_bias=True, mlp_bias=True)),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
    ),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=16, attention_bias=True)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=WINDOW, head_dim=16)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(
            sliding_window=WINDOW,
            head_dim=16,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
            tie_word_embeddings=True,
        ),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        dict(
            sliding_window=WINDOW,
            head_dim=16,
            query_pre_attn_scalar=16,
            layer_types=["sliding_attention", "full_attention"],
            rope_local_base_freq=10000.0,
        ),
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(sliding_window=WINDOW - 1)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict()),
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        dict(num_local_experts=4, num_experts_per_tok=2),
    ),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        dict(
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            head_dim=16,
            decoder_sparse_step=1,
            norm_topk_prob=True,
        ),
    ),
}


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Noise on every bias and every 1-D weight (norms): zeros and ones hide what is skipped."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def tiny_model(arch: str, seed: int = 0, **overrides) -> torch.nn.Module:
    import transformers

    config_cls, model_cls, extra = ARCHS[arch]
    config = getattr(transformers, config_cls)(**{**COMMON, **extra, **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config).eval()
    perturb(model, seed)
    return model.requires_grad_(False)
