"""`--model NAME_OR_PATH`: a model folder, or a Hugging Face Hub repo id resolved through
huggingface_hub's own cache.

A repo id goes through `huggingface_hub.snapshot_download`, so the cache is huggingface_hub's
(`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub) and so are its rules:
`HF_HUB_OFFLINE=1` uses only what is cached, `--revision` picks a branch, tag or commit, a Hub
that cannot be reached falls back to the cached snapshot. Only the files a run reads are fetched
(config, tokenizer, weights; no weights for --random-weights). The snapshot folder's name is the
commit it holds, which the result records (`model.hub_repo`, `model.revision`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmlubench.errors import ModelError

# What a run reads from a repo: config and tokenizer files, then the weights.
CONFIG_FILES = ["*.json", "*.model", "*.tiktoken", "*.txt"]
WEIGHTS = ["*.safetensors"]
PICKLED_WEIGHTS = ["*.bin"]  # only when the repo has no safetensors
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SNAPSHOT = re.compile(r"models--(?P<repo>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})/?$")


@dataclass(frozen=True)
class ResolvedModel:
    folder: Path
    hub_repo: str | None = None  # None: a local folder
    revision: str | None = None  # the commit of the snapshot


def cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (its own constants are
    read once, when it is first imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in (
        "1",
        "ON",
        "YES",
        "TRUE",
    )


def snapshot_of(folder: str | Path) -> tuple[str, str] | None:
    """(repo id, commit) when `folder` is a snapshot folder of a huggingface_hub cache."""
    m = SNAPSHOT.search(Path(folder).resolve().as_posix())
    return (m["repo"].replace("--", "/", 1), m["commit"]) if m else None


def provenance(folder: str | Path) -> dict[str, str]:
    """result.json's model.hub_repo and model.revision for a folder that is a snapshot."""
    found = snapshot_of(folder)
    return {"hub_repo": found[0], "revision": found[1]} if found else {}


def resolve_model(
    name: str, revision: str | None = None, random_weights: bool = False
) -> ResolvedModel:
    """A folder as it is, or the cached (or downloaded) snapshot of a Hub repo id."""
    path = Path(name).expanduser()
    if path.is_dir():
        if revision:
            raise ModelError(
                f"--model {name}: --revision applies to a Hub repo id, not to a folder"
            )
        found = snapshot_of(path)
        return ResolvedModel(path, *(found or (None, None)))
    if not REPO_ID.match(name):
        raise ModelError(f"--model {name}: no such folder, and not a Hub repo id (ORG/NAME)")
    folder = _snapshot(name, revision, CONFIG_FILES + ([] if random_weights else WEIGHTS))
    if not random_weights and not any(folder.glob("*.safetensors")):
        folder = _snapshot(name, revision, CONFIG_FILES + PICKLED_WEIGHTS)
    found = snapshot_of(folder)
    return ResolvedModel(folder, name, found[1] if found else revision)


def _snapshot(repo: str, revision: str | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    from mmlubench.data.download import _hub_errors

    local_only = offline()
    try:
        return Path(
            snapshot_download(
                repo,
                revision=revision,
                cache_dir=cache_dir(),
                allow_patterns=patterns,
                local_files_only=local_only,
            )
        )
    except (*_hub_errors(), OSError, ValueError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        where = "HF_HUB_OFFLINE is set" if local_only else f"the Hub did not answer: {why}"
        rev = f" at revision {revision}" if revision else ""
        raise ModelError(
            f"--model {repo}{rev}: not in the Hugging Face cache ({cache_dir()}) and {where}; "
            f"fetch it where the Hub is reachable (`hf download {repo}`, with the same "
            "HF_HOME), log in first for a gated repo (`hf auth login`), or give a model "
            "folder"
        ) from None


def model_layer(
    name: str, revision: str | None, random_weights: bool, case_named: bool
) -> tuple[str | None, dict]:
    """(the case file to run, config overrides) for `--model`: the model's folder as
    weight_dir, and, unless a case is named, the family case whose model this is by its
    config.json (cases.case_for_model), else the generic case."""
    import json

    from mmlubench.config.cases import GENERIC_CASE, case_for_model
    from mmlubench.config.config import CONFIG_DIR

    resolved = resolve_model(name, revision, random_weights)
    overrides = {"weight_dir": str(resolved.folder.resolve()), "model": name, "revision": revision}
    if case_named:
        return None, overrides
    try:
        config = json.loads((resolved.folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}  # the run names the missing or broken file
    case = case_for_model(config) if isinstance(config, dict) else None
    return str(case.path if case else CONFIG_DIR / f"{GENERIC_CASE}.yaml"), overrides


def run_label(name: str) -> str:
    """A run folder's suffix for a model: its repo or folder name, as a path component."""
    return re.sub(r"[^\w.-]+", "-", Path(name.rstrip("/")).name) or "model"
