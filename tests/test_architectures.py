"""The shared-prefix engine on the model's own modules: exact for every listed architecture.

For tiny random models of ten architectures (tests/arch_helpers.py: non-zero biases and norms,
sliding windows shorter than the prompts, soft-capping, q/k norms, fused projections, MoE), the
golden values are the HF model's own last-position logits, one whole prompt per call with no
padding (eager engine, method padded, batch 1), independent of the packing, masks, carry and
attention function under test. Val (the eager engine's default method) and shared-prefix
infer, with the carry on and off, must give the same top token for every question and logits
within 1e-4, on real MMLU rows including a subject whose prompts are truncated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from arch_helpers import ARCHS, WINDOW, tiny_model

from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.errors import RunError
from mmlubench.run.passes import run_pass

SUBJECTS = {"abstract_algebra": 4, "high_school_european_history": 2, "global_facts": 4}
INFER = {"pack_tokens": 2560, "max_questions": 3, "compile": False, "block_size": 128}


@pytest.fixture(scope="module")
def requests_(mmlu_dir, tokenizer):
    prompts = []
    for subject, n in SUBJECTS.items():
        prompts += build_prompts(load_mmlu(mmlu_dir, "test", [subject], limit=n), tokenizer)
    assert any(p.dropped for p in prompts), "the sample must include truncated prompts"
    assert min(len(p.ids) for p in prompts) > WINDOW, "windows must cut every prompt"
    return [Request(p.ids, p.prefix_len) for p in prompts]


def logits_of(model, name, requests, tokenizer, **options):
    engine = KeepLogits(
        engine_class(name)(model, engine_options(name, options), "cpu"), len(requests)
    )
    result = run_pass(name, engine, requests, choice_token_ids(tokenizer), progress=False)
    return result, engine.logits


@pytest.mark.parametrize("arch", list(ARCHS))
def test_val_and_infer_match_the_whole_prompt(arch, requests_, tokenizer):
    model = tiny_model(arch, seed=len(arch))
    golden, want = logits_of(model, "eager", requests_, tokenizer, method="padded", batch_size=1)
    runs = {"val": logits_of(model, "eager", requests_, tokenizer)}
    for carry in (2048, 0):
        runs[f"infer carry {carry}"] = logits_of(
            model, "shared-prefix", requests_, tokenizer, carry_tokens=carry, **INFER
        )
    for what, (result, got) in runs.items():
        assert np.array_equal(result.top_ids, golden.top_ids), (arch, what)
        assert (got - want).abs().max().item() <= 1e-4, (arch, what)
    infer = runs["infer carry 2048"][0]
    assert infer.batches > 2, "the sample must span packs"
    assert infer.work.tokens < sum(len(r.ids) for r in requests_), "prefixes were shared"


def test_compiled_layers_of_two_kinds_are_two_graphs(requests_, tokenizer):
    """Gemma-2 alternates sliding and full layers: two graphs, none recompiled per pack."""
    from torch._dynamo.utils import counters

    model = tiny_model("gemma2", seed=3)
    _, want = logits_of(model, "eager", requests_, tokenizer, method="padded", batch_size=1)
    torch._dynamo.reset()
    counters.clear()
    result, got = logits_of(
        model, "shared-prefix", requests_, tokenizer, **{**INFER, "compile": True}
    )
    assert counters["stats"]["unique_graphs"] == 2
    assert result.batches > 2
    assert (got - want).abs().max().item() <= 1e-4


def test_the_val_model_is_left_as_it_was(requests_, tokenizer):
    """The engine plugs its attention and compiled layers in only while it runs."""
    model = tiny_model("qwen2", seed=5)
    before = model.config._attn_implementation
    logits_of(model, "shared-prefix", requests_[:3], tokenizer, **INFER)
    assert model.config._attn_implementation == before
    assert all(layer._compiled_call_impl is None for layer in model.model.layers)


def test_window_pairs_are_counted(requests_):
    """Sliding-window layers attend fewer pairs; the plan counts them for FLOP accounting."""
    from mmlubench.engines.packing import plan_packs

    plain = plan_packs(requests_, 2560, 3, True, 128)
    windowed = plan_packs(requests_, 2560, 3, True, 128, window=WINDOW)
    for a, b in zip(plain, windowed, strict=True):
        assert a.work.window_pairs is None
        assert 0 < b.work.window_pairs < b.work.attention_pairs == a.work.attention_pairs
        # every real token sees at most WINDOW keys, and at least one
        assert a.work.tokens <= b.work.window_pairs <= a.work.tokens * WINDOW


def test_sliding_layers_count_their_window_pairs():
    """mfu_computed counts, in each sliding-window layer, the pairs inside the window."""
    from mmlubench.results.metrics import ModelShape, work_flops

    shape = ModelShape.from_config(tiny_model("gemma2").config)  # layers: sliding, full
    assert (shape.layers, shape.sliding_layers) == (2, 1)
    per_layer = 4 * shape.heads * shape.head_dim
    full = work_flops(shape, 10, 1000, 0)
    assert full == 10 * shape.matmul_flops_per_token + 2 * 1000 * per_layer
    assert work_flops(shape, 10, 1000, 0, window_pairs=300) == full - 700 * per_layer


def test_a_model_without_flex_support_is_refused_by_name():
    model = tiny_model("llama")
    type(model)._supports_flex_attn = False
    try:
        with pytest.raises(RunError, match=r"LlamaForCausalLM.*flex_attention.*--engine eager"):
            engine_class("shared-prefix")(model, engine_options("shared-prefix", {}), "cpu")
    finally:
        type(model)._supports_flex_attn = True


def test_fused_projections_are_one_gemm_and_exact(requests_, tokenizer, monkeypatch):
    """With fuse_projections the k/v and up projections are parts of the q and gate GEMMs:
    their own modules never run, and the logits are those of the unfused engine."""
    from torch import nn

    model = tiny_model("qwen2", seed=7)  # q/k/v biases
    own = []
    real = nn.Linear.forward

    def spy(self, x):
        if self is model.model.layers[0].self_attn.k_proj:
            own.append(1)
        return real(self, x)

    monkeypatch.setattr(nn.Linear, "forward", spy)
    _, fused = logits_of(model, "shared-prefix", requests_[:4], tokenizer, **INFER)
    assert not own
    _, plain = logits_of(
        model, "shared-prefix", requests_[:4], tokenizer, fuse_projections=False, **INFER
    )
    assert own
    assert (fused - plain).abs().max().item() <= 1e-5


def test_fp8_refuses_stacked_moe_experts(monkeypatch):
    """fp8 swaps nn.Linear modules; Mixtral's experts are stacked tensors, which would stay
    fp16 unsaid: refused, naming the weight."""
    from mmlubench.engines import fp8

    monkeypatch.setattr(fp8, "check_device", lambda device: None)
    monkeypatch.setattr(fp8, "scaled_mm_out_dtype", lambda device: torch.float32)
    with pytest.raises(RunError, match=r"precision fp8: layer 0's .*experts.* stacked weight"):
        engine_class("shared-prefix")(
            tiny_model("mixtral"),
            engine_options("shared-prefix", {"fp8": True, "compile": False}),
            "cpu",
        )
