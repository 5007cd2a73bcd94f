"""The shared-prefix engine's carry: a subject's prefix computed once across packs, exactly.

Golden values come from the eager engine run whole prompt by whole prompt (method padded,
batch 1: the HF model's own forward), independent of packing, carry, block masks and the
hand-written decoder layer. Small packs and question limits make each subject span 2 to 4
packs; chains are broken on purpose (resume, a data-parallel-like share, an OOM split).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from case_helpers import make_model_dir
from layout_helpers import assert_layout_matches_flex

from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids, load_tokenizer
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request, causal_pairs
from mmlubench.engines.packing import plan_packs
from mmlubench.run.passes import run_pass

SHORT = ["abstract_algebra", "college_computer_science", "global_facts"]
LONG = [*SHORT, "high_school_european_history"]  # its prompts are truncated
# case, subjects, shared-prefix options: packs of 1024 hold only the short subjects (the
# 743-token prefix of college_computer_science does not fit a 512 carry: recomputed per pack);
# packs of 2048 hold the truncated prompts too, with a carry that holds every prefix (GQA,
# 128k vocabulary).
SETUPS = {
    "deepseek": (
        "deepseek_7b_mmlu",
        SHORT,
        {"pack_tokens": 1024, "carry_tokens": 512, "max_questions": 3, "compile": True},
    ),
    "llama3": (
        "llama3_8b_mmlu",
        LONG,
        {"pack_tokens": 2048, "carry_tokens": 1536, "max_questions": 4, "compile": True},
    ),
}


@pytest.fixture(scope="module", params=list(SETUPS))
def setup(request, tmp_path_factory, mmlu_dir):
    """(tokenizer, requests, tiny model, golden logits, options) of one setup."""
    from transformers import AutoConfig, AutoModelForCausalLM

    case, subjects, options = SETUPS[request.param]
    model_dir = make_model_dir(case, tmp_path_factory.mktemp(case))
    tokenizer = load_tokenizer(model_dir)
    prompts = build_prompts(load_mmlu(mmlu_dir, "test", subjects, limit=10), tokenizer)
    # Two prompts opt out of sharing (prefix_len 0), one in the middle of a subject.
    requests = [Request(p.ids, 0 if i in (4, 11) else p.prefix_len) for i, p in enumerate(prompts)]
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.requires_grad_(False)
    golden = logits_of(
        model, "eager", requests, tokenizer, {"method": "padded", "batch_size": 1}
    ).logits
    return tokenizer, requests, model, golden, {**options, "block_size": 64}


def logits_of(model, name, requests, tokenizer, options, engine=None, **run):
    """run_pass through `engine` (or a new one), keeping every row's logits."""
    engine = engine or engine_class(name)(model, engine_options(name, options), "cpu")
    kept = KeepLogits(engine, len(requests))
    result = run_pass(name, kept, requests, choice_token_ids(tokenizer), progress=False, **run)
    result.logits = kept.logits
    return result


def assert_exact(result, golden, rows):
    rows = np.asarray(rows)
    assert result.answered[rows].all() and result.answered.sum() == len(rows)
    assert (result.logits[rows] - golden[rows]).abs().max().item() <= 1e-4
    assert torch.equal(result.logits[rows].argmax(-1), golden[rows].argmax(-1))


def test_carry_on_and_off_match_eager(setup):
    from torch._dynamo.utils import counters

    tokenizer, requests, model, golden, options = setup
    torch._dynamo.reset()
    counters.clear()
    on = logits_of(model, "shared-prefix", requests, tokenizer, options)
    if options["compile"]:  # one graph for all layers and all packs
        assert counters["stats"]["unique_graphs"] == 1
    off = logits_of(model, "shared-prefix", requests, tokenizer, {**options, "carry_tokens": 0})
    everything = range(len(requests))
    assert_exact(on, golden, everything)
    assert_exact(off, golden, everything)
    assert on.work.tokens < off.work.tokens  # the carry saved prefix recomputations
    assert on.work.logit_rows == off.work.logit_rows == len(requests)


def plan_of(options, requests):
    o = engine_options("shared-prefix", options)
    return plan_packs(
        requests,
        o.pack_tokens,
        o.max_questions,
        o.share_prefix,
        o.block_size,
        carry_tokens=o.carry_tokens,
    )


def chains(batches) -> list[int]:
    """Indices of packs that take their prefix from the carry."""
    return [i for i, b in enumerate(batches) if b.payload.carry_in_key is not None]


