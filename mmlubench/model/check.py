"""The model folder checked against the tokenizer, the engines and the device, before any pass.

A config.json that transformers cannot build (an unknown dtype, heads that do not divide the
width), a model that is no causal language model, a vocabulary smaller than the token ids the
prompts use, a weight file that is no regular file (a FIFO would hang the read), or a model
whose weights alone exceed the device's memory: each is one error line naming config.json or
the file, before a weight is allocated.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlubench.errors import ModelError, one_line, short
from mmlubench.model.load import DTYPES, WEIGHT_FILES, check_model_dir

GIB = 2**30


def check_weight_files(path: Path) -> None:
    """Every weight file is a regular file (links to one are fine: the HF cache uses them)."""
    for pattern in WEIGHT_FILES:
        for f in sorted(path.glob(pattern)):
            if not f.is_file():
                raise ModelError(f"{f}: not a regular file (a weight file must be one)")


def _positive(cfg: Path, c: Any, *names: str) -> None:
    for name in names:
        value = getattr(c, name, None)
        if value is not None and not (type(value) is int and value > 0):
            raise ModelError(f"{cfg}: {name} must be a positive integer, got {short(value)}")


def load_config(path: Path) -> Any:
    """config.json as transformers builds it (no code from the folder), errors in one line."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    cfg = path / "config.json"
    try:
        c = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    except Exception as e:  # transformers raises many types for a bad config
        raise ModelError(
            f"{cfg}: transformers cannot build this config: {type(e).__name__}: {one_line(e)[:200]}"
        ) from None
    # An encoder (bert) has a causal-LM head class, but attends both ways and keeps no cache.
    encoder = c.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
        c, "is_decoder", False
    )
    if c.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or encoder:
        raise ModelError(
            f"{cfg}: model_type {short(c.model_type)} is not a causal language "
            "model (MMLU scores the next token)"
        )
    _positive(
        cfg,
        c,
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
    )
    heads, kv = getattr(c, "num_attention_heads", None), getattr(c, "num_key_value_heads", None)
    if heads and getattr(c, "head_dim", None) is None and c.hidden_size % heads:
        raise ModelError(
            f"{cfg}: hidden_size {c.hidden_size} is not a multiple of num_attention_heads {heads}"
        )
    if heads and kv and heads % kv:
        raise ModelError(
            f"{cfg}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
        )
    return c


def weight_bytes(c: Any, precision: str) -> int:
    """The bytes of the model's weights in `precision`, from its config (decoder layers with
    their attention and MLP projections, embeddings and LM head)."""
    h, layers = c.hidden_size, c.num_hidden_layers
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    inter = getattr(c, "intermediate_size", None) or 4 * h
    per_layer = h * head_dim * (2 * heads + 2 * kv) + 3 * h * inter
    tied = getattr(c, "tie_word_embeddings", False)
    params = layers * per_layer + c.vocab_size * h * (1 if tied else 2)
    return params * DTYPES[precision].itemsize


def device_bytes(device: str) -> int | None:
    """The device's whole memory (the host's for cpu; None where it is not known)."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:  # torch.accelerator drives the device types of every vendor's PyTorch
        return int(torch.accelerator.get_memory_info(dev)[1])
    except Exception:  # no such call, no such device: the load itself will tell
        return None


def check_model(
    path: Path,
    random_weights: bool,
    precision: str,
    device: str,
    ids: Sequence[Sequence[int]],
    choice_ids: Sequence[int],
) -> None:
    """The checks above, for the run's model folder and prompts."""
    path = Path(path)
    if path.is_dir():
        check_weight_files(path)
    check_model_dir(path, random_weights)
    c = load_config(path)
    # np.max: a prompt's ids are a numpy array, whose elements Python's max would box one by
    # one (0.4 s for the full split on an H200 machine's host).
    top = max([*choice_ids, *(int(np.max(p, initial=0)) for p in ids)], default=0)
    if top >= c.vocab_size:
        raise ModelError(
            f"{path / 'config.json'}: vocab_size {c.vocab_size} is smaller than "
            f"the tokenizer's ids (the prompts use id {top}): not this tokenizer's "
            "model"
        )
    need, have = weight_bytes(c, precision), device_bytes(device)
    if have is not None and need > have:
        raise ModelError(
            f"{path / 'config.json'}: the weights alone need {need / GIB:,.1f} GiB "
            f"in {precision}, more than the {have / GIB:,.1f} GiB of device "
            f"{device}"
        )
