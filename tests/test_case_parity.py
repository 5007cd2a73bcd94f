"""Every engine on every case (CPU, fp32): each case's real tokenizer and real MMLU rows, a tiny
random Llama built from the case's real config.json (its vocabulary, 128k for Llama-3, and its
GQA ratio, 4 query heads per KV head for Llama-3). Each engine's last-position logits must equal
the plain HF model's, computed here one prompt at a time."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from case_helpers import CASES, make_model_dir, model_files

from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids, load_tokenizer
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.run.passes import run_pass

# high_school_european_history prompts need truncation; the others share a 5-shot prefix.
SUBJECTS = ["abstract_algebra", "high_school_european_history", "college_computer_science"]
LIMIT = 2


def eager_variants() -> list[dict]:
    """The eager engine's ways of running (the option set differs between versions)."""
    fields = {f.name for f in dataclasses.fields(engine_class("eager").Options)}
    if "method" in fields:
        return [{"method": m, "batch_size": 4} for m in ("reference", "padded", "prefix-cache")]
    return [{"batch_size": 1, "full_logits": True}, {"batch_size": 4}]


ENGINES = [
    *[("eager", o) for o in eager_variants()],
    ("shared-prefix", {"compile": False, "pack_tokens": 2048, "block_size": 128}),
    ("inductor", {"mode": None, "dynamic": True, "warmup_iters": 1, "warmup_times": 1}),
]
# Compiling costs ~30 s a case on 2 cores: the inductor engine (the whole HF model compiled)
# runs on Llama-3, the case whose shapes (GQA, 128k vocabulary) are new; test_run.py runs it on
# the deepseek shape.
COMPILED_CASES = {"llama3_8b_mmlu"}


COMBOS = [(c, e, o) for c in CASES for e, o in ENGINES if e != "inductor" or c in COMPILED_CASES]


@pytest.fixture(scope="module")
def cases(tmp_path_factory, mmlu_dir):
    """case name -> (tokenizer, prompts, tiny model, expected logits), built once per case."""
    from transformers import AutoConfig, AutoModelForCausalLM

    built: dict[str, tuple] = {}

    def get(name: str):
        if name not in built:
            model_dir = make_model_dir(name, tmp_path_factory.mktemp(name))
            tokenizer = load_tokenizer(model_dir)
            prompts = build_prompts(load_mmlu(mmlu_dir, "test", SUBJECTS, limit=LIMIT), tokenizer)
            torch.manual_seed(0)
            config = AutoConfig.from_pretrained(str(model_dir))
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
            model.requires_grad_(False)
            # The reference values: the HF model's own last logits, one whole prompt at a time.
            with torch.inference_mode():
                expected = torch.stack(
                    [
                        model(torch.as_tensor(p.ids, dtype=torch.long)[None]).logits[0, -1]
                        for p in prompts
                    ]
                )
            built[name] = tokenizer, prompts, model, expected
        return built[name]

    return get


@pytest.mark.parametrize("name", CASES)
def test_tiny_model_keeps_the_case_shape(cases, name):
    tokenizer, prompts, model, _ = cases(name)
    real = json.loads((model_files(name) / "config.json").read_text(encoding="utf-8"))
    c = model.config
    assert c.vocab_size == real["vocab_size"] >= len(tokenizer) - 1
    assert (
        c.num_attention_heads // c.num_key_value_heads
        == real["num_attention_heads"] // real["num_key_value_heads"]
    )
    assert c.rope_parameters["rope_theta"] == real["rope_theta"]  # transformers 5 layout
    assert any(p.dropped for p in prompts), "the sample must include truncated prompts"
    assert max(int(p.ids.max()) for p in prompts) < c.vocab_size


@pytest.mark.parametrize(
    ("name", "engine", "options"),
    COMBOS,
    ids=[f"{c}-{e}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for c, e, o in COMBOS],
)
def test_engine_matches_plain_model(cases, name, engine, options):
    tokenizer, prompts, model, expected = cases(name)
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    torch._dynamo.reset()
    runner = KeepLogits(
        engine_class(engine)(model, engine_options(engine, options), "cpu"), len(requests)
    )
    result = run_pass(engine, runner, requests, choice_token_ids(tokenizer), progress=False)
    assert (runner.logits - expected).abs().max().item() <= 1e-4
    assert result.top_ids.tolist() == expected.argmax(-1).tolist()
    assert result.work.logit_rows >= len(requests)
