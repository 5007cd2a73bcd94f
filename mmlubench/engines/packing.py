"""The shared-prefix engine's planner (host only, numpy): packs and their block sparsity.

A pack is one fixed-length sequence holding a prefix and many question suffixes one after
another; each suffix sees its prefix and itself, causally, with positions continuing from the
prefix. `PackBuilder` fills packs greedily in request order; `block_layout` computes which
FlexAttention key blocks each query block touches, from per-token intervals in O(T) work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mmlubench.engines.base import Batch, Request, Work, causal_pairs
from mmlubench.errors import RunError


@dataclass
class Pack:
    """Host-side description of one packed sequence."""

    ids: np.ndarray  # [T] token ids (padding 0)
    pos: np.ndarray  # [T] position ids
    seg_start: np.ndarray  # [T] start of each token's own segment (prefix or suffix)
    pre_start: np.ndarray  # [T] start of the prefix a suffix token also sees
    pre_end: np.ndarray  # [T] end (exclusive) of that prefix; == pre_start when none
    last: np.ndarray  # [q] index of each question's last token
    blocks: tuple[np.ndarray, ...] = ()  # block_layout(): the FlexAttention block sparsity
    requests: list[Request] = field(default_factory=list)  # the batch's requests, row order


def _interval_counts(qb: np.ndarray, lo: np.ndarray, hi: np.ndarray, nb: int) -> np.ndarray:
    """[nb, nb] count, per query block, of its tokens whose key-block interval [lo, hi]
    (inclusive; empty when lo > hi) holds each key block."""
    ok = lo <= hi
    qb, lo, hi = qb[ok], lo[ok], hi[ok]
    width = nb + 1
    flat = np.concatenate([qb * width + lo, qb * width + hi + 1])
    weights = np.concatenate([np.ones(len(lo)), -np.ones(len(hi))])
    diff = np.bincount(flat, weights, minlength=nb * width).reshape(nb, width)
    return np.cumsum(diff, axis=1)[:, :nb]


def block_layout(seg: np.ndarray, ps: np.ndarray, pe: np.ndarray, block: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which key blocks each query block touches, for BlockMask.from_kv_blocks.

    Token t may see keys [seg[t], t] (its own segment, causally) and [ps[t], pe[t]) (its
    prefix). A key block is "full" for a query block when, for every token of the query block,
    one of the two ranges holds the whole key block; "partial" when some pair is allowed (the
    mask function decides those elementwise). Returns (partial count [nq], partial indices
    [nq, nk], full count, full indices), int32, indices of each row's blocks first.
    """
    T = len(seg)
    nb = T // block
    t = np.arange(T)
    qb = t // block
    seg, ps, pe = (a.astype(np.int64) for a in (seg, ps, pe))
    has = pe > ps
    # Key blocks wholly inside each range (the two ranges are disjoint token intervals).
    own_full = _interval_counts(qb, -(-seg // block), (t + 1) // block - 1, nb)
    pre_full = _interval_counts(qb[has], -(-ps[has] // block), pe[has] // block - 1, nb)
    # Key blocks any token of a range falls in.
    touched = _interval_counts(qb, seg // block, t // block, nb)
    touched += _interval_counts(qb[has], ps[has] // block, (pe[has] - 1) // block, nb)
    full = (own_full + pre_full) >= block  # every token of the query block
    partial = (touched > 0) & ~full

    def indices(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(~m, axis=1, kind="stable").astype(np.int32)  # True columns first
        return m.sum(1).astype(np.int32), order

    return (*indices(partial), *indices(full))


class PackBuilder:
    """Fills packs of `pack_tokens` positions; `close` turns the open pack into a Batch."""

    def __init__(self, pack_tokens: int, block_size: int):
        self.T, self.block = pack_tokens, block_size
        self.batches: list[Batch] = []
        self._open()

    def _open(self) -> None:
        T = self.T
        self.ids, self.pos = np.zeros(T, np.int64), np.zeros(T, np.int64)
        self.seg = np.arange(T, dtype=np.int32)  # padding: each token its own segment
        self.ps, self.pe = np.zeros(T, np.int32), np.zeros(T, np.int32)
        self.last: list[int] = []
        self.rows: list[int] = []
        self.requests: list[Request] = []
        self.fill, self.key, self.prefix_at = 0, None, (0, 0)
        self.work = Work(padded_tokens=T)

    def fits(self, tokens: int, questions: int, max_questions: int) -> bool:
        return self.fill + tokens <= self.T and len(self.rows) + questions <= max_questions

    def place_prefix(self, key: bytes, prefix: np.ndarray) -> None:
        f, p = self.fill, len(prefix)
        self.ids[f : f + p], self.pos[f : f + p], self.seg[f : f + p] = prefix, np.arange(p), f
        self.prefix_at, self.key, self.fill = (f, f + p), key, f + p
        self.work += Work(tokens=p, attention_pairs=causal_pairs(p))

    def place_suffix(self, row: int, request: Request, p: int) -> None:
        f, n = self.fill, len(request.ids) - p
        sl = slice(f, f + n)
        self.ids[sl], self.pos[sl], self.seg[sl] = request.ids[p:], np.arange(p, p + n), f
        self.ps[sl], self.pe[sl] = self.prefix_at
        self.last.append(f + n - 1)
        self.rows.append(row)
        self.requests.append(request)
        self.fill = f + n
        self.work += Work(tokens=n, attention_pairs=causal_pairs(n, context=p))

    def close(self) -> None:
        if self.rows:
            self.work.logit_rows = len(self.rows)
            pack = Pack(self.ids, self.pos, self.seg, self.ps, self.pe,
                        np.asarray(self.last, np.int64),
                        block_layout(self.seg, self.ps, self.pe, self.block), self.requests)
            self.batches.append(Batch(rows=self.rows, work=self.work, payload=pack,
                                      prompt_tokens=sum(len(r.ids) for r in self.requests)))
        self._open()


def plan_packs(requests: Sequence[Request], pack_tokens: int, max_questions: int,
               share_prefix: bool, block_size: int = 128,
               rows: Sequence[int] | None = None) -> list[Batch]:
    """Greedy packing in request order: a group's prefix is (re)placed once per pack that holds
    any of its questions; a pack closes when the next segment does not fit. `rows` are the
    requests' indices in the pass (default 0..n-1)."""
    rows = list(range(len(requests))) if rows is None else list(rows)
    groups: dict[bytes, list[int]] = {}
    for i, r in enumerate(requests):
        p = r.prefix_len if share_prefix and r.prefix_len < len(r.ids) else 0
        # Unshared requests are groups of one with an empty prefix.
        groups.setdefault(r.ids[:p].tobytes() if p else b"solo:%d" % i, []).append(i)
    b = PackBuilder(pack_tokens, block_size)
    for key, members in groups.items():
        p = 0 if key.startswith(b"solo:") else requests[members[0]].prefix_len
        prefix = requests[members[0]].ids[:p]
        for i in members:
            ids = requests[i].ids
            if len(ids) > pack_tokens:
                raise RunError(f"a prompt of {len(ids)} tokens does not fit in "
                               f"pack_tokens={pack_tokens}; raise "
                               "engines.shared-prefix.pack_tokens")
            need = len(ids) - p + (p if b.key != key else 0)
            if not b.fits(need, 1, max_questions):
                b.close()
            if b.key != key:  # place the prefix in this pack
                b.place_prefix(key, prefix)
            b.place_suffix(rows[i], requests[i], p)
    b.close()
    return b.batches
