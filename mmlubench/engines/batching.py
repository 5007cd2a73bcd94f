"""Host-side batching of the eager engine (pure numpy until the inputs go to the device).

- `plan_padded`: whole prompts, length-sorted, in left-padded batches (the padded and reference
  methods, and prompts with nothing to share under prefix-cache).
- `plan_prefix_cache`: prefix by prefix, length-sorted batches of question suffixes that run
  against the prefix's cache (engines/prefix_cache.py).
Each batch carries its requests in its payload (`Padded` or `Suffixes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from mmlubench.engines.base import Batch, Request, Work, causal_pairs


@dataclass
class Padded:
    """Payload of a batch of whole prompts (the padded and reference methods)."""

    requests: list[Request]


def plan_padded(
    requests: Sequence[Request],
    batch_size: int,
    batch_tokens: int,
    full_logits: bool,
    rows: Sequence[int] | None = None,
) -> list[Batch]:
    """Batch size 1 keeps request order; larger batches group length-sorted requests
    (longest first, so an out-of-memory shows at once) under both limits. `rows` are the
    requests' indices in the pass (default 0..n-1)."""
    rows = list(range(len(requests))) if rows is None else list(rows)
    lengths = [len(r.ids) for r in requests]
    if batch_size == 1:
        groups = [[i] for i in range(len(requests))]
    else:
        order = sorted(range(len(requests)), key=lambda i: (-lengths[i], rows[i]))
        groups, current = [], []
        for i in order:
            longest = lengths[current[0]] if current else lengths[i]
            full = len(current) >= batch_size or (len(current) + 1) * longest > batch_tokens
            if current and full:
                groups.append(current)
                current = []
            current.append(i)
        if current:
            groups.append(current)
    batches = []
    for group in groups:
        n = [lengths[i] for i in group]
        work = Work(
            tokens=sum(n),
            attention_pairs=sum(causal_pairs(k) for k in n),
            logit_rows=sum(n) if full_logits else len(group),
            padded_tokens=len(group) * max(n),
        )
        batches.append(
            Batch(
                rows=[rows[i] for i in group],
                prompt_tokens=sum(n),
                work=work,
                payload=Padded([requests[i] for i in group]),
            )
        )
    return batches


