"""The eager engine's methods compute what the plain model computes, one prompt at a time.

Reference values: the HF model's own last-position logits, one prompt per call with its ids
only (method `reference`), on real prompts of real subjects, truncated ones included (CPU, fp32).
Checked: `prefix-cache` (HF DynamicCache of each prefix, then batches of suffixes) and `padded`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG

from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request, causal_pairs
from mmlubench.engines.batching import Suffixes, cut_sorted, plan_prefix_cache
from mmlubench.errors import ConfigError
from mmlubench.run.passes import run_pass

# Short and long subjects; high_school_european_history prompts need truncation.
SUBJECTS = ["abstract_algebra", "high_school_european_history", "college_computer_science"]


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY_CONFIG, **overrides})).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def prompts(mmlu_dir, tokenizer):
    return build_prompts(load_mmlu(mmlu_dir, "test", SUBJECTS, limit=10), tokenizer)


def run(model, requests, tokenizer, **options):
    engine = KeepLogits(
        engine_class("eager")(model, engine_options("eager", options), "cpu"), len(requests)
    )
    result = run_pass("val", engine, requests, choice_token_ids(tokenizer), progress=False)
    result.logits = engine.logits
    return result


@pytest.mark.parametrize(("kv_heads", "kv_store"), [(4, True), (2, True), (4, False)])
def test_prefix_cache_matches_one_prompt_per_call(prompts, tokenizer, kv_heads, kv_store):
    """MHA, and GQA as Llama-3's; with the kept prefix buffers and with HF's DynamicCache."""
    assert any(p.dropped for p in prompts), "the sample must include truncated prompts"
    model = tiny_llama(num_key_value_heads=kv_heads)
    # Two prompts opt out of sharing (prefix_len 0): they run whole, padded, and must match too.
    requests = [Request(p.ids, 0 if i in (3, 17) else p.prefix_len) for i, p in enumerate(prompts)]
    ref = run(model, requests, tokenizer, method="reference")
    fast = run(
        model,
        requests,
        tokenizer,
        method="prefix-cache",
        batch_size=4,
        batch_tokens=4096,
        kv_store=kv_store,
    )
    assert fast.engine["options"]["method"] == "prefix-cache"
    assert fast.engine["options"]["kv_store"] is kv_store
    assert ref.engine["options"]["method"] == "reference"
    assert fast.batches > len({p.subject for p in prompts})  # several batches per prefix
    assert (fast.logits - ref.logits).abs().max().item() <= 1e-4
    assert np.array_equal(fast.top_ids, ref.top_ids)
    # Each distinct prefix computed once: far fewer tokens than the prompts hold.
    prefixes = {r.ids[: r.prefix_len].tobytes(): r.prefix_len for r in requests if r.prefix_len}
    suffixes = sum(len(r.ids) - r.prefix_len for r in requests)
    assert fast.work.tokens == suffixes + sum(prefixes.values())


def test_kept_prefix_rows_are_reused_and_relaid(prompts, tokenizer):
    """The buffers take a prefix once per row, not once per batch; the logits stay those of
    one prompt per call."""
    model = tiny_llama()
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    engine = engine_class("eager")(
        model, engine_options("eager", {"batch_size": 4, "batch_tokens": 3000}), "cpu"
    )
    kept = KeepLogits(engine, len(requests))
    run_pass("val", kept, requests, choice_token_ids(tokenizer), progress=False)
    ref = run(model, requests, tokenizer, method="reference")
    assert (kept.logits - ref.logits).abs().max().item() <= 1e-4
    store = engine.prefixes.stores[0]
    rows = sum(len(b.rows) for b in engine.plan(requests) if isinstance(b.payload, Suffixes))
    assert store.rows_filled < rows  # rows kept from one batch to the next
    assert store.layouts >= len(SUBJECTS)  # a longer prefix needs longer rows


def test_kv_store_lays_rows_out_again_when_a_batch_needs_more():
    """Which rows hold the prefix after each call, on hand-made tensors: rows are filled once,
    kept while a batch fits the layout, and filled again after a new layout or prefix."""
    from mmlubench.engines.prefix_kv import KVStore

    store = KVStore(positions=40)
    a = (torch.arange(12.0).view(1, 2, 3, 2), -torch.arange(12.0).view(1, 2, 3, 2))
    b = (a[0] + 100, a[1] + 100)
    calls = [(a, b"a", 2, 7), (a, b"a", 4, 5), (a, b"a", 5, 4), (b, b"b", 3, 2), (b, b"b", 4, 2)]
    seen = []
    for prefix, pid, rows, width in calls:
        keys, values = store.views(prefix, pid, rows, width)
        assert keys.shape[2] >= 3 + width and keys.shape[0] * keys.shape[2] <= store.positions
        assert torch.equal(keys[:rows, :, :3], prefix[0].expand(rows, -1, -1, -1))
        assert torch.equal(values[:rows, :, :3], prefix[1].expand(rows, -1, -1, -1))
        keys[:rows, :, 3:].fill_(-1)  # a batch's suffixes must not disturb the prefix
        seen.append((store.layouts, store.rows_filled, keys.shape[0]))
    # rows of 10 positions (4 rows); 4 rows of 10 still fit; 5 rows need rows of 7 (5 rows);
    # the new prefix fits that layout and is copied into 3, then 4 rows.
    assert seen == [(1, 2, 4), (1, 4, 4), (2, 9, 5), (2, 12, 5), (2, 13, 5)]


def test_padded_matches_one_prompt_per_call(prompts, tokenizer):
    model = tiny_llama()
    requests = [Request(p.ids, p.prefix_len) for p in prompts[:12]]
    ref = run(model, requests, tokenizer, method="reference")
    padded = run(model, requests, tokenizer, method="padded", batch_size=5)
    assert (padded.logits - ref.logits).abs().max().item() <= 1e-4
    assert np.array_equal(padded.top_ids, ref.top_ids)


def test_plan_prefix_cache_batches():
    rng = np.random.default_rng(0)
    prefix = rng.integers(5, 900, size=20)
    lengths = [8, 2, 9, 1, 5]
    requests = [
        Request(np.concatenate([prefix, rng.integers(5, 900, size=n)]).astype(np.int32), 20)
        for n in lengths
    ]
    requests.append(Request(rng.integers(5, 900, size=12).astype(np.int32), 0))  # whole
    batches = plan_prefix_cache(requests, batch_size=2, batch_tokens=1000)
    assert sorted(r for b in batches for r in b.rows) == list(range(6))
    cached = [b for b in batches if isinstance(b.payload, Suffixes)]
    # Longest suffixes first, at most two per batch, the fewest batches (3) and among those
    # the least padding: [9, 8] [5] [2, 1] pads 1 token, [9] [8, 5] [2, 1] would pad 3.
    assert [b.rows for b in cached] == [[2, 0], [4], [1, 3]]
    for b in cached:
        assert [id(r) for r in b.payload.requests] == [id(requests[i]) for i in b.rows]
    # The prefix's work is counted once, in the first batch.
    assert cached[0].work.tokens == 20 + 9 + 8
    assert cached[0].work.attention_pairs == (
        causal_pairs(20) + causal_pairs(9, 20) + causal_pairs(8, 20)
    )
    assert cached[1].work.tokens == 5
    assert cached[2].work.padded_tokens == 2 * 2
    # rows x (prefix + longest suffix) bounds a batch: even 2 x (20 + 2) > 40.
    tight = plan_prefix_cache(requests[:5], batch_size=8, batch_tokens=40)
    assert [len(b.rows) for b in tight] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("seed", range(5))
def test_cut_sorted_is_the_cheapest_partition(seed):
    import itertools

    rng = np.random.default_rng(seed)
    widths = sorted(rng.integers(1, 60, size=7).tolist(), reverse=True)
    prefix, size, tokens, cost = 10, 3, 160, 20

    def price(cuts):
        total = 0
        for a, b in itertools.pairwise(cuts):
            if b - a > size or ((b - a) * (prefix + widths[a]) > tokens and b - a > 1):
                return None
            total += (b - a) * widths[a] + cost
        return total

    every = [[0, *inner, 7] for k in range(7) for inner in itertools.combinations(range(1, 7), k)]
    best = min(p for c in every if (p := price(c)) is not None)
    assert price(cut_sorted(widths, prefix, size, tokens, cost)) == best


def test_split_halves_a_prefix_batch(prompts, tokenizer):
    model = tiny_llama()
    requests = [Request(p.ids, p.prefix_len) for p in prompts[:8]]
    engine = engine_class("eager")(model, engine_options("eager", {"batch_size": 8}), "cpu")
    (batch, *_) = engine.plan(requests)
    parts = engine.split(batch)
    assert sorted(r for p in parts for r in p.rows) == sorted(batch.rows)
    assert all(len(p.rows) < len(batch.rows) for p in parts)
    assert sum(p.work.tokens for p in parts) < batch.work.tokens  # prefix not counted again


@pytest.mark.parametrize(
    "bad", [{"method": "fast"}, {"batch_size": 0}, {"method": "prefix-cache", "full_logits": True}]
)
def test_bad_options_are_rejected(bad):
    with pytest.raises(ConfigError, match=r"engines\.eager"):
        engine_options("eager", bad)


def test_reference_method_is_batch_one_with_all_logits():
    opts = engine_options("eager", {"method": "reference", "batch_size": 32})
    assert (opts.batch_size, opts.full_logits) == (1, True)


def test_sdpa_backends_leave_out_cudnn_only():
    import torch

    from mmlubench.engines.eager import sdpa_backends

    b = torch.backends.cuda
    before = (
        b.cudnn_sdp_enabled(),
        b.flash_sdp_enabled(),
        b.mem_efficient_sdp_enabled(),
        b.math_sdp_enabled(),
    )
    with sdpa_backends(False):
        assert not b.cudnn_sdp_enabled()
        assert b.flash_sdp_enabled() and b.mem_efficient_sdp_enabled() and b.math_sdp_enabled()
    with sdpa_backends(True):
        assert b.cudnn_sdp_enabled() == before[0]
    assert (
        b.cudnn_sdp_enabled(),
        b.flash_sdp_enabled(),
        b.mem_efficient_sdp_enabled(),
        b.math_sdp_enabled(),
    ) == before
