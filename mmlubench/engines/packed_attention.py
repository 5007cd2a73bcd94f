"""The shared-prefix engine's attention, plugged into transformers' attention interface.

transformers' attention modules compute q/k/v (biases, q/k norms, RoPE: their own code) and
then call the function registered for `config._attn_implementation` with the module, q/k/v
[1, heads, T, head_dim] and the mask the model was given. The one registered here (`IMPL`):
- picks the pack's full block mask or, in a sliding-window layer, its window mask;
- puts the carried keys/values (the previous pack's prefix, `carry` slots) before the pack's
  own and, in place, leaves the next pack's carry in the same buffers;
- runs FlexAttention with the module's own scaling and soft-capping (GQA without repeating
  keys).
Masks and the carry index come as keyword arguments of the model's forward, which transformers
hands down to every attention call; the carry buffers and the window flag are attributes of
each attention module, so that all layers of one kind share one compiled graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from mmlubench.errors import RunError

IMPL = "mmlubench_packed"
ELSEWHERE = "use --engine eager, which runs the plain HF model"


def packed_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    softcap: float | None = None,
    s_aux: torch.Tensor | None = None,
    mmlu_masks: tuple | None = None,
    mmlu_carry_idx: torch.Tensor | None = None,
    mmlu_kernel_options: dict | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from torch.nn.attention.flex_attention import flex_attention

    if s_aux is not None or mmlu_masks is None:
        raise RunError(
            f"{type(module).__name__}: attention sinks are not supported by the "
            f"shared-prefix engine; {ELSEWHERE}"
        )
    mask = mmlu_masks[1] if module.mmlu_window else mmlu_masks[0]
    if query.device.type == "cpu":
        # Inductor's CPU FlexAttention template (torch 2.13) computed wrong results when q/k
        # were pointwise results of transposed views; contiguous heads-first inputs are right.
        query, key, value = query.contiguous(), key.contiguous(), value.contiguous()
    carry_k, carry_v = module.mmlu_carry_k, module.mmlu_carry_v
    if carry_k.shape[2]:  # a static shape: with no carry (C = 0) nothing is copied
        key, value = torch.cat([carry_k, key], dim=2), torch.cat([carry_v, value], dim=2)
        carry_k.copy_(key.index_select(2, mmlu_carry_idx))
        carry_v.copy_(value.index_select(2, mmlu_carry_idx))
    score_mod = None
    if softcap:

        def score_mod(score, b, h, q_idx, kv_idx):
            return softcap * torch.tanh(score / softcap)

    out = flex_attention(
        query,
        key,
        value,
        score_mod=score_mod,
        block_mask=mask,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
        kernel_options=mmlu_kernel_options,
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(IMPL, packed_attention)


def check_model(model: nn.Module) -> None:
    """One clear error for a model this engine cannot run, naming it and the engine that can."""
    arch = type(model).__name__
    cfg = model.config
    if getattr(cfg, "is_encoder_decoder", False):
        raise RunError(
            f"{arch} is an encoder-decoder model; the shared-prefix engine runs "
            f"decoder-only causal LMs; {ELSEWHERE}"
        )
    if not getattr(model, "_supports_flex_attn", False):
        raise RunError(
            f"{arch}: its transformers implementation does not support "
            f"attn_implementation='flex_attention', which the shared-prefix engine "
            f"builds on; {ELSEWHERE}"
        )
    decoder_layers(model)
    kinds = set(getattr(cfg, "layer_types", None) or ())
    if kinds - {"full_attention", "sliding_attention"}:
        raise RunError(
            f"{arch}: layer types {sorted(kinds)}: the shared-prefix engine runs "
            f"full and sliding-window attention layers only; {ELSEWHERE}"
        )


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers, each with a `self_attn` module (transformers' layout)."""
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not all(
        isinstance(getattr(layer, "self_attn", None), nn.Module) for layer in layers
    ):
        raise RunError(
            f"{type(model).__name__}: no decoder layers with self_attn at "
            f"model.layers; the shared-prefix engine needs transformers' decoder "
            f"layout; {ELSEWHERE}"
        )
    return list(layers)


