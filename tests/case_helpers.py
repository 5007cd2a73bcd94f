"""The three packaged cases for tests: each case's real tokenizer and its real config.json shrunk
to a tiny Llama that keeps what matters to the engines (vocabulary size, GQA ratio, RoPE base).

Tokenizers come from tests/fixtures/tokenizers/<model> (copies of ../shared/<model>, with their
SOURCE.md); until those are carried, from ../shared beside the clone (the test skips without).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SHARED = TESTS.parents[1] / "shared"
CONFIGS = TESTS.parent / "mmlubench" / "configs"

# case -> the folder of its model's tokenizer and config.json
CASE_MODELS = {
    "deepseek_7b_mmlu": "deepseek-llm-7b-base",
    "llama2_7b_mmlu": "llama-2-7b",
    "llama3_8b_mmlu": "llama-3-8b",
}
CASES = list(CASE_MODELS)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def model_files(case: str) -> Path:
    """The folder with the case model's tokenizer files and real config.json."""
    name = CASE_MODELS[case]
    for root in (TESTS / "fixtures" / "tokenizers", SHARED):
        if (root / name / "tokenizer.json").is_file() and (root / name / "config.json").is_file():
            return root / name
    pytest.skip(
        f"tokenizer and config of {name} not found under tests/fixtures/tokenizers or {SHARED}"
    )


def tiny_config(real: dict) -> dict:
    """The real config with tiny sizes: 2 layers, hidden 64, and the real GQA ratio (query
    heads per KV head), vocabulary, RoPE base and norm epsilon."""
    ratio = real["num_attention_heads"] // real.get(
        "num_key_value_heads", real["num_attention_heads"]
    )
    kv_heads = 2 if ratio > 1 else 4
    return {
        **real,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": kv_heads * ratio,
        "num_key_value_heads": kv_heads,
    }


def make_model_dir(case: str, dest: Path) -> Path:
    """A model folder for `case`: the tiny config.json and the real tokenizer files."""
    src = model_files(case)
    dest.mkdir(parents=True, exist_ok=True)
    real = json.loads((src / "config.json").read_text(encoding="utf-8"))
    (dest / "config.json").write_text(json.dumps(tiny_config(real), indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, dest / name)
    return dest
