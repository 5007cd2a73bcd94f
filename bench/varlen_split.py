"""Packed attention as two variable-length attention calls merged by log-sum-exp: an experiment
of 2026-11-28, timed against FlexAttention by bench/attn_split.py. The engine does
not use it: on an H200 with torch 2.11 it did not beat FlexAttention (docs/DESIGN.md).

The shared-prefix engine's mask lets a suffix token see its prefix and its own segment. This
computes the same attention with two plain varlen calls of the vendor's flash kernels
(`backend`: "flash", PyTorch's FlashAttention-2, or "cudnn"):
1. own: every segment (a prefix, a question suffix, the padding) causally on itself;
2. prefix: each question suffix against its prefix's keys, gathered into one short compact
   tensor (`prefix_keys` long), with no mask at all.
A query's softmax over both key sets is the two partial softmaxes weighted by their
log-sum-exps, so the merged output equals the masked attention (tests/test_varlen_split.py: the
CPU form against a dense masked softmax on real pack layouts). The lengths the kernels need on
the host travel in a small CPU tensor, so a compiled caller could keep one graph. Compiled with
torch.compile (torch 2.11), the op's fake output strides did not match the kernel's (an error
bench/attn_split.py records); the timings are of the uncompiled form.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

BACKENDS = ("flash", "cudnn")


@dataclass
class VarlenLayout:
    """Host-side varlen description of one pack: cu_* are cumulative offsets (int32); lens
    (int64, on the CPU) are [own sequences, longest segment (twice: queries, keys), prefix
    sequences, longest query run, longest prefix]."""

    cu_own: np.ndarray  # segments over the pack's T tokens (queries and keys alike)
    cu_q: np.ndarray  # prefix call: query runs over the pack's T tokens
    cu_k: np.ndarray  # prefix call: key runs over the gathered prefix keys
    prefix_idx: np.ndarray  # [prefix_keys] key indices (carry + pack) gathered; padded with 0
    has_prefix: np.ndarray  # [T] bool: the token also sees a prefix
    lens: np.ndarray  # [6] int64, as the docstring lists them


def _runs(*columns: np.ndarray) -> np.ndarray:
    """Start index of every run of tokens equal in all `columns`, then T."""
    change = np.zeros(len(columns[0]) - 1, bool)
    for c in columns:
        change |= c[1:] != c[:-1]
    return np.concatenate([[0], np.flatnonzero(change) + 1, [len(columns[0])]])


def layout(
    seg_start: np.ndarray, pre_start: np.ndarray, pre_end: np.ndarray, fill: int, prefix_keys: int
) -> VarlenLayout:
    """The varlen calls of a pack whose tokens [fill, T) are padding (see packing.Pack: the
    arrays are key indices, pack token t is key carry + t). Raises ValueError when the pack's
    prefixes need more than `prefix_keys` gathered keys: the engine's planner does not bound
    them (the full split needs at most 5,646 with the Llama-3 tokenizer; attn_split: 8192)."""
    seg = seg_start.astype(np.int64).copy()
    # The padding: junk that no real token sees, in 128-token segments (as one segment it made
    # the last pack of call 1 attend 22k padding tokens causally: 13.5 ms of its time).
    seg[fill:] = -1 - (np.arange(len(seg) - fill) // 128)
    cu_own = _runs(seg)
    ps, pe = pre_start.astype(np.int64).copy(), pre_end.astype(np.int64).copy()
    has = pe > ps
    has[fill:] = False
    ps[~has], pe[~has] = -1, -1  # tokens without a prefix form runs with no keys
    starts = _runs(ps, pe)
    cu_q, cu_k, idx = [0], [0], []
    for a, b in itertools.pairwise(starts):
        cu_q.append(int(b))
        if has[a]:
            idx.append(np.arange(ps[a], pe[a]))
        cu_k.append(cu_k[-1] + (pe[a] - ps[a] if has[a] else 0))
    keys = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    if len(keys) > prefix_keys:
        raise ValueError(f"a pack's prefixes need {len(keys)} keys; prefix_keys is {prefix_keys}")
    prefix_idx = np.zeros(prefix_keys, np.int64)
    prefix_idx[: len(keys)] = keys
    cu_q_a, cu_k_a = np.asarray(cu_q, np.int64), np.asarray(cu_k, np.int64)
    longest = np.diff(cu_own).max()
    lens = np.array(
        [
            len(cu_own) - 1,
            longest,
            longest,
            len(cu_q) - 1,
            np.diff(cu_q_a).max(),
            max(np.diff(cu_k_a).max(), 1),
        ],
        np.int64,
    )
    return VarlenLayout(
        cu_own.astype(np.int32),
        cu_q_a.astype(np.int32),
        cu_k_a.astype(np.int32),
        prefix_idx,
        has,
        lens,
    )


def _reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: list[int],
    cu_k: list[int],
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence attention in fp32 (CPU and tests): the kernels' semantics, causal aligned
    to the bottom right; a row with no keys gives 0 and log-sum-exp -inf."""
    T, H, D = q.shape
    out = q.new_zeros(T, H, D)
    lse = torch.full((T, H), -math.inf, dtype=torch.float32, device=q.device)
    rep = H // k.shape[1]
    for qs, qe, ks, ke in zip(cu_q[:-1], cu_q[1:], cu_k[:-1], cu_k[1:], strict=True):
        if qe == qs or ke == ks:
            continue
        qi = q[qs:qe].transpose(0, 1).float()
        ki = k[ks:ke].transpose(0, 1).float().repeat_interleave(rep, 0)
        vi = v[ks:ke].transpose(0, 1).float().repeat_interleave(rep, 0)
        s = qi @ ki.transpose(1, 2) / math.sqrt(D)
        if causal:
            lq, lk = qe - qs, ke - ks
            allowed = torch.arange(lk)[None] <= torch.arange(lq)[:, None] + (lk - lq)
            s = s.masked_fill(~allowed.to(s.device), -math.inf)
        m = torch.logsumexp(s, -1)  # [H, Lq]
        out[qs:qe] = (torch.exp(s - m[..., None]) @ vi).transpose(0, 1).to(q.dtype)
        lse[qs:qe] = m.transpose(0, 1)
    return out, lse


