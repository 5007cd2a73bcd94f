"""The ceiling's attention figure: FlexAttention on one real pack, as the shared-prefix engine
runs it (its planner's pack and block sparsity, its mask function, its kernel options).

The pack comes from `engines.packing.plan_packs` on the run's prompts (or, for `mmlubench
ceiling` alone, on MMLU prompts when a data folder is given, else on a synthetic layout with
MMLU's shape). FLOPs count 4 x head_dim x heads per (query, key) pair the mask allows.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmlubench.ceiling import kernels
from mmlubench.device import accel
from mmlubench.device.vendors.base import Vendor
from mmlubench.engines.base import Request
from mmlubench.results.ceiling_sections import AttentionPack, ModelDims, Reading

# A synthetic MMLU-like layout (the deepseek tokenizer on the test split: ~540-token few-shot
# prefixes, median question suffix 76 tokens, longest 1037): two subjects of 300 questions.
SYNTHETIC_PREFIX, SYNTHETIC_SUFFIX_MEDIAN, SYNTHETIC_QUESTIONS = 540, 76, 300


def synthetic_requests(seed: int = 0) -> list[Request]:
    """Requests with MMLU's layout (token ids are irrelevant to the attention kernel's speed)."""
    rng = np.random.default_rng(seed)
    out = []
    for subject in range(2):
        prefix = np.full(SYNTHETIC_PREFIX, 10 + subject, np.int64)
        lengths = np.clip(
            rng.lognormal(np.log(SYNTHETIC_SUFFIX_MEDIAN), 0.6, SYNTHETIC_QUESTIONS), 20, 1037
        ).astype(int)
        out += [
            Request(np.concatenate([prefix, np.full(n, 5, np.int64)]), SYNTHETIC_PREFIX)
            for n in lengths
        ]
    return out


def attended_pairs(seg: np.ndarray, ps: np.ndarray, pe: np.ndarray) -> int:
    """(query, key) pairs a pack's mask allows (no carry): query t sees keys [seg[t], t] and
    [ps[t], pe[t])."""
    t = np.arange(len(seg), dtype=np.int64)
    return int((t - seg + 1).sum() + (pe.astype(np.int64) - ps).sum())


def pick_pack(
    requests: Sequence[Request], pack_tokens: int, max_questions: int, block_size: int
) -> Any:
    """The median pack (by attended pairs) of the requests that fit in `pack_tokens`, planned
    without a carry; None when none fits."""
    from mmlubench.engines.packing import plan_packs

    fitting = [r for r in requests if len(r.ids) <= pack_tokens]
    if not fitting:
        return None
    packs = [b.payload for b in plan_packs(fitting, pack_tokens, max_questions, True, block_size)]
    packs.sort(key=lambda p: attended_pairs(p.seg_start, p.pre_start, p.pre_end))
    return packs[len(packs) // 2]


def describe(pack: Any, source: str, block_size: int) -> AttentionPack:
    return AttentionPack(
        source=source,
        pack_tokens=len(pack.ids),
        block_size=block_size,
        questions=len(pack.last),
        computed_tokens=int(pack.work.tokens),
        attended_pairs=attended_pairs(pack.seg_start, pack.pre_start, pack.pre_end),
        partial_blocks=int(pack.blocks[0].sum()),
        full_blocks=int(pack.blocks[2].sum()),
    )


def block_mask(pack: Any, block_size: int, device: torch.device) -> Any:
    """The engine's mask (carry 0) for `pack`: its host-computed block sparsity plus the
    per-token mask function on device buffers."""
    from torch.nn.attention.flex_attention import BlockMask

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    seg, ps, pe = (put(a.astype(np.int32)) for a in (pack.seg_start, pack.pre_start, pack.pre_end))

    def mask_mod(b, h, q_idx, kv_idx):
        own = (kv_idx >= seg[q_idx]) & (kv_idx <= q_idx)
        prefix = (kv_idx >= ps[q_idx]) & (kv_idx < pe[q_idx])
        return own | prefix

    blocks = [put(a)[None, None] for a in pack.blocks]
    return BlockMask.from_kv_blocks(*blocks, BLOCK_SIZE=block_size, mask_mod=mask_mod)


def attention(
    dims: ModelDims,
    pack: Any,
    block_size: int,
    label: str,
    device: torch.device,
    vendor: Vendor | None,
    budget: kernels.Budget,
    timer: str,
    kernel_options: dict | None = None,
) -> tuple[Reading, float]:
    """(the Reading, seconds the kernel took to compile) of one layer's attention on `pack`.

    Compiled on accelerators, as in the engine; eager on the CPU (its unfused reference
    implementation: compiling it there takes longer than a CPU step should)."""
    from torch.nn.attention.flex_attention import flex_attention

    T, H, KV, hd = len(pack.ids), dims.heads, dims.kv_heads, dims.head_dim
    dtype = kernels.DTYPES[label]
    q = torch.randn(1, H, T, hd, device=device, dtype=dtype)
    k = torch.randn(1, KV, T, hd, device=device, dtype=dtype)
    v = torch.randn(1, KV, T, hd, device=device, dtype=dtype)
    mask = block_mask(pack, block_size, device)
    flex = (
        flex_attention
        if device.type == "cpu"
        else torch.compile(flex_attention, dynamic=False, fullgraph=True)
    )

    def fn() -> torch.Tensor:
        return flex(q, k, v, block_mask=mask, enable_gqa=KV != H, kernel_options=kernel_options)

    t = time.perf_counter()
    with warnings.catch_warnings():  # the CPU's eager call warns that it is unfused: it is
        warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
        fn()  # compiles
    accel.synchronize(device)
    compile_s = time.perf_counter() - t
    pairs = attended_pairs(pack.seg_start, pack.pre_start, pack.pre_end)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
        reading = kernels.measure(
            "attention",
            label,
            [T, H, KV, hd],
            fn,
            device,
            vendor,
            budget,
            timer,
            flops=float(pairs * dims.attention_flops_per_pair),
        )
    return reading, compile_s
