"""The varlen split experiment (bench/varlen_split.py) computes the engine's packed attention.

Golden values: a dense softmax over the mask the engine's FlexAttention mask function states
(own segment causally, plus the prefix range), written out here with no varlen code; the packs
are the planner's, from real prompts, with a prefix carried across packs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.varlen_split import layout, split_attention
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts
from mmlubench.engines.base import Request
from mmlubench.engines.packing import plan_packs

C, T = 1024, 2048


def dense_attention(q, k, v, seg, ps, pe):
    """Masked softmax attention of q [T, H, D] over keys [C + T, Hkv, D]."""
    t = torch.arange(len(q))[:, None]
    kv = torch.arange(len(k))[None]
    seg, ps, pe = (torch.from_numpy(a.astype(np.int64))[:, None] for a in (seg, ps, pe))
    allowed = ((kv >= seg) & (kv <= t + C)) | ((kv >= ps) & (kv < pe))
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    s = torch.einsum("thd,khd->htk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("htk,khd->thd", torch.softmax(s.masked_fill(~allowed, -math.inf), -1), v)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_split_equals_masked_attention(mmlu_dir, tokenizer, kv_heads):
    prompts = build_prompts(
        load_mmlu(mmlu_dir, "test", ["abstract_algebra", "anatomy"], limit=14), tokenizer
    )
    packs = [
        b.payload
        for b in plan_packs(
            [Request(p.ids, p.prefix_len) for p in prompts], T, 1024, True, carry_tokens=C
        )
    ]
    assert any(p.carry_in_key is not None for p in packs), "a pack must use the carry"
    torch.manual_seed(0)
    for p in packs:
        fill = int(p.last.max()) + 1
        L = layout(p.seg_start, p.pre_start, p.pre_end, fill, 2048)
        q = torch.randn(T, 2, 8)
        k, v = torch.randn(C + T, kv_heads, 8), torch.randn(C + T, kv_heads, 8)
        tensors = [
            torch.from_numpy(a)
            for a in (L.cu_own, L.cu_q, L.cu_k, L.prefix_idx, L.has_prefix, L.lens)
        ]
        got = split_attention(q, k, v, C, *tensors, "flash")[:fill]
        want = dense_attention(q, k, v, p.seg_start, p.pre_start, p.pre_end)[:fill]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_too_many_prefix_keys_are_refused():
    seg = np.array([0, 0, 2, 2], np.int32)
    ps, pe = np.array([0, 0, 0, 0], np.int32), np.array([0, 0, 2, 2], np.int32)
    with pytest.raises(ValueError, match="need 2 keys; prefix_keys is 1"):
        layout(seg, ps, pe, 4, 1)
