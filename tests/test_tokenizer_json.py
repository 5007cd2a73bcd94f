"""tokenizer.json through the `tokenizers` library alone (data/tokenizer_json.py) against
transformers' PreTrainedTokenizerFast on the same files (what load_tokenizer returned before):
the same ids, BOS, decoded text and size for four real tokenizers and real prompts; a folder
where transformers would change the tokenizer is loaded by transformers.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
from mmlubench.data.tokenizer_json import JsonTokenizer

FAMILIES = ["deepseek-llm-7b-base", "llama-2-7b", "llama-3-8b", "smollm2-135m"]
TEXTS = [
    "",
    " A",
    "Answer: B",
    "The following are multiple choice questions (with answers) about  anatomy.\n\n",
    "Ünïcödé — “quotes” 数学 🙂\n\nAnswer:",
    "  two  spaces\tand a tab\r\n",
]


def transformers_tokenizer(folder):
    """PreTrainedTokenizerFast as load_tokenizer built it before, with the special tokens read
    here from tokenizer_config.json."""
    from transformers import PreTrainedTokenizerFast

    cfg_file = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    special = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = cfg.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            special[key] = value
    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **special)


@pytest.fixture(scope="module")
def dataset(mmlu_dir):
    return load_mmlu(mmlu_dir, "test", ["abstract_algebra", "nutrition"], limit=6)


@pytest.mark.parametrize("name", FAMILIES)
def test_real_tokenizers_match_transformers(name, dataset):
    folder = FIXTURES / "tokenizers" / name
    tok, hf = load_tokenizer(folder), transformers_tokenizer(folder)
    assert isinstance(tok, JsonTokenizer)
    assert (tok.bos_token_id, tok.eos_token_id, len(tok)) == (
        hf.bos_token_id,
        hf.eos_token_id,
        len(hf),
    )
    texts = [*TEXTS, *(str(t) for t in (hf.bos_token, hf.eos_token) if t)]
    for special in (True, False):
        for text in texts:
            want = list(hf(text, add_special_tokens=special)["input_ids"])
            assert tok(text, add_special_tokens=special)["input_ids"] == want, (name, text)
        batch = tok(texts, add_special_tokens=special)["input_ids"]
        assert batch == [list(x) for x in hf(texts, add_special_tokens=special)["input_ids"]]
    # Every added token and a stride through the vocabulary decode alike.
    ids = [*range(0, len(hf), 97), *hf.added_tokens_decoder]
    assert [tok.decode([i]) for i in ids] == [hf.decode([i]) for i in ids]
    for style in ("reference", "lm-eval"):
        ours, theirs = build_prompts(dataset, tok, style), build_prompts(dataset, hf, style)
        assert [(p.ids.tolist(), p.prefix_len) for p in ours] == [
            (p.ids.tolist(), p.prefix_len) for p in theirs
        ]
        assert tok.decode(ours[0].ids.tolist()) == hf.decode(theirs[0].ids.tolist())


def changed_folder(tmp_path, change):
    """The SmolLM2 tokenizer with one thing transformers would not run as the file says."""
    folder = tmp_path / change
    shutil.copytree(FIXTURES / "tokenizers" / "smollm2-135m", folder)
    doc = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    if change == "no post-processor":
        doc["post_processor"] = None
    elif change == "eos not a token":
        cfg["eos_token"] = "<|never-seen|>"
    elif change == "truncation":
        doc["truncation"] = {"max_length": 4, "strategy": "LongestFirst", "stride": 0}
        doc["truncation"]["direction"] = "Right"
    (folder / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


@pytest.mark.parametrize("change", ["no post-processor", "eos not a token", "truncation"])
def test_folders_transformers_changes_are_loaded_by_it(tmp_path, change):
    """Each change makes transformers' tokenizer differ from the file's own (another
    post-processor, one more token, untruncated ids), so load_tokenizer gives transformers'."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder = changed_folder(tmp_path, change)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = transformers_tokenizer(folder)
    text = "Answer: A and then some more words"
    differs = {
        "no post-processor": raw.to_str() != hf.backend_tokenizer.to_str(),
        "eos not a token": len(hf) == raw.get_vocab_size(with_added_tokens=True) + 1,
        "truncation": len(hf(text)["input_ids"]) > len(raw.encode(text).ids) == 4,
    }
    assert differs[change]
    tok = load_tokenizer(folder)
    assert isinstance(tok, PreTrainedTokenizerFast) and not isinstance(tok, JsonTokenizer)
    assert tok(text)["input_ids"] == hf(text)["input_ids"]
