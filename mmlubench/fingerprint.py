"""What a run computes, reduced to hashes, so `run --resume` can refuse to mix two runs.

Three fingerprints, written to fingerprint.json when a run starts:
- config: the validated config without the keys that may differ between sessions and change
  no answer (EXCLUDED: where things are and where output goes, progress bars, memory sampling);
  the folders are left out because what they hold is checked by content below;
- prompts: every prompt's token ids, subject, row, answer and shareable prefix length, and the
  answer-letter token ids: it changes with the MMLU files, the tokenizer or the prompt rule;
- model: config.json's bytes and the weight files' names and sizes (hashing 14 GB of weights
  would take minutes), or the seed for --random-weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmlubench.model import WEIGHT_FILES

if TYPE_CHECKING:
    from mmlubench.config import Config
    from mmlubench.prompts import Prompt

SCHEMA = "mmlubench.fingerprint/1"
EXCLUDED = ("data_dir", "weight_dir", "mmlu_dir", "output_dir", "run_name", "progress",
            "mem_sample_interval_s")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True).encode()


def config_part(cfg: Config) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in EXCLUDED}


def prompts_sha256(prompts: Sequence[Prompt], choice_ids: Sequence[int]) -> str:
    h = hashlib.sha256(_canonical([int(i) for i in choice_ids]))
    for p in prompts:
        h.update(_canonical([p.subject, p.index, p.answer, p.prefix_len, len(p.ids)]))
        h.update(np.asarray(p.ids, dtype="<i4").tobytes())
    return h.hexdigest()


def model_part(path: Path, random_weights: bool, seed: int) -> dict[str, Any]:
    cfg = Path(path) / "config.json"
    out: dict[str, Any] = {"config_json_sha256": _sha256(cfg.read_bytes()) if cfg.is_file()
                           else None}
    if random_weights:
        out["random_weights_seed"] = seed
    else:
        files = {f for pattern in WEIGHT_FILES for f in Path(path).glob(pattern) if f.is_file()}
        out["weight_files"] = sorted([f.name, f.stat().st_size] for f in files)
    return out


def make(cfg: Config, prompts: Sequence[Prompt], choice_ids: Sequence[int],
         world_size: int = 1) -> dict[str, Any]:
    """The fingerprint document of a run (stored as fingerprint.json)."""
    config = config_part(cfg)
    model = model_part(cfg.weight_path, cfg.random_weights, cfg.seed)
    return {
        "schema": SCHEMA,
        "config_sha256": _sha256(_canonical(config)),
        "prompts_sha256": prompts_sha256(prompts, choice_ids),
        "questions": len(prompts),
        "model_sha256": _sha256(_canonical(model)),
        "world_size": world_size,
        "config": config,
        "model": model,
    }


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Why `now` may not continue the run fingerprinted `then`; empty when it may."""
    out = []
    if then.get("schema") != SCHEMA:
        return [f"fingerprint schema {then.get('schema')!r} is not {SCHEMA!r}"]
    if then["config_sha256"] != now["config_sha256"]:
        a, b = _flat(then["config"]), _flat(now["config"])
        keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
        out.append("config differs: " + "; ".join(
            f"{k}: {a.get(k, '<unset>')!r} then, {b.get(k, '<unset>')!r} now" for k in keys))
    if then["prompts_sha256"] != now["prompts_sha256"]:
        out.append(f"prompt token ids differ ({then['questions']} questions then, "
                   f"{now['questions']} now): the MMLU files, the tokenizer or the prompt rule "
                   "changed")
    if then["model_sha256"] != now["model_sha256"]:
        a, b = then["model"], now["model"]
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        out.append("model differs: " + "; ".join(
            f"{k}: {a.get(k)!r} then, {b.get(k)!r} now" for k in keys))
    return out
