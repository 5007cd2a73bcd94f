"""Answer rules and accuracy.

- `reference` (FlagPerf): argmax of the last position's logits over the whole vocabulary, decode
  that token, keep only the characters A, B, C, D; correct if what is left equals the answer
  letter (" A" counts as A, "Answer" also counts as A, "AB" is wrong).
- `choices` (original MMLU, lm-eval): argmax over the logits of the four answer-letter tokens.
- `token` (FlagPerf llama2_7b_mmlu): argmax over the whole vocabulary must be exactly the answer
  letter's token as it follows "Answer:" (Llama-2: "▁A"); any other token is wrong, even "A".

Reduction happens on the device (`reduce_logits`), so only a few numbers per question travel to
the host; the rules then work on those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mmlubench.data.mmlu import LETTERS


@dataclass
class Reduced:
    """Per question: top token over the vocabulary, the 4 choice logits, all-finite flag, and
    the log of the softmax's denominator (choice logit - logsumexp = the letter's
    log-likelihood over the whole vocabulary, as lm-eval's loglikelihood)."""

    top_ids: torch.Tensor  # [n] int64
    choice_logits: torch.Tensor  # [n, 4] float32
    finite: torch.Tensor  # [n] bool
    logsumexp: torch.Tensor | None = None  # [n] float32


def reduce_logits(logits: torch.Tensor, choice_ids: Sequence[int]) -> Reduced:
    """Reduce [n, vocab] logits on their device, then move the small results to the host."""
    finite = torch.isfinite(logits).all(dim=-1)
    top = logits.argmax(dim=-1)
    choices = logits[:, list(choice_ids)].float()
    # In float32, a few hundred rows at a time: a whole fp16 pack's rows would double in size.
    lse = (
        torch.cat([torch.logsumexp(rows.float(), dim=-1) for rows in logits.split(256)])
        if len(logits)
        else logits.new_zeros(0, dtype=torch.float32)
    )
    return Reduced(top.cpu(), choices.cpu(), finite.cpu(), lse.cpu())


def keep_letters(text: str) -> str:
    """The reference's filter: only the characters A, B, C, D survive."""
    return "".join(ch for ch in text if ch in "ABCD")


class Decoder:
    """Decodes single tokens, with a cache (a run sees few distinct top tokens)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = self.tokenizer.decode([token_id])
        return self.cache[token_id]


def reference_letter(top_id: int, decode: Decoder) -> str:
    return keep_letters(decode(top_id))


def token_letter(top_id: int, choice_ids: Sequence[int]) -> str:
    """The `token` rule: the letter whose answer token is the top token, else nothing."""
    return LETTERS[list(choice_ids).index(top_id)] if top_id in choice_ids else ""


def choices_letter(choice_logits: Sequence[float]) -> str:
    best = max(range(len(LETTERS)), key=lambda i: (choice_logits[i], -i))
    return LETTERS[best]


@dataclass
class Accuracy:
    """One answer rule over a set of questions (fractions of 1; subjects sorted)."""

    micro: float
    macro: float
    correct: int
    total: int
    per_subject: dict[str, float]
    per_subject_total: dict[str, int]  # questions of each subject


def accuracy(subjects: Sequence[str], answers: Sequence[str], predicted: Sequence[str]) -> Accuracy:
    """Micro (over questions, the reference's figure) and macro (mean over subjects)."""
    if not (len(subjects) == len(answers) == len(predicted)):
        raise ValueError("subjects, answers and predictions differ in length")
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s, a, p in zip(subjects, answers, predicted, strict=True):
        hits[s][0] += int(a == p)
        hits[s][1] += 1
    per_subject = {s: c / n for s, (c, n) in sorted(hits.items())}
    correct = sum(c for c, _ in hits.values())
    total = len(answers)
    return Accuracy(
        micro=correct / total if total else float("nan"),
        macro=sum(per_subject.values()) / len(per_subject) if per_subject else float("nan"),
        correct=correct,
        total=total,
        per_subject=per_subject,
        per_subject_total={s: n for s, (_, n) in sorted(hits.items())},
    )
