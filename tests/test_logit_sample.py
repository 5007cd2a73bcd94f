"""The whole-vocabulary val/infer logit distance on a sample (mmlubench/results/logit_sample.py):
which questions, what is kept, and the figure result.json reports, against values computed
here from logits kept independently (bench/logits.py's KeepLogits)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.results import logit_sample
from mmlubench.run.passes import run_pass


def test_sample_is_evenly_spread_and_bounded():
    m = logit_sample.members(14042)
    rows = np.flatnonzero(m)
    assert len(rows) == 512 and rows[0] == 0 and rows[-1] == 14041
    assert np.diff(rows).min() >= 27 and np.diff(rows).max() <= 28  # 14041 / 511 = 27.5
    assert logit_sample.members(7).all() and not logit_sample.members(0).size


def test_keep_takes_sample_rows_once_and_rel_l2_is_the_norm_ratio():
    sample = np.array([True, False, True, True])
    store: dict[int, np.ndarray] = {}
    logit_sample.keep(store, sample, np.array([2, 1]), torch.tensor([[3.0, 4.0], [9.0, 9.0]]))
    logit_sample.keep(store, sample, np.array([3, 2]), torch.tensor([[1.0, 0.0], [7.0, 7.0]]))
    assert sorted(store) == [2, 3] and store[2].tolist() == [3.0, 4.0]  # the first one stays
    other = {2: np.array([3.0, 4.0 + 5.0]), 3: np.array([1.0, 0.0]), 0: np.array([1.0, 1.0])}
    # question 2: ||(0, 5)|| / ||(3, 4)|| = 1; question 3: 0; question 0 is in one store only
    assert logit_sample.rel_l2(store, other) == (0.5, 1.0, 2)
    assert logit_sample.rel_l2({}, other) == (None, None, 0)


@pytest.fixture(scope="module")
def requests(mmlu_dir, tokenizer):
    prompts = build_prompts(
        load_mmlu(mmlu_dir, "test", ["abstract_algebra", "college_computer_science"], limit=6),
        tokenizer,
    )
    return [Request(p.ids, p.prefix_len) for p in prompts]


def test_passes_keep_exactly_the_engines_logits_of_the_sample(tiny_model, tokenizer, requests):
    """Every sample question's kept logits are the engine's own, whatever the batch order
    (eager sorts by length, shared-prefix packs by subject)."""
    sample = logit_sample.members(len(requests), size=5)
    kept = {}
    for name, opts in [
        ("eager", {"batch_size": 4}),
        ("shared-prefix", {"compile": False, "pack_tokens": 2048}),
    ]:
        engine = KeepLogits(
            engine_class(name)(tiny_model, engine_options(name, opts), "cpu"), len(requests)
        )
        result = run_pass(
            name, engine, requests, choice_token_ids(tokenizer), progress=False, sample=sample
        )
        assert sorted(result.sample_logits) == np.flatnonzero(sample).tolist()
        for q, row in result.sample_logits.items():
            assert np.array_equal(row, engine.logits[q].numpy())
        kept[name] = (result.sample_logits, engine.logits)
    (val, val_all), (infer, infer_all) = kept["eager"], kept["shared-prefix"]
    rows = np.flatnonzero(sample)
    a, b = val_all[rows].double(), infer_all[rows].double()
    ratios = ((b - a).norm(dim=-1) / a.norm(dim=-1)).numpy()
    mean, biggest, n = logit_sample.rel_l2(val, infer)
    assert n == 5 and mean == pytest.approx(ratios.mean(), rel=1e-12)
    assert biggest == pytest.approx(ratios.max(), rel=1e-12) and 0 < biggest < 1e-4  # fp32 CPU


def test_a_run_reports_the_sample_distance(demo_run_dirs):
    """A CPU run with both passes reports it (fp32: tiny; zero when one engine ran both)."""
    for run in demo_run_dirs.values():
        data = json.loads((run / "result.json").read_text(encoding="utf-8"))
        agree = data["accuracy"]["agreement_val_infer"]
        assert agree["logits_sample_questions"] == min(512, data["passes"]["infer"]["questions"])
        assert 0 <= agree["logits_rel_l2_mean"] <= agree["logits_rel_l2_max"] < 1e-3
