"""A run's accuracy in lm-evaluation-harness's results layout (`results_lm-eval.json`, `report
--format lm-eval`) and its samples files (`--log-samples`), so a run diffs with an lm-eval run.

Computed from predictions.jsonl under the `choices` rule (the argmax of the four letters'
log-likelihoods, as lm-eval's multiple_choice `acc`); with `--prompt-style lm-eval` the prompts
are lm-eval's too, so the numbers are the ones lm-eval gives for the same model and questions.
The formulas are lm-eval 0.4.13's (lm_eval/api/metrics.py and lm_eval/api/group.py):
- a subject's `acc,none` is the mean of its 0/1 scores and `acc_stderr,none` their `mean_stderr`
  (sample standard deviation, n - 1, over sqrt(n));
- a group's (mmlu_stem, mmlu_humanities, mmlu_social_sciences, mmlu_other, and mmlu over all)
  `acc,none` is `aggregate_subtask_metrics` over its leaf subjects weighted by their sizes
  (weight_by_size: True in lm-eval's MMLU group files), and `acc_stderr,none` their
  `pooled_sample_stderr`: sqrt(sum((n_i - 1) n_i se_i^2) / (N - k) / N).
Groups are lm-eval's (categories.LMEVAL_GROUPS: anatomy counts as STEM there).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mmlubench.data.categories import LMEVAL_GROUPS
from mmlubench.data.mmlu import LETTERS

METRIC, STDERR = "acc,none", "acc_stderr,none"
# lm-eval's order (lm_eval/tasks/mmlu/default/_mmlu.yaml)
GROUP_ORDER = ("mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities")
GROUP_ALIASES = {
    "mmlu_stem": "stem",
    "mmlu_humanities": "humanities",
    "mmlu_social_sciences": "social sciences",
    "mmlu_other": "other",
}


def mean_stderr(scores: Sequence[float]) -> float | str:
    """lm-eval's mean_stderr: sample standard deviation (n - 1) over sqrt(n); "N/A" for one."""
    n = len(scores)
    if n < 2:
        return "N/A"
    mu = sum(scores) / n
    return math.sqrt(sum((x - mu) ** 2 for x in scores) / (n - 1)) / math.sqrt(n)


def pooled_sample_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
    """lm-eval's pooled_sample_stderr (its pooled-variance formula, unchanged)."""
    pooled = sum((n - 1) * se**2 * n for n, se in zip(sizes, stderrs, strict=True)) / (
        sum(sizes) - len(sizes)
    )
    return math.sqrt(pooled / sum(sizes))


def subject_scores(
    rows: Iterable[Mapping[str, Any]], pass_name: str = "infer"
) -> dict[str, list[float]]:
    """{subject: the 0/1 score of each question under the choices rule}, from predictions."""
    scores: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        scores[row["subject"]].append(float(row[pass_name]["choices"] == row["gold"]))
    return dict(scores)


def task_name(subject: str) -> str:
    return f"mmlu_{subject}"


def group_entry(
    name: str, alias: str, leaves: Sequence[tuple[float, float | str, int]]
) -> dict[str, Any]:
    """A group's acc and pooled stderr over its leaf subjects (acc, stderr, size)."""
    sizes = [n for _, _, n in leaves]
    acc = sum(a * n for a, _, n in leaves) / sum(sizes)
    stderrs = [se for _, se, _ in leaves]
    stderr = (
        "N/A"
        if "N/A" in stderrs or sum(sizes) == len(sizes)
        else pooled_sample_stderr(stderrs, sizes)
    )  # type: ignore[arg-type]
    return {
        "alias": alias,
        "name": name,
        "sample_len": sum(sizes),
        METRIC: acc,
        STDERR: stderr,
        "sample_count": {METRIC: sum(sizes)},
    }


def results(
    scores: Mapping[str, Sequence[float]], few_shots: int, config: Mapping[str, Any]
) -> dict[str, Any]:
    """lm-eval's results document for these subjects' scores."""
    per_task: dict[str, dict[str, Any]] = {}
    leaves: dict[str, list[tuple[float, float | str, int]]] = defaultdict(list)
    for subject in sorted(scores):
        s = scores[subject]
        acc, stderr = sum(s) / len(s), mean_stderr(s)
        per_task[task_name(subject)] = {
            "name": task_name(subject),
            "alias": subject,
            "sample_len": len(s),
            METRIC: acc,
            STDERR: stderr,
        }
        group = LMEVAL_GROUPS.get(subject, "mmlu_other")
        leaves[group].append((acc, stderr, len(s)))
    groups = {g: group_entry(g, GROUP_ALIASES[g], leaves[g]) for g in GROUP_ORDER if leaves[g]}
    groups["mmlu"] = group_entry("mmlu", "mmlu", [x for v in leaves.values() for x in v])
    subtasks = {
        g: [task_name(s) for s in sorted(scores) if LMEVAL_GROUPS.get(s) == g]
        for g in groups
        if g != "mmlu"
    }
    return {
        "results": {**per_task, **groups},
        "groups": groups,
        "group_subtasks": {**subtasks, "mmlu": list(subtasks)},
        "configs": {task_name(s): task_config(s, few_shots) for s in sorted(scores)},
        "versions": {**{g: "2" for g in groups}, **{task_name(s): 1.0 for s in sorted(scores)}},
        "n-shot": {name: few_shots for name in [*per_task, *groups] if name != "mmlu"},
        "higher_is_better": {name: {"acc": True} for name in [*groups, *per_task]},
        "n-samples": {
            task_name(s): {"original": len(scores[s]), "effective": len(scores[s])}
            for s in sorted(scores)
        },
        "config": dict(config),
    }


