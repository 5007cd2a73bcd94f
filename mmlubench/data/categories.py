"""The four MMLU categories of each subject, and accuracy over them.

`CATEGORIES` is the original MMLU mapping (hendrycks/test categories.py: each subject's
subcategory, grouped into STEM, humanities, social sciences and "other (business, health,
misc.)"). lm-evaluation-harness groups the subjects the same way except one: it counts anatomy
(a health subject in the original, so "other") as STEM (`tag: mmlu_stem_tasks` in
lm_eval/tasks/mmlu/default/mmlu_anatomy.yaml). `LMEVAL_GROUPS` is lm-eval's, for its files.
"""

from __future__ import annotations

from collections.abc import Mapping

CATEGORIES: dict[str, tuple[str, ...]] = {
    "STEM": (
        "abstract_algebra",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "high_school_physics",
        "high_school_statistics",
        "machine_learning",
    ),
    "humanities": (
        "formal_logic",
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "international_law",
        "jurisprudence",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
        "prehistory",
        "professional_law",
        "world_religions",
    ),
    "social sciences": (
        "econometrics",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ),
    "other": (
        "anatomy",
        "business_ethics",
        "clinical_knowledge",
        "college_medicine",
        "global_facts",
        "human_aging",
        "management",
        "marketing",
        "medical_genetics",
        "miscellaneous",
        "nutrition",
        "professional_accounting",
        "professional_medicine",
        "virology",
    ),
}
CATEGORY = {s: c for c, subjects in CATEGORIES.items() for s in subjects}
# lm-eval's group of each subject: the original's, but anatomy in STEM.
LMEVAL_GROUP_NAMES = {
    "STEM": "mmlu_stem",
    "humanities": "mmlu_humanities",
    "social sciences": "mmlu_social_sciences",
    "other": "mmlu_other",
}
LMEVAL_GROUPS = {
    s: LMEVAL_GROUP_NAMES["STEM" if s == "anatomy" else c] for s, c in CATEGORY.items()
}


def category_accuracy(
    correct: Mapping[str, int], total: Mapping[str, int]
) -> dict[str, tuple[float, int]]:
    """{category: (micro accuracy, questions)} over the subjects present, in CATEGORIES' order;
    a subject outside the 57 counts in no category."""
    out = {}
    for category, subjects in CATEGORIES.items():
        n = sum(total.get(s, 0) for s in subjects)
        if n:
            out[category] = (sum(correct.get(s, 0) for s in subjects) / n, n)
    return out