def test_broken_chains_are_exact(setup):
    """A pack that starts mid-chain first reruns the pack that computed its carry-in, and its
    work says so; a resume and a share that start there give the very logits of an unbroken
    run (the same keys/values, computed as then), through the same compiled graph."""
    from torch._dynamo.utils import counters

    tokenizer, requests, model, golden, options = setup
    batches = plan_of(options, requests)
    carried = chains(batches)
    assert len(carried) >= 4 and any(i - 1 in carried for i in carried)  # chains of 3+ packs
    start = next(i for i in carried if i - 1 in carried)  # a pack in the middle of a chain
    first = batches[start]
    origin = first.payload.carry_origin
    assert origin is batches[start - 2].payload  # placed the prefix, carried on by start - 1
    engine = engine_class("shared-prefix")(model, engine_options("shared-prefix", options), "cpu")
    counters.clear()
    unbroken = logits_of(model, "shared-prefix", requests, tokenizer, options, engine).logits
    planned = first.work.tokens
    with torch.inference_mode():
        engine.forward(engine.load(first))
    assert first.work.tokens == planned + origin.work.tokens
    # run_pass warms up on its first pack, which leaves that pack's carry-out behind: its
    # timed run reruns the origin only if the pack leaves another prefix than it takes.
    again = origin.work.tokens if first.payload.carry_out_key != first.payload.carry_in_key else 0
    planned = sum(b.payload.work.tokens for b in batches[start:])
    done = np.zeros(len(requests), bool)
    done[[r for b in batches[:start] for r in b.rows]] = True
    rows = np.flatnonzero(~done)
    for run in ({"done": done}, {"share": lambda planned_batches: planned_batches[start:]}):
        result = logits_of(model, "shared-prefix", requests, tokenizer, options, engine, **run)
        assert_exact(result, golden, rows)
        assert torch.equal(result.logits[rows], unbroken[rows])
        assert result.work.tokens == planned + again
    assert counters["stats"]["unique_graphs"] <= 1


def test_split_of_a_carried_pack_is_exact(setup):
    """An OOM in the second layer of a carried pack (after the first layer's carry was
    replaced): the runner splits it, and every answer is still exact."""
    tokenizer, requests, model, golden, options = setup
    target = plan_of(options, requests)[chains(plan_of(options, requests))[1]]
    engine = engine_class("shared-prefix")(model, engine_options("shared-prefix", options), "cpu")
    second, load, calls = engine.compiled[1], engine.load, []
    assert second is not None, "the setups compile the decoder layers"

    def failing_load(batch):
        if batch.rows == target.rows and not calls:
            calls.append(0)  # arm: the next forward fails in its second layer
        return load(batch)

    def failing_layer(*args, **kwargs):
        if calls and calls[0] == 0:
            calls[0] = -1
            raise torch.OutOfMemoryError("test: out of memory")
        return second(*args, **kwargs)

    engine.load, engine.compiled[1] = failing_load, failing_layer
    result = logits_of(model, "shared-prefix", requests, tokenizer, options, engine)
    assert [b["questions"] for b in result.oom_backoffs] == [len(target.rows)]
    assert_exact(result, golden, range(len(requests)))


def synthetic(groups, seed=0):
    """Requests of random ids: `groups` is [(prefix_len, [prompt lengths])], prefix_len 0 for
    requests that share nothing."""
    rng = np.random.default_rng(seed)
    out = []
    for prefix_len, lengths in groups:
        prefix = rng.integers(5, 1000, size=prefix_len)
        out += [
            Request(
                np.concatenate([prefix, rng.integers(5, 1000, size=n - prefix_len)]), prefix_len
            )
            for n in lengths
        ]
    return out


def test_planned_work_is_each_prefix_once():
    rng = np.random.default_rng(1)
    groups = [
        (p, list(rng.integers(p + 10, p + 90, size=k)))
        for p, k in ((100, 30), (250, 7), (0, 3), (60, 45), (255, 1), (180, 20))
    ]
    requests = synthetic(groups)
    batches = plan_packs(requests, 512, 8, True, 64, carry_tokens=256)
    assert sorted(r for b in batches for r in b.rows) == list(range(len(requests)))
    assert len(chains(batches)) >= 6  # groups span several packs
    suffixes = sum(n - p for p, lengths in groups for n in lengths)
    prefixes = sum(p for p, _ in groups)
    assert sum(b.work.tokens for b in batches) == prefixes + suffixes
    pairs = sum(
        causal_pairs(p) + sum(causal_pairs(n - p, p) for n in lengths) for p, lengths in groups
    )
    assert sum(b.work.attention_pairs for b in batches) == pairs
    # Without the carry, every pack holding a group's questions holds its prefix too.
    uncarried = plan_packs(requests, 512, 8, True, 64)
    copies = sum(len({requests[i].prefix_len for i in b.rows} - {0}) for b in uncarried)
    assert copies > sum(1 for p, _ in groups if p)


def test_block_layout_with_carry_matches_flex_create_block_mask():
    requests = synthetic([(150, [200] * 9), (0, [90]), (70, [120] * 6)], seed=3)
    T, C, B = 512, 256, 64
    batches = plan_packs(requests, T, 64, True, B, carry_tokens=C)
    assert chains(batches)
    for b in batches:
        assert_layout_matches_flex(b.payload, T, B, C)


@pytest.mark.parametrize("carry", [-128, 100])
def test_bad_carry_is_rejected(carry):
    from mmlubench.errors import ConfigError

    with pytest.raises(ConfigError, match="carry_tokens"):
        engine_options("shared-prefix", {"carry_tokens": carry})