def task_config(subject: str, few_shots: int) -> dict[str, Any]:
    """The parts of lm-eval's task config (lm_eval/tasks/mmlu/default) this run follows."""
    words = subject.replace("_", " ")
    return {
        "task": task_name(subject),
        "task_alias": subject,
        "tag": LMEVAL_GROUPS.get(subject, "mmlu_other") + "_tasks",
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "doc_to_choice": list(LETTERS),
        "description": f"The following are multiple choice questions (with answers) about "
        f"{words}.\n\n",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "num_fewshot": few_shots,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def run_config(cfg: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """lm-eval's `config` section for a run (result.json's config and model sections)."""
    return {
        "model": "mmlubench",
        "model_args": f"pretrained={model.get('path')}",
        "model_num_parameters": model.get("n_params"),
        "model_dtype": model.get("dtype"),
        "model_revision": model.get("revision"),
        "model_name": cfg.get("model") or model.get("path"),
        "batch_size": "auto (out-of-memory back-off)",
        "device": cfg.get("device"),
        "prompt_style": cfg.get("prompt_style"),
        "scoring": "choices",
        # lm-eval's own numbers need lm-eval's prompts: `--prompt-style lm-eval`.
        "lm_eval_prompts": cfg.get("prompt_style") == "lm-eval",
    }


def read_predictions(path) -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    return [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def from_run(run_dir, cfg: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """The lm-eval results document of a run folder (its predictions.jsonl)."""
    from pathlib import Path

    rows = read_predictions(Path(run_dir) / "predictions.jsonl")
    return results(subject_scores(rows), int(cfg.get("few_shots", 5)), run_config(cfg, model))


def samples(
    rows: Sequence[Mapping[str, Any]],
    texts: Mapping[tuple[str, int], str] | None,
    pass_name: str = "infer",
) -> dict[str, list[dict[str, Any]]]:
    """lm-eval's samples records, by task: per question the four continuations' (log-likelihood,
    is_greedy) pairs, target, acc; `arguments` holds the prompt when `texts` are given."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        p = row[pass_name]
        lls = p.get("loglikelihoods") or [None] * 4
        greedy = [p["token"] == letter for letter in LETTERS]
        resps = [[ll, g] for ll, g in zip(lls, greedy, strict=True)]
        target = LETTERS.index(row["gold"])
        record = {
            "doc_id": row["index"],
            "doc": {"subject": row["subject"], "answer": target},
            "target": target,
            "resps": [[r] for r in resps],
            "filtered_resps": resps,
            "filter": "none",
            "metrics": ["acc"],
            "acc": float(p["choices"] == row["gold"]),
            "gold": row["gold"],
            "prediction": p["choices"],
        }
        text = (texts or {}).get((row["subject"], row["index"]))
        if text is not None:
            record["arguments"] = {
                f"gen_args_{i}": {"arg_0": text, "arg_1": f" {letter}"}
                for i, letter in enumerate(LETTERS)
            }
        out[task_name(row["subject"])].append(record)
    return dict(out)


RESULTS_FILE = "results_lm-eval.json"
SAMPLES_DIR = "samples_lm-eval"


def write_files(
    run_dir,
    config: Mapping[str, Any],
    model: Mapping[str, Any],
    texts: Mapping[tuple[str, int], str],
    log_samples: bool,
) -> None:
    """results_lm-eval.json beside predictions.jsonl (which must be written), and with
    `log_samples` one samples_<task>.jsonl per subject under samples_lm-eval/."""
    from pathlib import Path

    from mmlubench.data.prompts import json_line
    from mmlubench.results.files import write_json_atomic, write_text_atomic

    run_dir = Path(run_dir)
    rows = read_predictions(run_dir / "predictions.jsonl")
    doc = results(subject_scores(rows), int(config.get("few_shots", 5)), run_config(config, model))
    write_json_atomic(run_dir / RESULTS_FILE, doc)
    if not log_samples:
        return
    (run_dir / SAMPLES_DIR).mkdir(exist_ok=True)
    for task, records in samples(rows, texts).items():
        write_text_atomic(
            run_dir / SAMPLES_DIR / f"samples_{task}.jsonl",
            lambda f, records=records: [f.write(json_line(r)) for r in records],
        )
