"""The whole last-position logits of a fixed sample of questions, kept in every pass, so that a
run can say how far its infer engine's logits are from the plain model's (val) over the whole
vocabulary, not only over the four answer letters (result.json's
`accuracy.agreement_val_infer.logits_rel_l2_*`; fp8's accuracy cost, issue 12).

The sample is at most `SAMPLE` questions, evenly spaced over the question order (every subject
is represented). A pass keeps each sample question's logits once, when it first computes them,
on the host, in the engine's dtype (fp16: 512 x 102,400 x 2 bytes, ~100 MB), after the engine
call: core time does not include the copy. Only the questions computed by this process are
kept: the sessions before a resume kept theirs in memory that is gone, so a resumed run
compares the sample questions its last session computed in both passes, and says how many.
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE = 512


def members(questions: int, size: int = SAMPLE) -> np.ndarray:
    """[questions] bool: which questions are in the sample."""
    out = np.zeros(questions, dtype=bool)
    if questions:
        out[np.linspace(0, questions - 1, min(size, questions)).round().astype(int)] = True
    return out


def keep(store: dict[int, np.ndarray], sample: np.ndarray | None, rows: np.ndarray,
         logits: torch.Tensor) -> None:
    """Put the sample questions among `rows` (the batch's rows; `logits` row i is question
    rows[i]) into `store`, unless already there."""
    if sample is None:
        return
    pick = [i for i, r in enumerate(rows) if sample[r] and int(r) not in store]
    if not pick:
        return
    kept = logits[torch.as_tensor(pick, device=logits.device)].cpu().numpy()
    for i, row in zip(pick, kept, strict=True):
        store[int(rows[i])] = row


def rel_l2(reference: dict[int, np.ndarray], other: dict[int, np.ndarray]
           ) -> tuple[float | None, float | None, int]:
    """Mean and max over the questions both hold of ||other - reference|| / ||reference||
    (float64), and how many questions that is."""
    common = sorted(set(reference) & set(other))
    rel = []
    for q in common:
        a, b = reference[q].astype(np.float64), other[q].astype(np.float64)
        norm = np.linalg.norm(a)
        if norm > 0:
            rel.append(np.linalg.norm(b - a) / norm)
    if not rel:
        return None, None, len(common)
    return float(np.mean(rel)), float(np.max(rel)), len(common)
