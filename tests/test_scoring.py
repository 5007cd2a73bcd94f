"""Answer rules on crafted logits over the real vocabulary (102400), and micro/macro accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from mmlubench.data.scoring import (
    Decoder,
    accuracy,
    choices_letter,
    keep_letters,
    reduce_logits,
    reference_letter,
)

VOCAB = 102400
CHOICE_IDS = [338, 380, 339, 414]  # " A", " B", " C", " D" in the deepseek tokenizer


def crafted(tops: list[int], choice_rows: list[list[float]] | None = None) -> torch.Tensor:
    """Random logits whose argmax over the vocabulary is tops[i] in row i, and whose four
    choice-token logits are choice_rows[i] (all below the top logit)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(tops), VOCAB, generator=g)
    for i, top in enumerate(tops):
        if choice_rows is not None:
            logits[i, CHOICE_IDS] = torch.tensor(choice_rows[i])
        logits[i, top] = 50.0
    return logits


def test_vocabulary_facts(raw_tokenizer, tokenizer):
    """The ids used below decode as claimed, by the raw tokenizer and by mmlubench's."""
    facts = {
        338: " A",
        380: " B",
        339: " C",
        414: " D",
        32349: "Answer",
        3339: "AB",
        185: "\n",
        30623: " Dad",
        43396: " CAD",
        0: "!",
    }
    for token_id, text in facts.items():
        assert raw_tokenizer.decode([token_id]) == text
        assert Decoder(tokenizer)(token_id) == text


@pytest.mark.parametrize(
    "top,answer,correct",
    [
        (338, "A", True),  # " A"
        (338, "B", False),
        (32349, "A", True),  # "Answer": only its capital A survives the filter
        (3339, "A", False),  # "AB" is neither A nor B
        (3339, "B", False),
        (185, "A", False),  # "\n": no letters at all
        (0, "A", False),  # "!"
        (339, "C", True),  # " C"
        (30623, "D", True),  # " Dad" keeps "D"
        (43396, "C", False),  # " CAD" keeps "CAD"
        (100020, "A", False),  # an embedding row with no token decodes to ""
    ],
)
def test_reference_rule(tokenizer, top, answer, correct):
    reduced = reduce_logits(crafted([top]), CHOICE_IDS)
    assert reduced.top_ids.tolist() == [top]
    letter = reference_letter(int(reduced.top_ids[0]), Decoder(tokenizer))
    assert (letter == answer) is correct


def test_keep_letters():
    assert keep_letters(" A") == "A"
    assert keep_letters("Answer") == "A"
    assert keep_letters("abcd") == ""
    assert keep_letters("(B)") == "B"
    assert keep_letters("ABCDE") == "ABCD"


def test_choices_rule_ignores_the_rest_of_the_vocabulary():
    # Every row's overall argmax is some other token; only the four choice logits decide.
    rows = [
        [1.0, 3.0, 2.0, 0.0],
        [-5.0, -6.0, -7.0, -4.0],
        [9.0, 8.0, 8.5, 0.0],
        [0.0, 0.0, 2.0, 1.0],
    ]
    logits = crafted([5000, 17, 32349, 338], rows)  # row 3: " A" itself is the argmax (50)
    reduced = reduce_logits(logits, CHOICE_IDS)
    assert reduced.top_ids.tolist() == [5000, 17, 32349, 338]
    assert reduced.choice_logits.shape == (4, 4)
    assert reduced.choice_logits[:3].tolist() == rows[:3]
    letters = [choices_letter(r.tolist()) for r in reduced.choice_logits]
    assert letters == ["B", "D", "A", "A"]  # row 3: " A" = 50 beats " C" = 2 among the four
    assert bool(reduced.finite.all())


def test_choices_rule_breaks_ties_to_the_first_letter():
    assert choices_letter([1.0, 1.0, 0.0, 0.0]) == "A"
    assert choices_letter([0.0, 2.0, 2.0, 2.0]) == "B"


def test_rules_can_disagree(tokenizer):
    logits = crafted([32349], [[0.0, 5.0, 1.0, 2.0]])
    reduced = reduce_logits(logits, CHOICE_IDS)
    assert reference_letter(int(reduced.top_ids[0]), Decoder(tokenizer)) == "A"
    assert choices_letter(reduced.choice_logits[0].tolist()) == "B"


def test_non_finite_rows_are_flagged():
    logits = crafted([338, 338, 338])
    logits[1, 7] = float("nan")
    logits[2, 9] = float("inf")
    assert reduce_logits(logits, CHOICE_IDS).finite.tolist() == [True, False, False]


def test_reduce_half_precision_logits():
    logits = crafted([414], [[1.0, 2.0, 3.0, 4.0]]).half()
    reduced = reduce_logits(logits, CHOICE_IDS)
    assert reduced.top_ids.tolist() == [414]
    assert reduced.choice_logits.dtype == torch.float32
    assert choices_letter(reduced.choice_logits[0].tolist()) == "D"


def test_accuracy_micro_and_macro():
    # astronomy: 3 of 4 right; law: 0 of 1; virology: 1 of 1.
    subjects = ["astronomy"] * 4 + ["law"] + ["virology"]
    answers = ["A", "B", "C", "D", "A", "B"]
    predicted = ["A", "B", "C", "A", "", "B"]
    acc = accuracy(subjects, answers, predicted)
    assert (acc.correct, acc.total) == (4, 6)
    assert acc.micro == pytest.approx(4 / 6)
    assert acc.macro == pytest.approx((3 / 4 + 0 + 1) / 3)
    assert acc.per_subject == {"astronomy": 0.75, "law": 0.0, "virology": 1.0}
    assert list(acc.per_subject) == ["astronomy", "law", "virology"]


def test_accuracy_edge_cases():
    with pytest.raises(ValueError):
        accuracy(["a"], ["A"], [])
    empty = accuracy([], [], [])
    assert empty.total == 0 and math.isnan(empty.micro) and math.isnan(empty.macro)