def padded_inputs(seqs: Sequence[np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded ids, attention mask and position ids; a single prompt gets its ids only
    (the reference's call)."""
    if len(seqs) == 1:
        ids = torch.from_numpy(np.asarray(seqs[0], dtype=np.int64))[None]
        return {"input_ids": ids.to(device)}
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = s  # left padding: every row ends at the last column
        mask[r, width - len(s) :] = 1
    # Positions count real tokens only, so a padded row sees the positions it would alone.
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
        "position_ids": torch.from_numpy(pos).to(device),
    }


@dataclass
class Suffixes:
    """Payload of a batch of questions that share the prefix `prefix`."""

    key: bytes
    prefix: np.ndarray
    requests: list[Request]


# What one more batch costs, in padded suffix tokens (kernel launches, short GEMMs): the cut
# below trades padding against the number of batches with it. A fit of the 371 val batches'
# times of a whole-split run on an H200 (deepseek-7B, fp16) gave 2.8 ms per batch against
# 29 us per padded suffix token, and predicted 59.6 s for a cost of 256 against 60.3 s for 512;
# measured on the same card (bench/results/2026-12-02_h200_overlap/run2/valspeed.json, every
# 4th subject), 256 and 128 ran within 0.3% and 0.7% of 512, as close as two runs of 512, so
# the cost stays 512 (fewer batches).
BATCH_COST_TOKENS = 512


def cut_sorted(
    widths: Sequence[int],
    prefix: int,
    batch_size: int,
    batch_tokens: int,
    batch_cost: int = BATCH_COST_TOKENS,
) -> list[int]:
    """Where to cut suffix widths sorted longest first into batches: the cuts minimizing
    padded suffix tokens + batch_cost per batch (dynamic programming), each batch at most
    `batch_size` rows with rows x (prefix + its longest) <= batch_tokens (at least one row).
    Returns the cut positions, 0 first and len(widths) last."""
    n = len(widths)
    w = np.asarray(widths, dtype=np.float64)
    best = np.zeros(n + 1)
    nxt = np.zeros(n + 1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        most = max(1, min(batch_size, n - i, batch_tokens // max(1, prefix + int(w[i]))))
        rows = np.arange(1, most + 1)
        cost = rows * w[i] + batch_cost + best[i + 1 : i + 1 + most]
        k = int(np.argmin(cost))
        best[i], nxt[i] = cost[k], i + 1 + k
    cuts, i = [0], 0
    while i < n:
        i = int(nxt[i])
        cuts.append(i)
    return cuts


def plan_group(
    requests: Sequence[Request],
    rows: Sequence[int],
    batch_size: int,
    batch_tokens: int,
    with_prefix: bool = True,
    batch_cost: int = BATCH_COST_TOKENS,
) -> list[Batch]:
    """Batches of one prefix's requests: suffixes longest first, cut where padding and batch
    count cost least (`cut_sorted`), each batch under both limits. The first batch's work
    includes the prefix (computed once) when `with_prefix`."""
    p = requests[0].prefix_len
    prefix = np.asarray(requests[0].ids[:p])
    key = prefix.tobytes()
    n = [len(r.ids) - p for r in requests]
    order = sorted(range(len(requests)), key=lambda i: (-n[i], rows[i]))
    cuts = cut_sorted([n[i] for i in order], p, batch_size, batch_tokens, batch_cost)
    groups = [order[a:b] for a, b in pairwise(cuts)]
    batches = []
    for k, group in enumerate(groups):
        sizes = [n[i] for i in group]
        work = Work(
            tokens=sum(sizes),
            attention_pairs=sum(causal_pairs(s, p) for s in sizes),
            logit_rows=len(group),
            padded_tokens=len(group) * max(sizes),
        )
        if with_prefix and k == 0:  # one prefix call: p tokens, one LM-head row
            work += Work(tokens=p, attention_pairs=causal_pairs(p), logit_rows=1, padded_tokens=p)
        members = [requests[i] for i in group]
        batches.append(
            Batch(
                rows=[rows[i] for i in group],
                prompt_tokens=sum(len(r.ids) for r in members),
                work=work,
                payload=Suffixes(key, prefix, members),
            )
        )
    return batches


def plan_prefix_cache(
    requests: Sequence[Request],
    batch_size: int,
    batch_tokens: int,
    batch_cost: int = BATCH_COST_TOKENS,
) -> list[Batch]:
    """Prefix by prefix (in order of first appearance), then the prompts with nothing to
    share (prefix_len 0, or no suffix left) whole, in padded batches."""
    groups: dict[bytes, list[int]] = {}
    solo: list[int] = []
    for i, r in enumerate(requests):
        if 0 < r.prefix_len < len(r.ids):
            groups.setdefault(r.ids[: r.prefix_len].tobytes(), []).append(i)
        else:
            solo.append(i)
    batches: list[Batch] = []
    for members in groups.values():
        group = [requests[i] for i in members]
        batches += plan_group(group, members, batch_size, batch_tokens, batch_cost=batch_cost)
    if solo:
        batches += plan_padded(
            [requests[i] for i in solo], batch_size, batch_tokens, False, rows=solo
        )
    return batches


def split_suffixes(batch: Batch, batch_size: int) -> list[Batch]:
    """The rows of `batch` in batches of at most `batch_size` and half its positions; the
    prefix is not counted again (the engine still holds it)."""
    payload: Suffixes = batch.payload
    p = len(payload.prefix)
    longest = max(len(r.ids) for r in payload.requests) - p
    tokens = max(1, len(batch.rows) * (p + longest) // 2)
    return plan_group(payload.requests, batch.rows, batch_size, tokens, with_prefix=False)


def suffix_inputs(payload: Suffixes, device: torch.device) -> dict[str, Any]:
    """Left-padded suffix ids, a mask over prefix + suffix, positions after the prefix."""
    p = len(payload.prefix)
    seqs = [r.ids[p:] for r in payload.requests]
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), p + width), dtype=np.int64)
    mask[:, :p] = 1
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = s  # left padding: every row ends at the last column
        mask[r, p + width - len(s) :] = 1
    pos = p + np.clip(np.cumsum(mask[:, p:], axis=1) - 1, 0, None)

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device)

    return {
        "key": payload.key,
        "prefix": put(payload.prefix.astype(np.int64)[None]),
        "input_ids": put(ids),
        "attention_mask": put(mask),
        "position_ids": put(pos),
    }
