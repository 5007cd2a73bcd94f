"""The shared-prefix planner's block layout checked against FlexAttention's own
`create_block_mask` of the same mask (the independent reference)."""

from __future__ import annotations

import numpy as np
import torch

from mmlubench.engines.packing import Pack, block_layout


def assert_layout_matches_flex(p: Pack, tokens: int, block: int, carry: int = 0) -> None:
    """`block_layout` of pack `p` (queries: its `tokens` positions; keys: `carry` carried
    ones, then the pack's) names the blocks `create_block_mask` finds, partial and full."""
    from torch.nn.attention.flex_attention import create_block_mask

    seg, ps, pe = (
        torch.from_numpy(a.astype(np.int64)) for a in (p.seg_start, p.pre_start, p.pre_end)
    )

    def mask_mod(_b, _h, q, kv):
        return ((kv >= seg[q]) & (kv <= q + carry)) | ((kv >= ps[q]) & (kv < pe[q]))

    ref = create_block_mask(
        mask_mod, None, None, tokens, carry + tokens, device="cpu", BLOCK_SIZE=block
    )
    n, idx, full_n, full_idx = block_layout(p.seg_start, p.pre_start, p.pre_end, block, carry)
    assert np.array_equal(n, ref.kv_num_blocks[0, 0].numpy())
    assert np.array_equal(full_n, ref.full_kv_num_blocks[0, 0].numpy())
    for i in range(len(n)):
        assert set(idx[i, : n[i]]) == set(ref.kv_indices[0, 0, i, : n[i]].tolist())
        assert set(full_idx[i, : full_n[i]]) == set(
            ref.full_kv_indices[0, 0, i, : full_n[i]].tolist()
        )
