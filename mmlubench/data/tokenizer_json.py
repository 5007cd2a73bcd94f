"""A model folder's tokenizer.json through the `tokenizers` library alone, without transformers.

Importing transformers' tokenizer classes imports its model code (with transformers 5.17:
torch, torch.distributed's FSDP and DTensor, scikit-learn), seconds before a single question
is read. Yet PreTrainedTokenizerFast(tokenizer_file=...) runs the very tokenizer that
tokenizers.Tokenizer.from_file reads, unchanged, whenever transformers finds nothing to fix in
it (`transformers_keeps`): the special tokens of tokenizer_config.json are already its added
tokens, it has a post-processor, and it sets no truncation or padding. `JsonTokenizer` is that
tokenizer with the part of the transformers interface mmlubench uses (a text's ids, the BOS
id, decoding, the vocabulary's size); tokenization.load_tokenizer leaves any other folder to
transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


def transformers_keeps(backend: Any, special: Mapping[str, str]) -> bool:
    """Whether PreTrainedTokenizerFast, given `backend`'s file and the `special` tokens, would
    run `backend` exactly as it is. Otherwise transformers changes it: it adds each special
    token that is not an added token yet (the text's literal token then encodes to one id),
    builds a post-processor where there is none, and keeps a truncation or padding rule of the
    file that its own calls switch off."""
    added = {t.content for t in backend.get_added_tokens_decoder().values()}
    return (
        backend.truncation is None
        and backend.padding is None
        and backend.post_processor is not None
        and not backend.encode_special_tokens
        and all(token in added for token in special.values())
    )


class JsonTokenizer:
    """tokenizer.json's Rust tokenizer with the special tokens of tokenizer_config.json, called
    as a transformers tokenizer is (`tok(text)["input_ids"]`, `tok.bos_token_id`, ...)."""

    def __init__(self, backend: Any, special: Mapping[str, str]) -> None:
        # `backend_tokenizer`: the name transformers gives it; PromptTokenizer encodes with it.
        self.backend_tokenizer = backend
        self.bos_token: str | None = special.get("bos_token")
        self.eos_token: str | None = special.get("eos_token")
        self.pad_token: str | None = special.get("pad_token")
        self.unk_token: str | None = special.get("unk_token")

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend_tokenizer.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    def __call__(
        self, text: str | Sequence[str], add_special_tokens: bool = True
    ) -> dict[str, list]:
        """{"input_ids": ids} of one text, or a list of ids for a list of texts."""
        backend = self.backend_tokenizer
        if isinstance(text, str):
            return {"input_ids": backend.encode(text, add_special_tokens=add_special_tokens).ids}
        encs = backend.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encs]}

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens included and no clean-up of spaces: as the
        tokenizer that transformers loads from tokenizer.json and the special tokens alone."""
        return self.backend_tokenizer.decode(list(ids), skip_special_tokens=False)

    def __len__(self) -> int:
        """The vocabulary with its added tokens, as len() of a transformers tokenizer."""
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)
