"""A run's files written atomically (a temporary file beside the target, synced, then renamed):
result.json and any JSON document, and predictions.jsonl, one line per question.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from mmlubench import safefile
from mmlubench.data.prompts import choice_token_ids, json_line
from mmlubench.data.scoring import Decoder, choices_letter, reference_letter, token_letter

if TYPE_CHECKING:
    from mmlubench.data.prompts import Prompt
    from mmlubench.run.pass_result import PassResult


def write_text_atomic(path: Path, write: Callable[[IO[str]], object]) -> None:
    """Call `write` on a temporary file beside `path`, sync it, then rename it to `path`: a crash
    or an exception never leaves a truncated `path`; never written through a link."""
    safefile.write_atomic(path, write)


def write_json_atomic(path: Path, data: dict) -> None:
    """One JSON document, written atomically (NaN/Infinity refused: not JSON)."""

    def write(f: IO[str]) -> None:
        json.dump(data, f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")

    write_text_atomic(path, write)


def write_predictions(
    path: Path, prompts: Sequence[Prompt], passes: Mapping[str, PassResult], tokenizer
) -> None:
    """One line per question: subject, index, gold, and each pass's prediction (atomically)."""
    write_text_atomic(path, lambda f: _predictions(f, prompts, passes, tokenizer))


def _predictions(
    f: IO[str], prompts: Sequence[Prompt], passes: Mapping[str, PassResult], tokenizer
) -> None:
    decode = Decoder(tokenizer)
    choice_ids = choice_token_ids(tokenizer)
    for i, p in enumerate(prompts):
        row = {"subject": p.subject, "index": p.index, "gold": p.answer, "n_tokens": len(p.ids)}
        for name, r in passes.items():
            tid = int(r.top_ids[i])
            row[name] = {
                "top_id": tid,
                "top_token": decode(tid),
                "reference": reference_letter(tid, decode),
                "choices": choices_letter(r.choice_logits[i].tolist()),
                "token": token_letter(tid, choice_ids),
                # log-softmax over the vocabulary of " A".." D" (null: not recorded)
                "loglikelihoods": None
                if np.isnan(r.logsumexp[i])
                else [float(x) for x in r.choice_logits[i] - r.logsumexp[i]],
            }
        f.write(json_line(row))
