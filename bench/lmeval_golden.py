"""Run lm-evaluation-harness (0.4.x) itself on a few MMLU subjects from local CSV files, and keep
its results (and a small digest of its samples) as the golden file that mmlubench's lm-eval
output is checked against (tests/test_lmeval.py).

lm-eval's MMLU tasks read the HF dataset cais/mmlu; without the Hub, this script writes the
same fields (question, subject, choices, answer) from the Hendrycks CSVs as JSON lines and gives
lm-eval task files that are its own MMLU task files (`lm_eval/tasks/mmlu/default/`: the
template, the per-subject descriptions, the groups with `weight_by_size`) with only the dataset
source replaced; the built-in tasks are not indexed, so the names stay lm-eval's own
(mmlu_abstract_algebra, mmlu_stem, ..., mmlu).

    pip install lm-eval==0.4.13  # in a venv with torch and transformers 5
    # (0.4.9 does not import under transformers 5.24: no transformers.AutoModelForVision2Seq)
    python bench/lmeval_golden.py --model /tmp/smol-hf --mmlu-dir /work/shared/mmlu/data \\
        --subjects abstract_algebra,jurisprudence,us_foreign_policy,global_facts --limit 25 \\
        --out tests/fixtures/lmeval/smollm2-135m_4subjects.json
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import yaml

GROUP_OF_TAG = {
    "mmlu_stem_tasks": "mmlu_stem",
    "mmlu_humanities_tasks": "mmlu_humanities",
    "mmlu_social_sciences_tasks": "mmlu_social_sciences",
    "mmlu_other_tasks": "mmlu_other",
}


def write_jsonl(csv_path: Path, subject: str, out: Path) -> None:
    with open(csv_path, newline="", encoding="utf-8") as f, open(out, "w") as g:
        for row in csv.reader(f):
            g.write(
                json.dumps(
                    {
                        "question": row[0],
                        "subject": subject,
                        "choices": row[1:5],
                        "answer": "ABCD".index(row[5].strip()),
                    }
                )
                + "\n"
            )


def make_tasks(mmlu_dir: Path, subjects: list[str], root: Path) -> None:
    """lm-eval's own MMLU task files, reading JSON lines made from the CSVs."""
    import lm_eval

    default = Path(lm_eval.__file__).parent / "tasks/mmlu/default"
    template = yaml.safe_load((default / "_default_template_yaml").read_text())
    template.pop("dataset_kwargs", None)
    for subject in subjects:
        for split in ("dev", "test"):
            write_jsonl(
                mmlu_dir / split / f"{subject}_{split}.csv",
                subject,
                root / f"{subject}_{split}.jsonl",
            )
        task = yaml.safe_load((default / f"mmlu_{subject}.yaml").read_text())
        task.pop("include")
        task.pop("dataset_name")
        task.update({k: v for k, v in template.items() if k not in task})
        task["dataset_path"] = "json"
        task["dataset_kwargs"] = {
            "data_files": {s: str(root / f"{subject}_{s}.jsonl") for s in ("dev", "test")}
        }
        (root / f"mmlu_{subject}.yaml").write_text(yaml.safe_dump(task))
    for name in ["_mmlu.yaml", *(f"_{g}.yaml" for g in GROUP_OF_TAG.values())]:
        (root / name).write_text((default / name).read_text())


def digest(samples: dict) -> dict:
    """Per subject, per question: doc_id, target, the four log-likelihoods, acc."""
    out = {}
    for task, rows in samples.items():
        out[task] = [
            {
                "doc_id": r["doc_id"],
                "target": r["target"],
                "loglikelihoods": [float(x[0]) for x in r["filtered_resps"]],
                "acc": r["acc"],
            }
            for r in sorted(rows, key=lambda r: r["doc_id"])
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model folder")
    ap.add_argument("--mmlu-dir", required=True, type=Path)
    ap.add_argument("--subjects", required=True)
    ap.add_argument("--batch-size", default="4")
    ap.add_argument("--limit", type=int, help="first N test questions of each subject")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    subjects = args.subjects.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        make_tasks(args.mmlu_dir, subjects, Path(tmp))
        t = time.perf_counter()
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={args.model},dtype=float32",
            tasks=["mmlu"],
            num_fewshot=5,
            batch_size=args.batch_size,
            device="cpu",
            log_samples=True,
            limit=args.limit,
            task_manager=TaskManager(include_path=tmp, include_defaults=False),
        )
        seconds = time.perf_counter() - t
    keep = {
        k: out[k]
        for k in (
            "results",
            "groups",
            "group_subtasks",
            "configs",
            "versions",
            "n-shot",
            "higher_is_better",
            "n-samples",
        )
        if k in out
    }
    keep["lm_eval_version"] = lm_eval.__version__ if hasattr(lm_eval, "__version__") else None
    keep["model_args"] = out["config"]["model_args"]
    keep["seconds"] = seconds
    keep["limit"] = args.limit
    keep["samples_digest"] = digest(out["samples"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(keep, indent=1, default=handle_non_serializable) + "\n")
    print(json.dumps(out["results"], indent=1, default=handle_non_serializable))


if __name__ == "__main__":
    main()
