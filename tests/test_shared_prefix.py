"""The shared-prefix engine computes what the plain model computes, on real prompts (CPU, fp32).

The reference values are the HF model's own last-position logits, one prompt at a time, no
padding (the eager engine with batch_size 1) — independent of the packing, the block mask and
the hand-written decoder layer under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG
from layout_helpers import assert_layout_matches_flex

from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request, causal_pairs
from mmlubench.engines.packing import plan_packs
from mmlubench.errors import RunError
from mmlubench.run.passes import run_pass

# Short and long subjects; high_school_european_history prompts need truncation.
SUBJECTS = ["abstract_algebra", "high_school_european_history", "college_computer_science"]


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY_CONFIG, **overrides})).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def prompts(mmlu_dir, tokenizer):
    return build_prompts(load_mmlu(mmlu_dir, "test", SUBJECTS, limit=8), tokenizer)


def logits_of(model, name: str, requests, tokenizer, **options):
    engine = KeepLogits(
        engine_class(name)(model, engine_options(name, options), "cpu"), len(requests)
    )
    result = run_pass(name, engine, requests, choice_token_ids(tokenizer), progress=False)
    result.logits = engine.logits
    return result


def test_prompts_cover_truncation_and_sharing(prompts):
    assert any(p.dropped for p in prompts), "the sample must include truncated prompts"
    assert all(p.prefix_len > 0 for p in prompts)


@pytest.mark.parametrize(
    ("kv_heads", "compile_", "pack"),
    [(4, True, 2048), (2, False, 2048)],  # compiled MHA; eager FlexAttention with GQA
)
def test_logits_match_eager(prompts, tokenizer, kv_heads, compile_, pack):
    model = tiny_llama(num_key_value_heads=kv_heads)
    # Two prompts opt out of sharing (prefix_len 0): they must come out exact too.
    requests = [Request(p.ids, 0 if i in (3, 11) else p.prefix_len) for i, p in enumerate(prompts)]
    ref = logits_of(model, "eager", requests, tokenizer, batch_size=1)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    fast = logits_of(
        model,
        "shared-prefix",
        requests,
        tokenizer,
        pack_tokens=pack,
        compile=compile_,
        block_size=128,
    )
    assert fast.batches > 1, "the sample must span several packs"
    if compile_:  # one graph for all layers and all packs: nothing recompiles per pack
        assert counters["stats"]["unique_graphs"] == 1
    assert (fast.logits - ref.logits).abs().max().item() <= 1e-4
    assert np.array_equal(fast.top_ids, ref.top_ids)
    # Fewer tokens computed than prompt tokens answered for: prefixes were shared.
    assert fast.work.tokens < sum(len(r.ids) for r in requests)
    assert fast.work.logit_rows == len(requests)


def test_the_engine_leaves_the_hf_model_computing_as_before(prompts, tokenizer):
    """Building and running the engine changes nothing the val pass sees."""
    model = tiny_llama()
    requests = [Request(p.ids, p.prefix_len) for p in prompts[:4]]
    before = logits_of(model, "eager", requests, tokenizer, batch_size=1).logits
    logits_of(model, "shared-prefix", requests, tokenizer, compile=False, pack_tokens=2048)
    after = logits_of(model, "eager", requests, tokenizer, batch_size=1).logits
    assert torch.equal(before, after)


def requests_from(lengths_and_prefix, seed=0):
    """Requests whose first `prefix` ids are shared with every request of the same prefix id."""
    rng = np.random.default_rng(seed)
    prefixes: dict[int, np.ndarray] = {}
    out = []
    for length, prefix_len, group in lengths_and_prefix:
        if group not in prefixes:
            prefixes[group] = rng.integers(5, 1000, size=prefix_len)
        ids = np.concatenate(
            [prefixes[group][:prefix_len], rng.integers(5, 1000, size=length - prefix_len)]
        )
        out.append(Request(ids.astype(np.int32), prefix_len))
    return out


def test_plan_packs_layout():
    spec = [(50, 30, 0)] * 5 + [(40, 0, 1), (70, 20, 2), (70, 20, 2), (64, 30, 0)]
    requests = requests_from(spec)
    T = 256
    batches = plan_packs(requests, T, max_questions=4, share_prefix=True, block_size=64)
    rows = sorted(r for b in batches for r in b.rows)
    assert rows == list(range(len(requests)))  # every request exactly once
    for b in batches:
        pack = b.payload
        assert len(b.rows) <= 4 and len(pack.ids) == T
        for row, last in zip(b.rows, pack.last, strict=True):
            r = requests[row]
            n = len(r.ids) - r.prefix_len
            start = last - n + 1
            # The suffix sits in the pack with positions continuing from its prefix ...
            assert np.array_equal(pack.ids[start : last + 1], r.ids[r.prefix_len :])
            assert np.array_equal(pack.pos[start : last + 1], np.arange(r.prefix_len, len(r.ids)))
            assert (pack.seg_start[start : last + 1] == start).all()
            # ... and sees exactly its own prefix's tokens, placed once in this pack.
            ps, pe = pack.pre_start[start], pack.pre_end[start]
            assert pe - ps == r.prefix_len
            assert np.array_equal(pack.ids[ps:pe], r.ids[: r.prefix_len])
            assert np.array_equal(pack.pos[ps:pe], np.arange(r.prefix_len))
        expected = sum(len(requests[i].ids) for i in b.rows)
        assert b.prompt_tokens == expected
    # Work: suffix tokens plus one prefix copy per (pack, shared prefix) present in it.
    suffixes = sum(len(r.ids) - r.prefix_len for r in requests)
    copies = [
        {requests[i].ids[: requests[i].prefix_len].tobytes() for i in b.rows} for b in batches
    ]
    prefix_tokens = sum(len(key) // 4 for keys in copies for key in keys)  # int32 ids
    assert sum(b.work.tokens for b in batches) == suffixes + prefix_tokens
    assert sum(len(keys - {b""}) for keys in copies) >= 3  # prefix group 0 spans packs


def test_attention_pairs_counted():
    requests = requests_from([(10, 6, 0), (9, 6, 0)])
    (batch,) = plan_packs(requests, 64, 8, True, 16)
    # prefix 6 causal + suffixes of 4 and 3 that each see 6 prefix keys, causally.
    assert batch.work.attention_pairs == causal_pairs(6) + causal_pairs(4, 6) + causal_pairs(3, 6)
    assert batch.work.tokens == 6 + 4 + 3


def test_no_sharing_computes_every_token():
    requests = requests_from([(50, 30, 0)] * 4)
    batches = plan_packs(requests, 256, 16, share_prefix=False, block_size=64)
    assert sum(b.work.tokens for b in batches) == sum(len(r.ids) for r in requests)


def test_too_long_prompt_is_named():
    requests = requests_from([(300, 10, 0)])
    with pytest.raises(RunError, match="pack_tokens"):
        plan_packs(requests, 256, 16, True, 64)


def test_block_layout_matches_flex_create_block_mask():
    spec = [(120, 70, 0)] * 6 + [(90, 0, 1)] + [(200, 150, 2)] * 3
    requests = requests_from(spec, seed=3)
    for b in plan_packs(requests, 512, 64, True, 64):
        assert_layout_matches_flex(b.payload, 512, 64)


def test_an_encoder_decoder_model_is_refused_by_name():
    from transformers import T5Config, T5ForConditionalGeneration

    model = T5ForConditionalGeneration(
        T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    )
    with pytest.raises(RunError, match=r"T5ForConditionalGeneration.*--engine eager"):
        engine_class("shared-prefix")(model, engine_options("shared-prefix", {}), "cpu")


@pytest.mark.parametrize(
    "bad",
    [
        {"pack_tokens": 1000},
        {"block_size": 8},
        {"max_questions": 0},
        {"attention_kernel_options": {"BLOCK_M": [64]}},
        {"attention_kernel_options": 64},
    ],
)
def test_bad_options_are_rejected(bad):
    from mmlubench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"engines\.shared-prefix"):
        engine_options("shared-prefix", bad)


def test_attention_kernel_options_reach_flex_attention(prompts, tokenizer, monkeypatch):
    """The option is FlexAttention's kernel_options in every layer (tuning on the GPU needs
    it); eager FlexAttention on CPU ignores it, so the logits stay those of the default."""
    import torch.nn.attention.flex_attention as fa

    seen, real = [], fa.flex_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("kernel_options"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fa, "flex_attention", spy)
    reqs = [Request(p.ids, p.prefix_len) for p in prompts[:6]]
    model = tiny_llama()
    opts = {"compile": False, "pack_tokens": 2048}
    plain = logits_of(model, "shared-prefix", reqs, tokenizer, **opts).logits
    tuned = {"BLOCK_M": 64, "BLOCK_N": 64}
    seen.clear()
    logits = logits_of(
        model, "shared-prefix", reqs, tokenizer, **opts, attention_kernel_options=tuned
    ).logits
    assert seen and all(k == tuned for k in seen)
    assert len(seen) % TINY_CONFIG["num_hidden_layers"] == 0
    torch.testing.assert_close(logits, plain, rtol=0, atol=0)
