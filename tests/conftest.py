"""Shared fixtures: real MMLU files and the real tokenizer (carried under tests/fixtures/, so a
fresh clone needs nothing beside it), a tiny random Llama.

Only the full 14042-question split is not carried: tests that need it use `full_mmlu_dir`, found
through $MMLUBENCH_FULL_MMLU or ../shared/mmlu/data beside the clone, and skip without it.

Everything expensive (tokenizer load, tiny model, model folder) is built once per session.
Golden values are computed here independently of mmlubench: CSV cells with the csv module,
prompts with literal f-strings following ../shared/REFERENCE.md, ids with the raw `tokenizers`
library and one BOS (100000) prepended by hand.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# A few real subjects (tests/fixtures/README.md lists them and which files keep only first rows).
MMLU_DIR = FIXTURES / "mmlu"
TOKENIZER_DIR = FIXTURES / "tokenizers" / "deepseek-llm-7b-base"
FULL_MMLU_DIR = Path(
    os.environ.get(
        "MMLUBENCH_FULL_MMLU", Path(__file__).resolve().parents[2] / "shared" / "mmlu" / "data"
    )
)
BOS = 100000
MAX_SEQ_LEN = 2048

# A tiny Llama with the real tokenizer's vocabulary (102400 rows, ids 100015+ unused).
TINY_CONFIG = dict(
    vocab_size=102400,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=4096,
    bos_token_id=100000,
    eos_token_id=100001,
    tie_word_embeddings=False,
)
# Parameters of TINY_CONFIG, counted by hand: embeddings and LM head (untied), per layer
# q/k/v/o (4 * 32 * 32), MLP gate/up/down (3 * 32 * 64) and two RMSNorm weights, final norm.
TINY_PARAMS = 2 * 102400 * 32 + 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32


@pytest.fixture(scope="session")
def mmlu_dir() -> Path:
    """A few real MMLU subjects (dev/val/test), carried in the repository."""
    return MMLU_DIR


@pytest.fixture(scope="session")
def full_mmlu_dir() -> Path:
    """The whole MMLU data folder (57 subjects); skips the test when it is not there."""
    if not (FULL_MMLU_DIR / "test" / "virology_test.csv").is_file():
        pytest.skip(
            f"the full MMLU split is not at {FULL_MMLU_DIR} (set MMLUBENCH_FULL_MMLU "
            "to a folder holding dev/ val/ test/, or keep ../shared beside the clone)"
        )
    return FULL_MMLU_DIR


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The real deepseek-llm-7b-base tokenizer and config.json, carried in the repository."""
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def raw_tokenizer(tokenizer_dir):
    """The independent tokenizer: the `tokenizers` library on tokenizer.json, no transformers."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    """The tokenizer as mmlubench loads it (the code under test)."""
    from mmlubench.data.prompts import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def read_rows(split: str, subject: str, root: Path = MMLU_DIR) -> list[list[str]]:
    """Raw CSV cells of a real MMLU file, read independently of mmlubench.data."""
    with open(root / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def reference_text(subject: str, dev: list[list[str]], row: list[str]) -> str:
    """The reference prompt, untruncated, written out with literal f-strings."""
    words = "".join(" " + w for w in subject.split("_"))
    text = f"The following are multiple choice questions (with answers) about {words}.\n\n"
    for q, a, b, c, d, ans in dev[:5]:
        text += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}\n\n"
    q, a, b, c, d, _ = row
    return text + f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def truncate_reference(text: str, encode) -> tuple[str, list[int], int]:
    """The reference loop, re-implemented: while tokens + 1 (BOS) > 2048, split on "\\n\\n",
    pop element 1, join. Returns (text, ids with BOS, examples dropped)."""
    dropped = 0
    ids = [BOS, *encode(text)]
    while len(ids) > MAX_SEQ_LEN:
        parts = text.split("\n\n")
        parts.pop(1)
        text = "\n\n".join(parts)
        dropped += 1
        ids = [BOS, *encode(text)]
    return text, ids, dropped


@pytest.fixture(scope="session")
def reference_prompt(mmlu_dir, raw_tokenizer):
    """reference_prompt(subject, index, split="test", root=MMLU_DIR) -> (text, ids, dropped),
    independently of mmlubench."""

    def encode(text: str) -> list[int]:
        return raw_tokenizer.encode(text, add_special_tokens=False).ids

    def build(subject: str, index: int, split: str = "test", root: Path = MMLU_DIR):
        dev = read_rows("dev", subject, root)
        row = read_rows(split, subject, root)[index]
        return truncate_reference(reference_text(subject, dev, row), encode)

    return build


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A model folder with a tiny Llama config.json and copies of the real tokenizer files
    (no weights: runs use --random-weights)."""
    from transformers import LlamaConfig

    root = tmp_path_factory.mktemp("tiny")
    model_dir = root / "model"
    model_dir.mkdir()
    LlamaConfig(**TINY_CONFIG).save_pretrained(str(model_dir))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, model_dir / name)
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == 102400
    return model_dir


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random Llama in fp32 on the CPU, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY_CONFIG)).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def demo_run_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two CPU demo runs, made once for the report and compare tests (report_helpers.py)."""
    from report_helpers import demo_runs

    return demo_runs(tmp_path_factory)
