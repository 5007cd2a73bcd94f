"""The shared-prefix engine's planner (host only, numpy): packs and their block sparsity.

A pack is one fixed-length sequence holding a prefix and many question suffixes one after
another; each suffix sees its prefix and itself, causally, with positions continuing from the
prefix. `PackBuilder` fills packs greedily in request order; `block_layout` computes which
FlexAttention key blocks each query block touches, from per-token intervals in O(T) work.

Carry: the attention keys of a pack are [C carried keys] + [its T tokens] (pack token t is key
C+t; all mask metadata are key indices). When a prefix group (one subject) continues into the
next pack and its prefix fits in C, the next pack does not place the prefix again: its suffixes
see keys [0, P) of the carry, which holds that prefix's keys/values as the previous pack
computed them. Each pack names the prefix its carry must hold (`carry_in_key`) and the one it
leaves behind (`carry_out`, `carry_out_key`), so the engine can tell when a chain is broken,
and the pack that computed the prefix (`carry_origin`), which the engine reruns to mend it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mmlubench.engines.base import Batch, Request, Work, causal_pairs
from mmlubench.errors import RunError


@dataclass
class Pack:
    """Host-side description of one packed sequence (seg_start, pre_start, pre_end are key
    indices: pack token t is key `carry + t`)."""

    ids: np.ndarray  # [T] token ids (padding 0)
    pos: np.ndarray  # [T] position ids
    seg_start: np.ndarray  # [T] first key of each token's own segment (prefix or suffix)
    pre_start: np.ndarray  # [T] first key of the prefix a suffix token also sees
    pre_end: np.ndarray  # [T] end (exclusive) of that prefix; == pre_start when none
    last: np.ndarray  # [q] index of each question's last token
    blocks: tuple[np.ndarray, ...] = ()  # block_layout(): the FlexAttention block sparsity
    # Sliding-window layers: seg_start and pre_start cut to the window, and their blocks.
    window: tuple[np.ndarray, np.ndarray] | None = None
    window_blocks: tuple[np.ndarray, ...] = ()
    requests: list[Request] = field(default_factory=list)  # the batch's requests, row order
    carry_out: np.ndarray | None = None  # [C] keys gathered into the next carry (None: C=0)
    carry_out_key: bytes | None = None  # the prefix those keys hold (None: nothing useful)
    carry_in_key: bytes | None = None  # the prefix the carry must hold (None: not used)
    carry_origin: Pack | None = None  # the pack that computed it (rerun when it is not held)
    work: Work = field(default_factory=Work)  # what the pack itself computes, as planned

    def mask_meta(self) -> list[np.ndarray]:
        """The masks' metadata: (seg_start, pre_start, pre_end) of the full mask, then of the
        window mask when the pack has one."""
        full = [self.seg_start, self.pre_start, self.pre_end]
        return full + ([*self.window, self.pre_end] if self.window is not None else [])

    def all_blocks(self) -> list[tuple[np.ndarray, ...]]:
        return [self.blocks] + ([self.window_blocks] if self.window is not None else [])


def prefix_key(prefix: np.ndarray) -> bytes:
    """The identity of a shared prefix: its ids' bytes (int64, whatever the input dtype)."""
    return np.asarray(prefix, np.int64).tobytes()


def _interval_counts(
    qb: np.ndarray, lo: np.ndarray, hi: np.ndarray, nq: int, nk: int
) -> np.ndarray:
    """[nq, nk] count, per query block, of its tokens whose key-block interval [lo, hi]
    (inclusive; empty when lo > hi) holds each key block."""
    ok = lo <= hi
    qb, lo, hi = qb[ok], lo[ok], hi[ok]
    width = nk + 1
    flat = np.concatenate([qb * width + lo, qb * width + hi + 1])
    weights = np.concatenate([np.ones(len(lo)), -np.ones(len(hi))])
    diff = np.bincount(flat, weights, minlength=nq * width).reshape(nq, width)
    return np.cumsum(diff, axis=1)[:, :nk]


