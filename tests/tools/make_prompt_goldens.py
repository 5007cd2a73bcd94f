"""Compute the pinned prompt constants of tests/test_prompts.py, independently of mmlubench.

Run once by hand (`python tests/tools/make_prompt_goldens.py`) and paste its output into
GOLDEN in test_prompts.py. It imports nothing from mmlubench: the CSV cells are read with the
csv module, the prompt is written with literal f-strings following ../shared/REFERENCE.md, and
the ids come from the raw `tokenizers` library with one BOS (100000) prepended by hand.
"""

import csv
import hashlib
from pathlib import Path

from tokenizers import Tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # the real files, carried in tests/
MMLU = FIXTURES / "mmlu"
TOK = Tokenizer.from_file(str(FIXTURES / "tokenizers" / "deepseek-llm-7b-base" / "tokenizer.json"))
BOS = 100000

CASES = [
    ("reference", "abstract_algebra", 0),
    ("reference", "college_computer_science", 10),  # choice A is the literal cell "None"
    ("reference", "college_medicine", 6),  # quotes, commas and newlines in the question
    ("reference", "global_facts", 0),  # CRLF file
    ("reference", "college_mathematics", 0),  # its dev file has a cell with "\r\n" inside
    ("reference", "nutrition", 0),  # CRLF file whose question ends with a bare "\n"
    ("reference", "high_school_us_history", 0),  # truncated: 1 example dropped
    ("reference", "high_school_european_history", 3),  # truncated: 2 dropped
    ("reference", "high_school_european_history", 29),  # truncated: 3 dropped
    ("lm-eval", "abstract_algebra", 0),
    ("lm-eval", "business_ethics", 3),  # question with a leading space
    ("lm-eval", "nutrition", 0),  # question with a trailing newline
    ("lm-eval", "professional_law", 0),  # dev choices with trailing spaces (kept)
]


def rows(split, subject):
    with open(MMLU / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def prompt(style, subject, index):
    dev, test = rows("dev", subject)[:5], rows("test", subject)
    if style == "reference":
        words = "".join(" " + w for w in subject.split("_"))
        text = f"The following are multiple choice questions (with answers) about {words}.\n\n"
        for q, a, b, c, d, ans in dev:
            text += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}\n\n"
        q, a, b, c, d, _ = test[index]
        text += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
        head = [BOS]
    else:
        words = subject.replace("_", " ")
        shots = [
            f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}"
            for q, a, b, c, d, ans in dev
        ]
        q, a, b, c, d, _ = test[index]
        shots.append(f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:")
        text = (
            f"The following are multiple choice questions (with answers) about {words}.\n\n"
            + "\n\n".join(shots)
        )
        head = []
    ids = head + TOK.encode(text, add_special_tokens=False).ids
    dropped = 0
    while len(ids) > 2048:
        parts = text.split("\n\n")
        parts.pop(1)
        text = "\n\n".join(parts)
        dropped += 1
        ids = head + TOK.encode(text, add_special_tokens=False).ids
    return text, ids, dropped


def sha(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


if __name__ == "__main__":
    for style, subject, index in CASES:
        text, ids, dropped = prompt(style, subject, index)
        print(
            f'    ("{style}", "{subject}", {index}): dict(n_tokens={len(ids)}, '
            f"dropped={dropped}, first={ids[:6]}, last={ids[-4:]},\n"
            f'        ids_sha256="{sha(",".join(map(str, ids)))}",\n'
            f'        text_sha256="{sha(text)}"),'
        )
