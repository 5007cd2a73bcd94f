"""The table's accuracy notes: the headline accuracy's standard error (as lm-eval computes it)
and the accuracy of each MMLU category (STEM, humanities, social sciences, other)."""

from __future__ import annotations

from mmlubench.data.categories import CATEGORIES
from mmlubench.display import pct
from mmlubench.results.document import Accuracy, Result
from mmlubench.results.lmeval import mean_stderr, pooled_sample_stderr


def subject_stderr(acc: float, n: int) -> float | str:
    """lm-eval's mean_stderr of n 0/1 scores whose mean is acc (no scores needed)."""
    hits = round(acc * n)
    return mean_stderr([1.0] * hits + [0.0] * (n - hits))


def stderr(a: Accuracy, subjects: list[str] | None = None) -> float | None:
    """The pooled standard error of the micro accuracy over `subjects` (all by default), as
    lm-eval's size-weighted groups; None for a run that kept no per-subject counts."""
    subjects = [s for s in (subjects or a.per_subject) if a.per_subject_total.get(s)]
    sizes = [a.per_subject_total[s] for s in subjects]
    errors = [subject_stderr(a.per_subject[s], a.per_subject_total[s]) for s in subjects]
    if not sizes or "N/A" in errors or sum(sizes) == len(sizes):
        return None
    return pooled_sample_stderr(errors, sizes)  # type: ignore[arg-type]


def categories(a: Accuracy) -> list[tuple[str, float, int, float | None]]:
    """(category, micro accuracy, questions, stderr) of each category present."""
    out = []
    for name, subjects in CATEGORIES.items():
        present = [s for s in subjects if a.per_subject_total.get(s)]
        n = sum(a.per_subject_total[s] for s in present)
        if n:
            hits = sum(a.per_subject[s] * a.per_subject_total[s] for s in present)
            out.append((name, hits / n, n, stderr(a, present)))
    return out


def pm(value: float | None) -> str:
    return f" ± {100 * value:.1f}" if value is not None else ""


def accuracy_notes(result: Result) -> list[str]:
    """Lines under the context lines; none for a run without per-subject counts."""
    a = result.rule_accuracy("infer")
    if not a.per_subject_total:
        return []
    parts = [f"{name} {pct(acc)}{pm(se)} ({n})" for name, acc, n, se in categories(a)]
    meaningless = "" if result.accuracy_meaningful else " (meaningless here)"
    return [
        f"acc (infer, {result.accuracy.rule} rule) {pct(a.micro)}{pm(stderr(a))}"
        f"{meaningless}; by MMLU category: {', '.join(parts)}; ± = standard error as "
        "lm-eval computes it"
    ]
