"""The embedded demo: everything a run needs, generated on the spot, no downloads.

- a small synthetic dataset in the MMLU layout (3 subjects; cells with commas, quotes, newlines
  and a literal "None"; one file with CRLF line ends), answers drawn at random;
- a byte-level BPE tokenizer trained on that text, with a BOS token;
- a tiny random Llama checkpoint, saved with save_pretrained so the run loads it back through
  from_pretrained exactly as it would load the real model.

It goes to the user's cache folder (never into the clone or the current folder), with a marker
file so that `--data-dir DEMO_DIR` alone selects the demo's case file (configs/demo.yaml).
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

MARKER = "MMLUBENCH_DEMO"


def default_dir() -> Path:
    """$XDG_CACHE_HOME/mmlubench/demo, or ~/.cache/mmlubench/demo."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mmlubench" / "demo"


def is_demo_dir(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


SUBJECTS = ("arithmetic", "geometry_basics", "number_words")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _question(subject: str, rng: random.Random) -> tuple[str, list[str], int]:
    if subject == "arithmetic":
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        right = a + b
        wrong = rng.sample([x for x in range(right - 9, right + 10) if x != right], 3)
        return f"What is {a} + {b}?", [str(right)] + [str(w) for w in wrong], 0
    if subject == "geometry_basics":
        n = rng.randint(3, 10)
        q = f'How many sides does a polygon with "{n}" corners have,\nif it is simple?'
        wrong = rng.sample([x for x in range(3, 13) if x != n], 2)
        return q, [str(n), str(wrong[0]), str(wrong[1]), "None"], 0
    a = rng.randint(0, 10)
    wrong = rng.sample([w for w in WORDS if w != WORDS[a]], 3)
    return f"Which word, in English, names the number {a}?", [WORDS[a], *wrong], 0


def _rows(subject: str, n: int, rng: random.Random) -> list[list[str]]:
    rows = []
    for _ in range(n):
        q, choices, right = _question(subject, rng)
        order = list(range(4))
        rng.shuffle(order)
        shuffled = [choices[i] for i in order]
        rows.append([q, *shuffled, "ABCD"[order.index(right)]])
    return rows


def make_dataset(mmlu_dir: Path, seed: int = 0, sizes: dict | None = None) -> None:
    """Write dev/val/test CSVs for the demo subjects under `mmlu_dir`."""
    sizes = sizes or {"dev": 5, "val": 4, "test": 12}
    rng = random.Random(seed)
    for split, n in sizes.items():
        (mmlu_dir / split).mkdir(parents=True, exist_ok=True)
        for k, subject in enumerate(SUBJECTS):
            # One file with CRLF line ends, as some MMLU files have.
            terminator = "\r\n" if (split, k) == ("test", 0) else "\n"
            with open(
                mmlu_dir / split / f"{subject}_{split}.csv", "w", newline="", encoding="utf-8"
            ) as f:
                csv.writer(f, lineterminator=terminator).writerows(_rows(subject, n, rng))


def make_tokenizer(texts: list[str], vocab_size: int = 700):
    """A byte-level BPE tokenizer trained on `texts`, wrapped for transformers, with BOS/EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def make_model(model_dir: Path, tokenizer, seed: int = 0) -> None:
    """A tiny random Llama with the tokenizer's vocabulary, saved with save_pretrained."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))


def make_demo(root: str | Path, seed: int = 0) -> Path:
    """Generate the demo's dataset, tokenizer and model under `root` (idempotent); a folder
    that cannot be made or written is one error line."""
    from mmlubench.safefile import output_error

    root = Path(root)
    try:
        return _make_demo(root, seed)
    except OSError as e:  # a file in the way, no permission, /proc, a full disk: one line
        raise output_error(
            e.filename or root, e, f"make the demo folder {root} (choose another with --dir)"
        ) from None


def _make_demo(root: Path, seed: int) -> Path:
    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import few_shot_prefix, format_example

    mmlu_dir, model_dir = root / "mmlu", root / "model"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / MARKER).is_file():  # written last: a half-made demo is made again
        make_dataset(mmlu_dir, seed)
        ds = load_mmlu(mmlu_dir, "test")
        texts = [few_shot_prefix(s, ds.dev[s], 5, "reference") for s in ds.subjects]
        texts += [format_example(q, "reference", with_answer=True) for q in ds.questions]
        make_model(model_dir, make_tokenizer(texts * 20), seed)
        (root / MARKER).write_text(
            "Made by `mmlubench demo`: model/ and mmlu/ for configs/demo.yaml. "
            "`mmlubench prompts|run --data-dir THIS_FOLDER` use that case file.\n",
            encoding="utf-8",
        )
    return root
