"""The few-shot prompt rule, its truncation, and tokenization.

Two styles:
- `reference` (FlagPerf deepseek_7b_mmlu, itself from the original MMLU code): header
  "... about  abstract algebra.\\n\\n" (two spaces: every subject word is preceded by one),
  examples "q\\nA. a\\nB. b\\nC. c\\nD. d\\nAnswer: X\\n\\n", the question under test ending at
  "Answer:", exactly one BOS in front.
- `lm-eval` (lm-evaluation-harness): one space after "about", the question text stripped, and
  whatever BOS the tokenizer adds by default (none is forced).

Truncation (both styles): while (tokens + special tokens) > max_seq_len, split the text on
"\\n\\n", drop element 1 (the first remaining example) and join again, as the reference does.

Each prompt also records `prefix_len`: how many of its leading token ids are the tokens of its
few-shot prefix (BOS + header + examples), which all questions of a subject share. It is 0 when
the full prompt's tokens do not start with the prefix's own tokens (a merge across the seam):
then the prompt must be computed whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# At import, not in build_prompts: tokenizing imports nothing while transformers' model code is
# imported in a thread (model/imports.py), which imports tqdm too.
from tqdm import tqdm

from mmlubench.data.mmlu import LETTERS, Dataset, Question
from mmlubench.data.tokenization import (  # noqa: F401 - re-exported: the prompt API in one place
    PromptTokenizer,
    SplicedEncoder,
    choice_token_ids,
    load_tokenizer,
)
from mmlubench.errors import RunError

log = logging.getLogger("mmlubench")

STYLES = ("reference", "lm-eval")


@dataclass(eq=False)
class Prompt:
    """One question as the model sees it. `ids` include the BOS (if any)."""

    subject: str
    index: int
    answer: str
    text: str
    ids: np.ndarray
    prefix_len: int
    dropped: int  # elements removed by truncation

    def to_json(self) -> dict:
        return {
            "subject": self.subject,
            "index": self.index,
            "answer": self.answer,
            "n_tokens": len(self.ids),
            "prefix_len": self.prefix_len,
            "dropped": self.dropped,
            "text": self.text,
            "ids": self.ids.tolist(),
        }


def format_subject(subject: str) -> str:
    """`abstract_algebra` -> " abstract algebra" (each word preceded by one space)."""
    return "".join(" " + word for word in subject.split("_"))


def header(subject: str, style: str) -> str:
    if style == "reference":
        return (
            "The following are multiple choice questions (with answers) about "
            f"{format_subject(subject)}.\n\n"
        )
    return (
        "The following are multiple choice questions (with answers) about "
        f"{subject.replace('_', ' ')}.\n\n"
    )


def format_example(q: Question, style: str, with_answer: bool) -> str:
    text = q.question.strip() if style == "lm-eval" else q.question
    for letter, choice in zip(LETTERS, q.choices, strict=True):
        text += f"\n{letter}. {choice}"
    text += "\nAnswer:"
    if with_answer:
        text += f" {q.answer}\n\n"
    return text


def few_shot_prefix(subject: str, dev: Sequence[Question], few_shots: int, style: str) -> str:
    """Header plus the first `few_shots` dev rows, in file order, with their answers."""
    return header(subject, style) + "".join(
        format_example(q, style, with_answer=True) for q in dev[:few_shots]
    )


def drop_first_example(text: str) -> str:
    """The reference's truncation step: split on "\\n\\n", drop element 1, join again."""
    parts = text.split("\n\n")
    parts.pop(1)
    return "\n\n".join(parts)


def subject_prefixes(dataset: Dataset, few_shots: int, style: str) -> dict[str, str]:
    return {s: few_shot_prefix(s, dataset.dev[s], few_shots, style) for s in dataset.subjects}


class _Encoders:
    """One SplicedEncoder per prefix text (a subject's prefix after k truncation drops)."""

    def __init__(self, pt: PromptTokenizer):
        self.pt = pt
        self.by_text: dict[str, SplicedEncoder] = {}

    def encode(self, prefix: str, tails: Sequence[str]) -> list[list[int]]:
        if prefix not in self.by_text:
            self.by_text[prefix] = SplicedEncoder(self.pt, prefix)
        return [self.pt.head + ids for ids in self.by_text[prefix].encode_checked(tails)]


def _truncate(
    questions: Sequence[Question],
    tails: list[str],
    prefix: list[str],
    ids: list[list[int]],
    dropped: list[int],
    encoders: _Encoders,
    max_seq_len: int,
) -> None:
    """The reference's loop, for every too-long prompt at once: drop the first remaining
    example (split on "\n\n", pop element 1, join) until the prompt fits. Element 1 lies in
    the few-shot prefix while the prefix has an example left, so dropping it from the prefix
    alone gives the same text."""
    pending = [i for i in range(len(ids)) if len(ids[i]) > max_seq_len]
    while pending:
        groups: dict[str, list[int]] = {}
        for i in pending:
            if len(prefix[i].split("\n\n")) <= 2:  # no example left to drop
                q = questions[i]
                raise RunError(
                    f"{q.path}:{q.line}: question {q.subject}#{q.index} does not fit in "
                    f"max_seq_len={max_seq_len} tokens even without few-shot examples "
                    f"({len(ids[i])} tokens)"
                )
            prefix[i] = drop_first_example(prefix[i])
            dropped[i] += 1
            groups.setdefault(prefix[i], []).append(i)
        for text, members in groups.items():
            for i, new in zip(
                members, encoders.encode(text, [tails[i] for i in members]), strict=True
            ):
                ids[i] = new
        pending = [i for i in pending if len(ids[i]) > max_seq_len]


