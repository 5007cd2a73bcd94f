"""Spliced tokenization and prefix sharing with four real tokenizer families.

deepseek (byte-level BPE that isolates newlines), Llama-2 (SentencePiece BPE, no
pre-tokenizer), Llama-3 (tiktoken-style BPE, 128k vocabulary) and SmolLM2 (GPT-2-style BPE that
merges "\\n\\n" at the end of a text but not before a letter). Expected ids come from the raw
`tokenizers` library on each whole prompt text, with the BOS id written out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURES

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, few_shot_prefix, load_tokenizer
from mmlubench.engines.base import Request
from mmlubench.engines.packing import plan_packs

# name -> BOS id (from each tokenizer.json's added tokens, written out by hand)
TOKENIZERS = {
    "deepseek-llm-7b-base": 100000,
    "llama-2-7b": 1,
    "llama-3-8b": 128000,
    "smollm2-135m": 1,
}
SUBJECTS = [
    "abstract_algebra",
    "college_computer_science",
    "high_school_european_history",
    "nutrition",
]


@pytest.fixture(scope="module")
def dataset(mmlu_dir):
    return load_mmlu(mmlu_dir, "test", SUBJECTS, limit=25)


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def family(request, dataset):
    folder = FIXTURES / "tokenizers" / request.param
    tok = load_tokenizer(folder)
    return request.param, folder, tok, build_prompts(dataset, tok)


def test_ids_are_the_whole_prompts_ids(family):
    from tokenizers import Tokenizer

    name, folder, _, prompts = family
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert any(p.dropped for p in prompts), "truncated prompts must be in the sample"
    whole = raw.encode_batch([p.text for p in prompts], add_special_tokens=False)
    for p, w in zip(prompts, whole, strict=True):
        assert p.ids.tolist() == [TOKENIZERS[name], *w.ids], (name, p.subject, p.index)


def test_shared_ids_are_common_and_nearly_the_whole_prefix(family, dataset):
    from tokenizers import Tokenizer

    name, folder, _, prompts = family
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for q in prompts:
        if q.dropped:
            continue
        alone = 1 + len(
            raw.encode(
                few_shot_prefix(q.subject, dataset.dev[q.subject], 5, "reference"),
                add_special_tokens=False,
            ).ids
        )
        # All but at most one token of the prefix alone is shared (SmolLM2: its final "\n\n").
        assert alone - 1 <= q.prefix_len <= alone, (name, q.subject, q.prefix_len, alone)
        if name != "smollm2-135m":
            assert q.prefix_len == alone
    # Prompts of a subject with as many examples dropped have one prefix text: the same
    # prefix_len and the very same leading ids.
    for p in prompts:
        same = [q for q in prompts if (q.subject, q.dropped) == (p.subject, p.dropped)]
        assert {q.prefix_len for q in same} == {p.prefix_len}
        assert all(np.array_equal(q.ids[: q.prefix_len], p.ids[: p.prefix_len]) for q in same)


def test_every_family_shares_like_deepseek(dataset):
    """Computed tokens per prompt token of the shared-prefix packs: within 3% of deepseek's
    on the same questions (bench/sharing.py checks the full split)."""
    ratios = {}
    for name in TOKENIZERS:
        prompts = build_prompts(dataset, load_tokenizer(FIXTURES / "tokenizers" / name))
        reqs = [Request(p.ids, p.prefix_len) for p in prompts]
        work = sum(b.work.tokens for b in plan_packs(reqs, 8192, 1024, True))
        ratios[name] = work / sum(len(r.ids) for r in reqs)
    base = ratios["deepseek-llm-7b-base"]
    assert base < 0.5, ratios
    assert all(abs(ratio - base) <= 0.03 for ratio in ratios.values()), ratios
