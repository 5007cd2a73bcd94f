"""The whole last-position logits of a fixed sample of questions, kept in every pass, so that a
run can say how far its infer engine's logits are from the plain model's (val) over the whole
vocabulary, not only over the four answer letters (result.json's
`accuracy.agreement_val_infer.logits_rel_l2_*`: what fp8 costs shows there). Both distances,
the sample's and the answer letters' of every question, are `row_ratios` summarized by
`mean_max`.

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


def keep(
    store: dict[int, np.ndarray], sample: np.ndarray | None, rows: np.ndarray, logits: torch.Tensor
) -> None:
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


def row_ratios(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """||other - reference|| / ||reference|| of each row (last axis; float64), leaving out the
    rows whose reference is all zeros: they have no ratio."""
    a, b = np.atleast_2d(reference).astype(np.float64), np.atleast_2d(other).astype(np.float64)
    norm = np.linalg.norm(a, axis=-1)
    nonzero = norm > 0  # not `keep`: that is this module's function
    return np.linalg.norm(b - a, axis=-1)[nonzero] / norm[nonzero]


def mean_max(ratios: np.ndarray) -> tuple[float | None, float | None]:
    """(mean, max) of `ratios`; (None, None) when there are none."""
    return (float(ratios.mean()), float(ratios.max())) if ratios.size else (None, None)


def rel_l2(
    reference: dict[int, np.ndarray], other: dict[int, np.ndarray]
) -> tuple[float | None, float | None, int]:
    """mean_max of row_ratios over the questions both hold, and how many questions that is
    (one row at a time: float64 copies of all 512 would take ~400 MB each)."""
    common = sorted(set(reference) & set(other))
    ratios = [row_ratios(reference[q], other[q]) for q in common]
    return (*mean_max(np.concatenate(ratios) if ratios else np.zeros(0)), len(common))