def block_layout(
    seg: np.ndarray, ps: np.ndarray, pe: np.ndarray, block: int, carry: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which key blocks each query block touches, for BlockMask.from_kv_blocks.

    Query t (key carry+t) may see keys [seg[t], carry+t] (its own segment, causally) and
    [ps[t], pe[t]) (its prefix). A key block is "full" for a query block when, for every token
    of the query block, one of the two ranges holds the whole key block; "partial" when some
    pair is allowed (the mask function decides those elementwise). Returns (partial count [nq],
    partial indices [nq, nk], full count, full indices), int32, indices of each row's blocks
    first; nq = T / block, nk = (carry + T) / block.
    """
    T = len(seg)
    nq, nk = T // block, (carry + T) // block
    t = np.arange(T)
    qb, key = t // block, t + carry
    seg, ps, pe = (a.astype(np.int64) for a in (seg, ps, pe))
    has = pe > ps
    # Key blocks wholly inside each range (the two ranges are disjoint key intervals).
    own_full = _interval_counts(qb, -(-seg // block), (key + 1) // block - 1, nq, nk)
    pre_full = _interval_counts(qb[has], -(-ps[has] // block), pe[has] // block - 1, nq, nk)
    # Key blocks any token of a range falls in.
    touched = _interval_counts(qb, seg // block, key // block, nq, nk)
    touched += _interval_counts(qb[has], ps[has] // block, (pe[has] - 1) // block, nq, nk)
    full = (own_full + pre_full) >= block  # every token of the query block
    partial = (touched > 0) & ~full

    def indices(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(~m, axis=1, kind="stable").astype(np.int32)  # True columns first
        return m.sum(1).astype(np.int32), order

    return (*indices(partial), *indices(full))


def window_cut(
    seg: np.ndarray, ps: np.ndarray, pe: np.ndarray, pos: np.ndarray, window: int, carry: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(seg_start, pre_start) of a sliding-window mask: a query at prompt position p sees only
    keys at positions > p - window, as transformers' sliding mask counts them for the prompt
    run alone. Own segments hold consecutive positions (key index - seg = position offset);
    a prefix holds positions 0.. from `pre_start`, so its first visible key is
    pre_start + p - window + 1."""
    key = np.arange(len(seg), dtype=np.int64) + carry
    seg_w = np.maximum(seg, key - window + 1)
    has = pe > ps
    ps_w = np.where(has, np.minimum(pe, np.maximum(ps, ps + pos - window + 1)), ps)
    return seg_w.astype(np.int32), ps_w.astype(np.int32)


def pairs_attended(
    seg: np.ndarray, ps: np.ndarray, pe: np.ndarray, real: int, carry: int = 0
) -> int:
    """(query, key) pairs the first `real` tokens attend: own segment plus prefix."""
    key = np.arange(real, dtype=np.int64) + carry
    own = key - seg[:real].astype(np.int64) + 1
    return int(own.sum() + (pe[:real].astype(np.int64) - ps[:real]).sum())


class PackBuilder:
    """Fills packs of `pack_tokens` positions after `carry` carried keys; `close` turns the
    open pack into a Batch (`finish` into a Pack)."""

    def __init__(
        self, pack_tokens: int, block_size: int, carry: int = 0, window: int | None = None
    ):
        self.T, self.block, self.C, self.W = pack_tokens, block_size, carry, window
        self.batches: list[Batch] = []
        self.carried: tuple[bytes, Pack] | None = None  # the last pack's carry-out, origin
        self._open()

    def _open(self) -> None:
        T, C = self.T, self.C
        self.ids, self.pos = np.zeros(T, np.int64), np.zeros(T, np.int64)
        self.seg = np.arange(C, C + T, dtype=np.int32)  # padding: each token its own segment
        self.ps, self.pe = np.zeros(T, np.int32), np.zeros(T, np.int32)
        self.last: list[int] = []
        self.rows: list[int] = []
        self.requests: list[Request] = []
        self.fill, self.key, self.prefix_at = 0, None, (0, 0)
        self.prefix: np.ndarray | None = None
        self.carry_in: tuple[bytes, Pack] | None = None
        self.work = Work(padded_tokens=T)

    def fits(self, tokens: int, questions: int, max_questions: int) -> bool:
        return self.fill + tokens <= self.T and len(self.rows) + questions <= max_questions

    def can_carry(self, key: bytes) -> bool:
        """True when an empty pack can take group `key`'s prefix from the carry."""
        return self.fill == 0 and self.carried is not None and self.carried[0] == key

    def use_carry(self, key: bytes, prefix: np.ndarray) -> None:
        """Suffixes of group `key` see its prefix in carry keys [0, P): nothing computed."""
        assert self.carried is not None and self.carried[0] == key
        self.prefix_at, self.key, self.prefix = (0, len(prefix)), key, prefix
        self.carry_in = self.carried

    def place_prefix(self, key: bytes, prefix: np.ndarray) -> None:
        f, p, C = self.fill, len(prefix), self.C
        self.ids[f : f + p], self.pos[f : f + p], self.seg[f : f + p] = prefix, np.arange(p), C + f
        self.prefix_at, self.key, self.fill = (C + f, C + f + p), key, f + p
        self.prefix = prefix
        self.work += Work(tokens=p, attention_pairs=causal_pairs(p))

    def place_suffix(self, row: int, request: Request, p: int) -> None:
        f, n = self.fill, len(request.ids) - p
        sl = slice(f, f + n)
        self.ids[sl], self.pos[sl], self.seg[sl] = request.ids[p:], np.arange(p, p + n), self.C + f
        self.ps[sl], self.pe[sl] = self.prefix_at
        self.last.append(f + n - 1)
        self.rows.append(row)
        self.requests.append(request)
        self.fill = f + n
        self.work += Work(tokens=n, attention_pairs=causal_pairs(n, context=p))

    def finish(self) -> Pack:
        """The open pack as a Pack; remembers the prefix its carry-out holds and the pack that
        computed it. A prefix longer than the carry, or none (unshared requests), leaves
        nothing useful to carry."""
        C, prefix = self.C, self.prefix
        out, out_key = None, None
        if C:
            out = np.zeros(C, np.int64)  # unused carry slots copy key 0: junk, never attended
            if prefix is not None and 0 < len(prefix) <= C:
                start, end = self.prefix_at
                out[: end - start] = np.arange(start, end)
                out_key = prefix_key(prefix)
        self.work.logit_rows = len(self.rows)
        window, window_blocks = None, ()
        if self.W:
            window = window_cut(self.seg, self.ps, self.pe, self.pos, self.W, C)
            window_blocks = block_layout(window[0], window[1], self.pe, self.block, C)
            self.work.window_pairs = pairs_attended(*window, self.pe, self.fill, C)
        pack = Pack(
            self.ids,
            self.pos,
            self.seg,
            self.ps,
            self.pe,
            np.asarray(self.last, np.int64),
            block_layout(self.seg, self.ps, self.pe, self.block, C),
            window,
            window_blocks,
            self.requests,
            out,
            out_key,
            *(self.carry_in or (None, None)),
            self.work,
        )
        # The prefix left behind was computed here, or (carried through) where this pack's
        # carry-in was computed.
        through = self.carry_in is not None and self.carry_in[0] == self.key
        self.carried = (
            None if out_key is None else (self.key, self.carry_in[1] if through else pack)
        )  # type: ignore[index]
        return pack

    def close(self) -> None:
        if self.rows:
            pack = self.finish()
            self.batches.append(
                Batch(
                    rows=self.rows,
                    work=pack.work,
                    payload=pack,
                    prompt_tokens=sum(len(r.ids) for r in self.requests),
                )
            )
        self._open()


def plan_packs(
    requests: Sequence[Request],
    pack_tokens: int,
    max_questions: int,
    share_prefix: bool,
    block_size: int = 128,
    rows: Sequence[int] | None = None,
    carry_tokens: int = 0,
    window: int | None = None,
) -> list[Batch]:
    """Greedy packing in request order: a pack closes when the next segment does not fit. A
    group's prefix is placed once in each pack that holds any of its questions, except that a
    pack continuing the previous pack's group takes the prefix from the carry when it fits in
    `carry_tokens` (0: no carry). `rows` are the requests' indices in the pass (default
    0..n-1). `window`: the model's shortest sliding window, for which each pack also gets a
    window mask (None: no sliding-window layers)."""
    rows = list(range(len(requests))) if rows is None else list(rows)
    groups: dict[bytes, list[int]] = {}
    for i, r in enumerate(requests):
        p = r.prefix_len if share_prefix and r.prefix_len < len(r.ids) else 0
        # Unshared requests are groups of one with an empty prefix.
        groups.setdefault(prefix_key(r.ids[:p]) if p else b"solo:%d" % i, []).append(i)
    b = PackBuilder(pack_tokens, block_size, carry_tokens, window)
    for key, members in groups.items():
        p = 0 if key.startswith(b"solo:") else requests[members[0]].prefix_len
        prefix = requests[members[0]].ids[:p]
        for i in members:
            ids = requests[i].ids
            if len(ids) > pack_tokens:
                raise RunError(
                    f"a prompt of {len(ids)} tokens does not fit in "
                    f"pack_tokens={pack_tokens}; raise "
                    "engines.shared-prefix.pack_tokens"
                )
            need = len(ids) - p + (p if b.key != key else 0)
            if not b.fits(need, 1, max_questions):
                b.close()
            if b.key != key and b.can_carry(key):
                b.use_carry(key, prefix)
            elif b.key != key:  # place the prefix in this pack
                b.place_prefix(key, prefix)
            b.place_suffix(rows[i], requests[i], p)
    b.close()
    return b.batches