def _to_rows(lse: torch.Tensor, T: int, H: int) -> torch.Tensor:
    """A kernel's log-sum-exp as [T, H] fp32, whichever of the known layouts it came in."""
    lse = lse.float()
    if lse.shape == (H, T):
        return lse.t()
    if lse.dim() == 3 and lse.shape[-1] == 1:
        lse = lse[..., 0]
    if lse.shape == (T, H):
        return lse
    raise RuntimeError(
        f"varlen attention: unknown log-sum-exp layout {tuple(lse.shape)} "
        f"for {T} queries and {H} heads"
    )


@torch.library.custom_op("mmlubench::varlen_attention", mutates_args=())
def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    lens: torch.Tensor,
    causal: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [Tq, H, D] over k, v [Tk, Hkv, D] in sequences cu_q/cu_k; lens (CPU)
    = [sequences, longest query run, longest key run]. Returns out [Tq, H, D] and the
    log-sum-exp [Tq, H] (fp32)."""
    n, max_q, max_k = (int(x) for x in lens.tolist())
    cu_q, cu_k = cu_q[: n + 1], cu_k[: n + 1]
    T, H, _ = q.shape
    if q.device.type == "cpu":
        return _reference(q, k, v, cu_q.tolist(), cu_k.tolist(), causal)
    if backend == "flash":
        out, lse, *_ = torch.ops.aten._flash_attention_forward(
            q, k, v, cu_q, cu_k, max_q, max_k, 0.0, causal, False
        )
    elif backend == "cudnn":
        res = torch.ops.aten._cudnn_attention_forward(
            q, k, v, None, cu_q, cu_k, max_q, max_k, True, 0.0, causal, False
        )
        out, lse = res[0], res[1]
    else:
        raise ValueError(f"varlen attention backend {backend!r}: one of {', '.join(BACKENDS)}")
    return out, _to_rows(lse, T, H)


@varlen_attention.register_fake
def _(q, k, v, cu_q, cu_k, lens, causal, backend):
    T, H, _ = q.shape
    return torch.empty_like(q), q.new_empty((T, H), dtype=torch.float32)


def split_attention(
    q: torch.Tensor,
    k_all: torch.Tensor,
    v_all: torch.Tensor,
    carry: int,
    cu_own: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    prefix_idx: torch.Tensor,
    has_prefix: torch.Tensor,
    lens: torch.Tensor,
    backend: str,
) -> torch.Tensor:
    """The pack's attention: q [T, H, D]; k_all, v_all [carry + T, Hkv, D] (the carried keys,
    then the pack's). Returns [T, H, D]."""
    k, v = k_all[carry:], v_all[carry:]
    o1, l1 = varlen_attention(q, k, v, cu_own, cu_own, lens[:3], True, backend)
    kp, vp = k_all.index_select(0, prefix_idx), v_all.index_select(0, prefix_idx)
    o2, l2 = varlen_attention(q, kp, vp, cu_q, cu_k, lens[3:], False, backend)
    # softmax over both key sets = each part weighted by its share of exp(lse); where the
    # token has no prefix the second part may be junk (never multiplied in, where() drops it)
    w = torch.sigmoid(l2 - l1)[..., None]
    mixed = o1.float() + (o2.float() - o1.float()) * w
    return torch.where(has_prefix[:, None, None], mixed, o1.float()).to(q.dtype)
