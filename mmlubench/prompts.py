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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlubench.data import LETTERS, Dataset, Question
from mmlubench.errors import ModelError, RunError

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


class PromptTokenizer:
    """Tokenizes prompts the way the chosen style wants: forced single BOS, or the default."""

    def __init__(self, tokenizer, style: str):
        if style not in STYLES:
            raise ValueError(f"unknown prompt style {style!r}")
        self.tokenizer = tokenizer
        self.style = style
        if style == "reference":
            if tokenizer.bos_token_id is None:
                raise ModelError("the tokenizer defines no BOS token, which the reference "
                                 "prompt style requires (use --prompt-style lm-eval)")
            self.head: list[int] = [int(tokenizer.bos_token_id)]
        else:
            # lm-eval defers to the tokenizer: see what it adds in front of an empty text.
            self.head = [int(i) for i in tokenizer("", add_special_tokens=True)["input_ids"]]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        body = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [self.head + list(ids) for ids in body]

    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]


def build_prompts(
    dataset: Dataset,
    tokenizer,
    style: str = "reference",
    few_shots: int = 5,
    max_seq_len: int = 2048,
    progress: bool = False,
    chunk: int = 256,
) -> list[Prompt]:
    """Build and tokenize the prompt of every question of `dataset`, in dataset order."""
    from tqdm import tqdm

    pt = PromptTokenizer(tokenizer, style)
    prefixes = {
        s: few_shot_prefix(s, dataset.dev[s], few_shots, style) for s in dataset.subjects
    }
    prefix_ids: dict[str, np.ndarray] = {}

    def prefix_tokens(text: str) -> np.ndarray:
        if text not in prefix_ids:
            prefix_ids[text] = np.asarray(pt.encode(text), dtype=np.int32)
        return prefix_ids[text]

    out: list[Prompt] = []
    bar = tqdm(total=len(dataset.questions), desc="tokenize", unit="q", disable=not progress)
    questions = dataset.questions
    for start in range(0, len(questions), chunk):
        block = questions[start : start + chunk]
        tails = [format_example(q, style, with_answer=False) for q in block]
        texts = [prefixes[q.subject] + tail for q, tail in zip(block, tails, strict=True)]
        encoded = pt.encode_many(texts)
        for q, tail, text, ids in zip(block, tails, texts, encoded, strict=True):
            dropped = 0
            while len(ids) > max_seq_len:
                if text.count("\n\n") < 1 or len(text.split("\n\n")) <= 2 + tail.count("\n\n"):
                    raise RunError(
                        f"{q.path}:{q.line}: question {q.subject}#{q.index} does not fit in "
                        f"max_seq_len={max_seq_len} tokens even without few-shot examples "
                        f"({len(ids)} tokens)"
                    )
                text = drop_first_example(text)
                dropped += 1
                ids = pt.encode(text)
            arr = np.asarray(ids, dtype=np.int32)
            prefix_len = 0
            if text.endswith(tail):
                pre = prefix_tokens(text[: len(text) - len(tail)])
                # Exactness guard: share the prefix only if the whole prompt's tokens start
                # with the prefix's own tokens (no BPE merge across the seam).
                if len(pre) < len(arr) and np.array_equal(arr[: len(pre)], pre):
                    prefix_len = len(pre)
            out.append(Prompt(q.subject, q.index, q.answer, text, arr, prefix_len, dropped))
        bar.update(len(block))
        bar.set_postfix(tokens=sum(len(p.ids) for p in out[-len(block) :]))
    bar.close()
    return out


def choice_token_ids(tokenizer) -> list[int]:
    """Token ids of the answer letters as they follow "Answer:" in a prompt (" A" ... " D").

    Taken from context, the last token of "Answer: X": SentencePiece tokenizers (Llama-2)
    encode " A" alone as ["▁", "A"] but "Answer: A" as [..., "▁A"], the token the model
    predicts. Each letter must be exactly one token after "Answer:"."""
    anchor = tokenizer("Answer:", add_special_tokens=False)["input_ids"]
    ids = []
    for letter in LETTERS:
        enc = tokenizer("Answer: " + letter, add_special_tokens=False)["input_ids"]
        if len(enc) != len(anchor) + 1 or list(enc[: len(anchor)]) != list(anchor):
            raise ModelError(
                f"the tokenizer encodes 'Answer: {letter}' as {enc}, not the tokens of "
                f"'Answer:' {anchor} plus one token; the answer rules need one token per "
                "answer letter"
            )
        ids.append(int(enc[-1]))
    return ids


def load_tokenizer(path: str | Path):
    """The tokenizer of the model folder, exactly as its tokenizer.json defines it.

    The reference calls AutoTokenizer, which with transformers 4.x meant tokenizer.json as is.
    transformers 5.x may map `tokenizer_class: LlamaTokenizerFast` to a SentencePiece-style
    class that re-normalizes the text (5.17 turns "Hello world" into other ids and drops
    newlines), so tokenizer.json is loaded directly; the special tokens come from
    tokenizer_config.json. Folders with only a SentencePiece model go through AutoTokenizer.
    """
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: tokenizer folder not found")
    tok_json, tok_cfg = path / "tokenizer.json", path / "tokenizer_config.json"
    if tok_json.is_file():
        cfg = {}
        if tok_cfg.is_file():
            try:
                cfg = json.loads(tok_cfg.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ModelError(f"{tok_cfg}: not valid JSON: {e}") from None
            if not isinstance(cfg, dict):
                raise ModelError(f"{tok_cfg}: expected a JSON object, got {type(cfg).__name__}")
        special = {}
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = cfg.get(key)
            if isinstance(value, dict):  # {"__type": "AddedToken", "content": ...}
                value = value.get("content")
            if isinstance(value, str):
                special[key] = value
        where = tok_json
    elif (path / "tokenizer.model").is_file():
        where = path
    else:
        raise ModelError(f"{path}: no tokenizer.json or tokenizer.model in this folder")
    try:
        if where == tok_json:
            return PreTrainedTokenizerFast(tokenizer_file=str(tok_json), **special)
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # tokenizers/transformers raise many types for a broken file
        raise ModelError(f"{where}: cannot load the tokenizer: {type(e).__name__}: {e}") from None


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
    with open(path, "w", encoding="utf-8") as f:
        for p in prompts:
            f.write(json_line(p.to_json()))
            n += 1
    return n


def without_bos(prompts: Sequence[Prompt], bos_id: int | None) -> list[Prompt]:
    """The prompts without their leading BOS (FlagPerf's llama3_8b_mmlu: Meta's tokenizer of
    the time added none). Built with the BOS first, so truncation is the reference's own rule
    for this case too: it counts one token more than the text ("len(tokens) + 1 > 2048")."""
    out = []
    for p in prompts:
        if bos_id is None or len(p.ids) < 2 or int(p.ids[0]) != bos_id:
            out.append(p)
            continue
        out.append(Prompt(p.subject, p.index, p.answer, p.text, p.ids[1:],
                          max(p.prefix_len - 1, 0), p.dropped))
    return out
