"""What identifies a model in a run's fingerprint: the weights themselves, cheaply.

Two checkpoints with the same config.json and the same file sizes (a fine-tune, another seed)
must never be mixed by `--resume`. Reading 14 GB once more only to hash them would double the
load time, so each weight file is identified by:
- its name and size in bytes;
- for .safetensors, the sha256 of its header (every tensor's name, dtype, shape and byte range,
  and the file's metadata);
- the sha256 of SAMPLES blocks of BLOCK bytes spread evenly over the file (the first and the
  last included; a file smaller than SAMPLES x BLOCK is hashed whole).
A few MB per file: two different trainings differ in every block; an edit of a few weights
that falls between the sampled blocks is not seen (COVERS says so in every mismatch message).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

from mmlubench.model.load import WEIGHT_FILES

SAMPLES = 64
BLOCK = 64 * 1024
COVERS = (
    f"the model is identified by config.json and each weight file's name, size, "
    f"safetensors header and sha256 of {SAMPLES} evenly spaced {BLOCK // 1024} KiB blocks"
)


def _header_sha256(f, size: int) -> str | None:
    """sha256 of a safetensors file's 8-byte length and JSON header (None: not one)."""
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
        return None
    return hashlib.sha256(head + f.read(n)).hexdigest()


def _sample_sha256(f, size: int) -> str:
    h = hashlib.sha256()
    if size <= SAMPLES * BLOCK:
        f.seek(0)
        h.update(f.read())
        return h.hexdigest()
    step = (size - BLOCK) / (SAMPLES - 1)
    for k in range(SAMPLES):
        f.seek(round(k * step))
        h.update(f.read(BLOCK))
    return h.hexdigest()


def file_identity(file: Path) -> list[Any]:
    """[name, size, header sha256 or None, sampled-content sha256] of one weight file."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        header = _header_sha256(f, size) if file.suffix == ".safetensors" else None
        return [file.name, size, header, _sample_sha256(f, size)]


def model_identity(path: Path, random_weights: bool, seed: int) -> dict[str, Any]:
    """The model part of a fingerprint: config.json's sha256, and the weight files' identities
    (or the seed of random weights)."""
    cfg = Path(path) / "config.json"
    out: dict[str, Any] = {
        "config_json_sha256": hashlib.sha256(cfg.read_bytes()).hexdigest()
        if cfg.is_file()
        else None
    }
    if random_weights:
        out["random_weights_seed"] = seed
    else:
        files = {f for pattern in WEIGHT_FILES for f in Path(path).glob(pattern) if f.is_file()}
        out["weight_files"] = sorted(file_identity(f) for f in files)
    return out
