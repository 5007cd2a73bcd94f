"""Fetch MMLU and the weights from the Hugging Face Hub into the layout the case expects.

MMLU: `data.tar` of the dataset repo Stevross/mmlu, whose `data/` folder becomes MMLU_DIR.
Weights: every file of deepseek-ai/deepseek-llm-7b-base into WEIGHT_DIR.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from mmlubench.data import SPLITS
from mmlubench.errors import DataError

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


def download_data(dest: str | Path) -> Path:
    from huggingface_hub import hf_hub_download

    tar_path = hf_hub_download(repo_id=MMLU_REPO, filename=MMLU_FILE, repo_type="dataset")
    return unpack_data_tar(tar_path, dest)


def download_weights(dest: str | Path, repo: str) -> Path:
    from huggingface_hub import snapshot_download

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    snapshot_download(repo_id=repo, local_dir=str(dest))
    return dest