def shared_prefix_lengths(
    prefix: Sequence[str], ids: Sequence[np.ndarray], pt: PromptTokenizer
) -> list[int]:
    """For the prompts of each prefix text: the longest run of leading ids that all of them
    and the prefix tokenized alone have in common (exact by construction: these are the
    prompts' own ids), at most all but one id of each prompt. Warns when a prefix shares
    more than two tokens less than its own tokenization holds."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(prefix):
        groups.setdefault(text, []).append(i)
    out = [0] * len(ids)
    for text, members in groups.items():
        alone = np.asarray(pt.encode(text), dtype=np.int64)
        width = min(len(alone), min(len(ids[i]) for i in members) - 1)
        rows = np.stack([ids[i][:width] for i in members])
        same = (rows == alone[None, :width]).all(axis=0)
        shared = width if same.all() else int(np.argmin(same))
        if len(alone) - shared > 2:
            log.warning(
                "prompts of %r share only %d of the %d tokens of their few-shot "
                "prefix: the tokenizer merges across the seam",
                text[:60],
                shared,
                len(alone),
            )
        for i in members:
            out[i] = shared
    return out


def build_prompts(
    dataset: Dataset,
    tokenizer,
    style: str = "reference",
    few_shots: int = 5,
    max_seq_len: int = 2048,
    progress: bool = False,
) -> list[Prompt]:
    """Build and tokenize the prompt of every question of `dataset`, in dataset order."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}")
    pt = PromptTokenizer(tokenizer, style)
    encoders = _Encoders(pt)
    questions = dataset.questions
    base = subject_prefixes(dataset, few_shots, style)
    tails = [format_example(q, style, with_answer=False) for q in questions]
    prefix = [base[q.subject] for q in questions]
    by_subject: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_subject.setdefault(q.subject, []).append(i)
    ids: list[list[int]] = [[] for _ in questions]
    total = 0
    with tqdm(total=len(questions), desc="tokenize", unit="q", disable=not progress) as bar:
        for subject, members in by_subject.items():
            encoded = encoders.encode(base[subject], [tails[i] for i in members])
            for i, new in zip(members, encoded, strict=True):
                ids[i] = new
            total += sum(len(x) for x in encoded)
            bar.update(len(members))
            bar.set_postfix(tokens=f"{total:,}")
    dropped = [0] * len(questions)
    _truncate(questions, tails, prefix, ids, dropped, encoders, max_seq_len)
    arrays = [np.asarray(x, dtype=np.int32) for x in ids]
    shared = shared_prefix_lengths(prefix, arrays, pt)
    return [
        Prompt(q.subject, q.index, q.answer, prefix[i] + tails[i], arrays[i], shared[i], dropped[i])
        for i, q in enumerate(questions)
    ]


# Characters that str.splitlines() and many editors take as line breaks, but that json.dumps
# leaves raw with ensure_ascii=False (MMLU cells contain U+2028): escaped, one object per line.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(obj: dict) -> str:
    """One JSONL line: readable UTF-8, but no character that any reader takes as a line break."""
    import json

    return json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"


def write_jsonl(prompts: Iterable[Prompt], path: str | Path) -> int:
    """Write one JSON object per prompt; returns the count."""
    n = 0
    from mmlubench.safefile import open_file, output_error  # never through a link

    try:
        with open_file(path, "w") as f:
            for p in prompts:
                f.write(json_line(p.to_json()))
                n += 1
    except OSError as e:  # a full disk: one line
        raise output_error(path, e) from None
    return n


def prompt_bos(prompts: Sequence[Prompt], tokenizer) -> int | None:
    """The BOS id every prompt starts with; None when they do not all start with it (the
    tokenizer has none, or the case drops it)."""
    bos = tokenizer.bos_token_id
    leads = bos is not None and all(len(p.ids) and int(p.ids[0]) == bos for p in prompts)
    return int(bos) if leads else None


def without_bos(prompts: Sequence[Prompt], bos_id: int | None) -> list[Prompt]:
    """The prompts without their leading BOS (FlagPerf's llama3_8b_mmlu: Meta's tokenizer of
    the time added none). Built with the BOS first, so truncation is the reference's own rule
    for this case too: it counts one token more than the text ("len(tokens) + 1 > 2048")."""
    out = []
    for p in prompts:
        if bos_id is None or len(p.ids) < 2 or int(p.ids[0]) != bos_id:
            out.append(p)
            continue
        out.append(
            Prompt(
                p.subject, p.index, p.answer, p.text, p.ids[1:], max(p.prefix_len - 1, 0), p.dropped
            )
        )
    return out
