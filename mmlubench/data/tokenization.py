"""Tokenizers: loading a model folder's tokenizer, and encoding many prompts fast and exactly.

Every prompt of a subject is its few-shot prefix X followed by its question Y. Tokenizing the
14042 whole prompts repeats X's ~2.5k characters 14042 times; `SplicedEncoder` tokenizes X once
and, per question, only a short anchor from the end of X (its last "\\nAnswer:" line) plus Y,
in one parallel batch of the Rust tokenizer. The prompt's ids are X's ids up to the anchor
followed by the anchor+Y ids from the first token where both tokenizations agree. Tokenizers
only look a few characters around a point, so the seam at the anchor (a newline before
"Answer") splits the same way in the whole prompt; this is checked for one whole prompt of
every prefix, and a prefix whose check fails has all its prompts tokenized whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mmlubench.data.mmlu import LETTERS
from mmlubench.data.tokenizer_json import SPECIAL_KEYS, JsonTokenizer, transformers_keeps
from mmlubench.errors import ModelError

ANCHOR = "\nAnswer:"


class PromptTokenizer:
    """Tokenizes prompts the way the chosen style wants: forced single BOS, or the default."""

    def __init__(self, tokenizer, style: str):
        self.tokenizer = tokenizer
        self.style = style
        if style == "reference":
            # One BOS if the tokenizer has one (Qwen's defines none: no BOS, nothing refused).
            bos = tokenizer.bos_token_id
            self.head: list[int] = [] if bos is None else [int(bos)]
        else:
            # lm-eval defers to the tokenizer: see what it adds in front of an empty text.
            self.head = [int(i) for i in tokenizer("", add_special_tokens=True)["input_ids"]]
        # The Rust tokenizer behind a fast HF tokenizer: batches run in parallel, no
        # per-text Python objects beyond ids (and offsets where asked for).
        self.backend = getattr(tokenizer, "backend_tokenizer", None)

    def encode_body(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text without special tokens."""
        if not texts:
            return []
        if self.backend is not None:
            fast = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
            return [e.ids for e in fast(list(texts), add_special_tokens=False)]
        return [
            list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.head + ids for ids in self.encode_body(texts)]

    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]


class SplicedEncoder:
    """Whole-prompt ids of `prefix + tail` for many tails of one prefix, tokenizing the prefix
    once (see the module docstring). Without a Rust backend or an anchor it encodes whole."""

    def __init__(self, pt: PromptTokenizer, prefix: str):
        self.pt, self.prefix = pt, prefix
        self.cut = prefix.rfind(ANCHOR) if pt.backend is not None else -1
        self.starts: dict[int, int] = {}
        if self.cut > 0:
            enc = pt.backend.encode(prefix, add_special_tokens=False)
            self.ids = list(enc.ids)
            # Token index of every token start at or after the anchor's "Answer".
            self.starts = {s: i for i, (s, _) in enumerate(enc.offsets) if s > self.cut}

    def encode(self, tails: Sequence[str]) -> list[list[int]] | None:
        """Body ids (no special tokens) of prefix + each tail; None where no seam was found."""
        if self.cut <= 0:
            return [ids for ids in self.pt.encode_body([self.prefix + t for t in tails])]
        anchor = self.prefix[self.cut :]
        encs = self.pt.backend.encode_batch([anchor + t for t in tails], add_special_tokens=False)
        out: list[list[int]] = []
        for enc in encs:
            ids, offsets = enc.ids, enc.offsets
            for j in range(1, len(ids)):
                i = self.starts.get(offsets[j][0] + self.cut)
                if i is not None and self.ids[i] == ids[j]:
                    out.append(self.ids[:i] + ids[j:])
                    break
            else:
                return None
        return out

    def encode_checked(self, tails: Sequence[str]) -> list[list[int]]:
        """`encode`, checked against one whole-prompt tokenization; whole if they differ."""
        spliced = self.encode(tails) if tails else []
        if spliced is not None and tails:
            (whole,) = self.pt.encode_body([self.prefix + tails[0]])
            if whole == spliced[0]:
                return spliced
        return self.pt.encode_body([self.prefix + t for t in tails])


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


def _special_tokens(tok_cfg: Path) -> dict[str, str]:
    """bos/eos/pad/unk token strings from tokenizer_config.json (absent file: none)."""
    if not tok_cfg.is_file():
        return {}
    try:
        cfg = json.loads(tok_cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{tok_cfg}: not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{tok_cfg}: expected a JSON object, got {type(cfg).__name__}")
    special = {}
    for key in SPECIAL_KEYS:
        value = cfg.get(key)
        if isinstance(value, dict):  # {"__type": "AddedToken", "content": ...}
            value = value.get("content")
        if isinstance(value, str):
            special[key] = value
    return special


def load_tokenizer(path: str | Path):
    """The tokenizer of the model folder, exactly as its tokenizer.json defines it.

    The reference calls AutoTokenizer, which with transformers 4.x meant tokenizer.json as is.
    transformers 5.x may map `tokenizer_class: LlamaTokenizerFast` to a SentencePiece-style
    class that re-normalizes the text (5.17 turns "Hello world" into other ids and drops
    newlines), so tokenizer.json is loaded directly; the special tokens come from
    tokenizer_config.json. Through the `tokenizers` library alone where transformers would run
    it unchanged (tokenizer_json.py: no transformers import before the model's), else through
    PreTrainedTokenizerFast. Folders with only a SentencePiece model go through AutoTokenizer.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: tokenizer folder not found")
    tok_json = path / "tokenizer.json"
    if tok_json.is_file():
        return _from_json(tok_json, _special_tokens(path / "tokenizer_config.json"))
    if not (path / "tokenizer.model").is_file():
        raise ModelError(f"{path}: no tokenizer.json or tokenizer.model in this folder")
    try:
        from transformers import AutoTokenizer

        # trust_remote_code=False: never code from the folder, never a prompt (README, "When
        # things go wrong")
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except Exception as e:  # transformers raises many types for a broken file
        raise ModelError(f"{path}: cannot load the tokenizer: {type(e).__name__}: {e}") from None


def _from_json(tok_json: Path, special: dict[str, str]):
    """tokenizer.json with these special tokens: a JsonTokenizer, or transformers' tokenizer
    where transformers would change it (tokenizer_json.transformers_keeps)."""
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(tok_json))
        check_bos_known(tok_json, special, backend)
        if transformers_keeps(backend, special):
            return JsonTokenizer(backend, special)
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_file=str(tok_json), **special)
    except ModelError:
        raise
    except Exception as e:  # tokenizers/transformers raise many types for a broken file
        raise ModelError(
            f"{tok_json}: cannot load the tokenizer: {type(e).__name__}: {e}"
        ) from None


def check_bos_known(tok_json: Path, special: dict[str, str], backend) -> None:
    """tokenizer_config.json's bos_token must be a token of tokenizer.json (`backend`):
    transformers would otherwise add it as a new id, and every prompt would start with a token
    the model never saw."""
    bos = special.get("bos_token")
    if bos is not None and backend.token_to_id(bos) is None:
        raise ModelError(
            f"{tok_json.parent / 'tokenizer_config.json'}: bos_token "
            f"{bos[:60]!r} is not a token of {tok_json} (the model never saw it; "
            "fix bos_token or the tokenizer files)"
        )
