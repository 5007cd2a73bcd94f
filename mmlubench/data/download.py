"""Fetch MMLU and the weights from the Hugging Face Hub into the layout the case expects.

MMLU: `data.tar` of the dataset repo Stevross/mmlu, whose `data/` folder becomes MMLU_DIR.
Weights: every file of deepseek-ai/deepseek-llm-7b-base into WEIGHT_DIR.

Without network (or with a Hub that refuses), the command ends with one line naming the repo and
the ways to do without it (a mirror in HF_ENDPOINT, a local data.tar, a copy of the files), and
leaves no empty or half-made folder where a run would look for the data.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from mmlubench.data.mmlu import SPLITS
from mmlubench.errors import DataError, DownloadError

MMLU_REPO = "Stevross/mmlu"
MMLU_FILE = "data.tar"


def unpack_data_tar(tar_path: str | Path, dest: str | Path) -> Path:
    """Unpack the `data/` folder of an MMLU data.tar into `dest` (which must not hold MMLU yet).

    Only regular files and folders under `data/` are taken; links and paths that escape are
    refused by tarfile's "data" filter.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    if any((dest / s).exists() for s in SPLITS):
        raise DataError(f"{dest}: already holds MMLU split folders; remove them first")
    try:
        tar = tarfile.open(tar_path)  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as e:
        raise DataError(f"{tar_path}: cannot open as a tar archive: {e}") from None
    with tar, tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmp:
        members = [m for m in tar.getmembers() if m.name.split("/")[0] == "data"]
        if not members:
            raise DataError(f"{tar_path}: no data/ folder inside; is this MMLU's data.tar?")
        try:
            tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise DataError(f"{tar_path}: cannot unpack: {e}") from None
        src = Path(tmp) / "data"
        missing = [s for s in ("dev", "test") if not (src / s).is_dir()]
        if missing:
            raise DataError(f"{tar_path}: data/ has no {', '.join(missing)} folder(s)")
        dest.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            shutil.move(str(item), dest / item.name)
    return dest


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises for network and HTTP failures (its HTTP library varies)."""
    from huggingface_hub import errors

    types: list[type[BaseException]] = [OSError, errors.HfHubHTTPError, errors.HFValidationError]
    for module, name in (
        ("httpx", "HTTPError"),
        ("httpx2", "HTTPError"),
        ("requests", "RequestException"),
    ):
        try:
            types.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def hub_error(e: BaseException, repo: str, what: str, instead: str) -> DownloadError:
    """One line: what failed, on which endpoint, and what to do without the Hub."""
    from huggingface_hub import constants, errors

    endpoint = constants.ENDPOINT
    first = (str(e).strip().splitlines() or [""])[0]
    if isinstance(e, (errors.RepositoryNotFoundError, errors.GatedRepoError)):
        cause = f"{repo} is not found or is gated at {endpoint} (log in with `hf auth login`?)"
    elif constants.HF_HUB_OFFLINE:
        cause = f"HF_HUB_OFFLINE is set and {repo} is not in the local Hugging Face cache"
    else:
        cause = f"cannot get {repo} from {endpoint} ({type(e).__name__}: {first})"
    return DownloadError(f"{what}: {cause}; {instead}")


def check_reachable(repo: str, repo_type: str, what: str, instead: str) -> None:
    """One quick request before anything is created: the client's own downloads retry 5 times
    with back-off (20 s and more) before they give up on an unreachable endpoint."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:  # files may be in the local cache: let the download try
        return
    try:
        HfApi().repo_info(repo, repo_type=repo_type)
    except _hub_errors() as e:
        raise hub_error(e, repo, what, instead) from None


def data_instead(dest: Path) -> str:
    return (
        f"without network: get data.tar of the HF dataset {MMLU_REPO} elsewhere and run "
        f"`mmlubench download --data --data-tar PATH`, or unpack its data/ folder into {dest} "
        "yourself, or set HF_ENDPOINT to a Hub mirror"
    )


def weights_instead(dest: Path, repo: str) -> str:
    return (
        f"without network: copy every file of {repo} into {dest} (or pass --weight-dir "
        "with the path of a copy), or set HF_ENDPOINT to a Hub mirror; "
        "`run --random-weights` measures speed with config.json alone"
    )


def download_data(dest: str | Path, repo: str = MMLU_REPO, filename: str = MMLU_FILE) -> Path:
    """Fetch `filename` of the dataset `repo` (into the HF cache) and unpack it into `dest`."""
    from huggingface_hub import hf_hub_download

    dest = Path(dest)
    check_reachable(repo, "dataset", f"MMLU ({filename})", data_instead(dest))
    try:
        tar_path = hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset")
    except _hub_errors() as e:
        raise hub_error(e, repo, f"MMLU ({filename})", data_instead(dest)) from None
    return unpack_data_tar(tar_path, dest)


def download_weights(dest: str | Path, repo: str) -> Path:
    """Fetch every file of `repo` into `dest`.

    A new folder is filled under the name DEST.partial and renamed to DEST when complete, so a
    failed download never leaves a folder that looks like a model; a partial folder that holds
    files is kept (the same command goes on with it), an empty one is removed.
    """
    from huggingface_hub import snapshot_download

    dest = Path(dest)
    what = f"weights ({repo})"
    check_reachable(repo, "model", what, weights_instead(dest, repo))
    target = (
        dest if dest.is_dir() and any(dest.iterdir()) else dest.with_name(dest.name + ".partial")
    )
    try:
        target.mkdir(parents=True, exist_ok=True)
        snapshot_download(repo_id=repo, local_dir=str(target))
    except _hub_errors() as e:
        error = hub_error(e, repo, what, weights_instead(dest, repo))
        if target != dest:
            if any(p.name != ".cache" for p in target.iterdir()):
                error.args = (
                    f"{error}; the files fetched so far are kept in {target}, run the "
                    "same command again to go on",
                )
            else:
                shutil.rmtree(target, ignore_errors=True)
        raise error from None
    if target != dest:
        os.replace(target, dest)  # dest is absent or an empty folder
    return dest
