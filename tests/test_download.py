"""Unpacking MMLU's data.tar (built locally: tests never download)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mmlubench.data.download import unpack_data_tar
from mmlubench.data.mmlu import load_mmlu
from mmlubench.errors import DataError

ROWS = "".join(f"Question {i}?,a,b,c,d,{'ABCD'[i % 4]}\n" for i in range(5))


def make_tar(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


MMLU_FILES = {
    "data/README.txt": "MMLU\n",
    "data/dev/x_dev.csv": ROWS,
    "data/val/x_val.csv": ROWS[:40],
    "data/test/x_test.csv": ROWS.replace("\n", "\r\n"),
    "data/test/y_test.csv": ROWS,
    "data/dev/y_dev.csv": ROWS,
    "other/ignored.txt": "not MMLU\n",
}


def test_unpack_puts_data_in_place(tmp_path):
    tar = make_tar(tmp_path / "data.tar", MMLU_FILES)
    dest = tmp_path / "root" / "mmlu_dataset" / "data"
    dest.parent.mkdir(parents=True)  # the unpacking's temporary folder goes here
    assert unpack_data_tar(tar, dest) == dest
    for name, text in MMLU_FILES.items():
        if name.startswith("data/"):
            target = dest / name.removeprefix("data/")
            assert target.read_bytes() == text.encode("utf-8"), name
    assert not (dest / "other").exists() and not (dest / "data").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["README.txt", "dev", "test", "val"]
    ds = load_mmlu(dest, "test")
    assert ds.subjects == ["x", "y"] and len(ds.questions) == 10
    # Nothing is left behind next to the destination (the temporary folder is gone).
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data"]


def test_tar_without_data_folder(tmp_path):
    tar = make_tar(tmp_path / "data.tar", {"mmlu/dev/x_dev.csv": ROWS})
    with pytest.raises(DataError, match="no data/ folder inside"):
        unpack_data_tar(tar, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_tar_without_test_folder(tmp_path):
    tar = make_tar(tmp_path / "data.tar", {"data/dev/x_dev.csv": ROWS})
    with pytest.raises(DataError, match="no test folder"):
        unpack_data_tar(tar, tmp_path / "dest")


def test_not_a_tar(tmp_path):
    path = tmp_path / "data.tar"
    path.write_text("<html>rate limited</html>", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}: cannot open as a tar archive"):
        unpack_data_tar(path, tmp_path / "dest")


def test_destination_already_holds_mmlu(tmp_path):
    tar = make_tar(tmp_path / "data.tar", MMLU_FILES)
    (tmp_path / "dest" / "test").mkdir(parents=True)
    with pytest.raises(DataError, match="already holds MMLU split folders"):
        unpack_data_tar(tar, tmp_path / "dest")


def test_path_escaping_the_folder_is_refused(tmp_path):
    tar = make_tar(tmp_path / "data.tar", {**MMLU_FILES, "data/../../escaped.txt": "x"})
    with pytest.raises(DataError, match="cannot unpack"):
        unpack_data_tar(tar, tmp_path / "a" / "dest")
    assert not list(tmp_path.rglob("escaped.txt"))


# ---- no network, a refusing Hub, a local data.tar --------------------------------


class Unreachable(OSError):
    pass


def test_unreachable_hub_creates_nothing(tmp_path, monkeypatch):
    """The quick check fails before any folder is made (the subprocess version with a real
    unreachable endpoint is in test_attacks.py)."""
    import huggingface_hub

    from mmlubench.data.download import download_weights
    from mmlubench.errors import DownloadError

    def refuse(*args, **kwargs):
        raise Unreachable("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", refuse)
    dest = tmp_path / "data" / "deepseek_7b_hf"
    with pytest.raises(DownloadError) as e:
        download_weights(dest, "org/model")
    assert "org/model" in str(e.value) and "Connection refused" in str(e.value)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("fetched", [False, True])
def test_failed_download_leaves_no_model_folder(tmp_path, monkeypatch, fetched):
    """A download that breaks off: nothing under the model folder's name; files already
    fetched are kept under NAME.partial (and said so), an empty partial folder is removed."""
    import huggingface_hub

    from mmlubench.data.download import download_weights
    from mmlubench.errors import DownloadError

    def snapshot(repo_id: str, local_dir: str) -> None:
        if fetched:
            (Path(local_dir) / "config.json").write_text("{}")
        raise Unreachable("connection reset")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    dest = tmp_path / "deepseek_7b_hf"
    with pytest.raises(DownloadError) as e:
        download_weights(dest, "org/model")
    assert not dest.exists()
    partial = tmp_path / "deepseek_7b_hf.partial"
    assert partial.exists() == fetched
    assert (f"kept in {partial}" in str(e.value)) == fetched


def test_complete_download_is_renamed_into_place(tmp_path, monkeypatch):
    import huggingface_hub

    from mmlubench.data.download import download_weights

    def snapshot(repo_id: str, local_dir: str) -> None:
        (Path(local_dir) / "config.json").write_text("{}")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    dest = tmp_path / "deepseek_7b_hf"
    assert download_weights(dest, "org/model") == dest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deepseek_7b_hf"]
    assert (dest / "config.json").read_text() == "{}"


def test_download_from_a_local_data_tar(tmp_path, capsys):
    from mmlubench.cli.main import main

    tar = make_tar(tmp_path / "data.tar", MMLU_FILES)
    assert main(["download", "--data-tar", str(tar), "--data-dir", str(tmp_path / "d")]) == 0
    dest = tmp_path / "d" / "mmlu_dataset" / "data"
    assert capsys.readouterr().out == f"MMLU -> {dest}\n"
    assert load_mmlu(dest, "test").subjects == ["x", "y"]
    assert not (tmp_path / "d" / "deepseek_7b_hf").exists()  # --data-tar alone: no weights
