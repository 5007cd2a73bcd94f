"""A run's fingerprint (fingerprint.json): hashes of what the run computes, and why another
run is not the same one.

- the config without the keys that change no answer (where things are, output, progress bars,
  memory sampling, and the metric-only keys flops_per_token, peak_flops, scoring: a bad metric
  value never makes recorded work unrecoverable);
- every prompt's token ids and the answer-letter ids;
- the model: config.json's bytes and the weights' identity (model/weights_id.py), or the seed of
  random weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmlubench.display import flatten
from mmlubench.model.weights_id import COVERS, model_identity

if TYPE_CHECKING:
    from mmlubench.config.config import Config
    from mmlubench.data.prompts import Prompt

SCHEMA = "mmlubench.fingerprint/3"
EXCLUDED = (
    "data_dir",
    "weight_dir",
    "mmlu_dir",
    "output_dir",
    "run_name",
    "progress",
    "mem_sample_interval_s",
    "flops_per_token",
    "peak_flops",
    "scoring",
    "flops_per_token_set_by",
    "model",
    "revision",
    "log_samples",
)


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def fingerprint(
    cfg: Config, prompts: Sequence[Prompt], choice_ids: Sequence[int], world_size: int = 1
) -> dict[str, Any]:
    """The fingerprint document of a run (stored as fingerprint.json)."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in EXCLUDED}
    # Options of engines this run does not use cannot change what it computes.
    used = {cfg.engine, cfg.val_engine}
    config["engines"] = {k: v for k, v in (config.get("engines") or {}).items() if k in used}
    model = model_identity(cfg.weight_path, cfg.random_weights, cfg.seed)
    h = hashlib.sha256(json.dumps([int(i) for i in choice_ids]).encode())
    for p in prompts:
        h.update(json.dumps([p.subject, p.index, p.answer, p.prefix_len, len(p.ids)]).encode())
        h.update(np.asarray(p.ids, dtype="<i4").tobytes())
    return {
        "schema": SCHEMA,
        "config_sha256": _sha256(config),
        "prompts_sha256": h.hexdigest(),
        "questions": len(prompts),
        "model_sha256": _sha256(model),
        "world_size": world_size,
        "config": config,
        "model": model,
    }


def _changed(what: str, then: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    a, b = flatten(then), flatten(now)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    return f"{what} differs: " + "; ".join(
        f"{k}: {a.get(k, '<unset>')!r} then, {b.get(k, '<unset>')!r} now" for k in keys
    )


def differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Why `now` may not continue the run fingerprinted `then`; empty when it may."""
    if then.get("schema") != SCHEMA:
        return [f"fingerprint schema {then.get('schema')!r} is not {SCHEMA!r}"]
    out = []
    if then["config_sha256"] != now["config_sha256"]:
        out.append(_changed("config", then["config"], now["config"]))
    if then["prompts_sha256"] != now["prompts_sha256"]:
        out.append(
            f"prompt token ids differ ({then['questions']} questions then, "
            f"{now['questions']} now): the MMLU files, the tokenizer or the prompt rule "
            "changed"
        )
    if then["model_sha256"] != now["model_sha256"]:
        out.append(_changed("model", then["model"], now["model"]) + f" ({COVERS})")
    return out