def layer_windows(config: Any, layers: int) -> list[int | None]:
    """Each layer's sliding window in tokens (a query sees the keys of the last `window`
    positions, itself included, as transformers' sliding-window mask), None for full
    attention: from `layer_types` where the config has them, else one window for all layers
    (Mistral-style `sliding_window`, unless `use_sliding_window` is false)."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types is not None:
        return [window if t == "sliding_attention" else None for t in types[:layers]]
    if window and getattr(config, "use_sliding_window", True) is not False:
        return [int(window)] * layers
    return [None] * layers


def attach(
    layers: Sequence[nn.Module],
    windows: Sequence[int | None],
    carry: int,
    device: torch.device,
    dtype: torch.dtype,
) -> list[nn.Module]:
    """Give each layer's attention module its carry buffers ([1, kv heads, carry, head_dim],
    zeros: junk slots are masked, but 0 x NaN is NaN) and its window flag."""
    modules = []
    for layer, window in zip(layers, windows, strict=True):
        attn = layer.self_attn
        cfg = attn.config
        heads = cfg.num_attention_heads
        kv = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(attn, "head_dim", None) or cfg.hidden_size // heads
        shape = (1, kv, carry, head_dim)
        attn.register_buffer(
            "mmlu_carry_k", torch.zeros(shape, dtype=dtype, device=device), persistent=False
        )
        attn.register_buffer(
            "mmlu_carry_v", torch.zeros(shape, dtype=dtype, device=device), persistent=False
        )
        attn.mmlu_window = window is not None
        modules.append(attn)
    return modules


@contextlib.contextmanager
def implementation(model: nn.Module) -> Iterator[None]:
    """Every config of the model names the packed attention while the engine runs."""
    from transformers import PretrainedConfig

    register()
    configs = {
        id(m.config): m.config
        for m in model.modules()
        if isinstance(getattr(m, "config", None), PretrainedConfig)
    }
    was = {key: c._attn_implementation for key, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = IMPL
    try:
        yield
    finally:
        for key, c in configs.items():
            c._attn_implementation = was[key]


def call_kwargs(
    masks: tuple, carry_idx: torch.Tensor, kernel_options: dict | None
) -> dict[str, Any]:
    """What the model's forward hands down to every attention call."""
    return {"mmlu_masks": masks, "mmlu_carry_idx": carry_idx, "mmlu_kernel_options": kernel_options}


class MaskBuffers:
    """The block masks' metadata (key indices: keys are [C carried] + [T pack tokens], query
    t is key C + t), in buffers that keep their identity across packs, so the mask functions
    are the same objects for every pack and nothing recompiles."""

    def __init__(self, T: int, C: int, device: torch.device, window: int | None):
        def buffers(n: int) -> list[torch.Tensor]:
            return [torch.zeros(T, dtype=torch.int32, device=device) for _ in range(n)]

        self.full = buffers(3)  # own segment start, prefix start, prefix end
        self.windowed = buffers(3) if window else []
        self.mods = [mask_mod(self.full, C)] + ([mask_mod(self.windowed, C)] if window else [])

    def block_masks(
        self,
        meta: Sequence[torch.Tensor],
        blocks: Sequence[Sequence[torch.Tensor]],
        block_size: int,
    ) -> tuple:
        """(full mask, window mask or the full one) of one pack."""
        from torch.nn.attention.flex_attention import BlockMask

        for buf, value in zip(self.full + self.windowed, meta, strict=True):
            buf.copy_(value)
        masks = tuple(
            BlockMask.from_kv_blocks(*b, BLOCK_SIZE=block_size, mask_mod=mod)
            for b, mod in zip(blocks, self.mods, strict=True)
        )
        return masks if len(masks) == 2 else (masks[0], masks[0])


def mask_mod(meta: Sequence[torch.Tensor], C: int):
    seg, ps, pe = meta

    def mod(b, h, q_idx, kv_idx):
        own = (kv_idx >= seg[q_idx]) & (kv_idx <= q_idx + C)
        prefix = (kv_idx >= ps[q_idx]) & (kv_idx < pe[q_idx])
        return own | prefix

    return mod
