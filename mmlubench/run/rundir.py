"""The run folder: where it goes, what it holds, and who may write it.

runs/<date>_<case>_<engine>[_<run_name>]/ holds config.yaml (the validated config, the base
config of `--resume`), fingerprint.json and progress.jsonl (resume.py), and at the end
predictions.jsonl and result.json (whose presence says the run is finished). While a process
runs it, run.lock holds that process's pid and host under an exclusive lock (`RunLock`), so a
second `run --resume` of the same folder stops at once instead of computing everything twice.
The operating system drops the lock when its process dies, even by kill -9: a lock file left
behind by a dead process is taken over.

Every problem with the folder (a file in the way, no permission, a read-only file system, a
path that cannot exist) is found before any work and named in one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mmlubench import safefile
from mmlubench.errors import RunError
from mmlubench.results.files import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from mmlubench.config.config import Config

CONFIG = "config.yaml"
FINGERPRINT = "fingerprint.json"
PROGRESS = "progress.jsonl"
RESULT = "result.json"
LOCK = "run.lock"
PREDICTIONS = "predictions.jsonl"
# Every file mmlubench writes in a run folder, the temporary files of the atomic writes too.
OWN_FILES = (
    *(
        n + tmp
        for n in (CONFIG, FINGERPRINT, PREDICTIONS, RESULT, "report.html")
        for tmp in ("", ".tmp")
    ),
    PROGRESS,
    LOCK,
)


def _os_error(path: Path, what: str, e: OSError) -> RunError:
    reason = (
        "a file is in the way"
        if e.errno in (errno.EEXIST, errno.ENOTDIR)
        else (e.strerror or str(e)).lower()
    )
    return RunError(f"{path}: cannot {what} ({reason})")


def new_run_dir(cfg: Config) -> Path:
    """Make runs/<date>_<case>_<engine>[_<name>] (made unique with a counter) under
    cfg.output_dir; an output folder that cannot hold it is an error naming the folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}_{cfg.case}_{cfg.engine}" + (f"_{cfg.run_name}" if cfg.run_name else "")
    root = Path(cfg.output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        for k in range(1, 10_000):
            path = root / (base if k == 1 else f"{base}-{k}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise _os_error(root, "make run folders in this output folder", e) from None
    raise RunError(f"{root}: cannot make a new run folder named {base} (too many exist)")


def resume_config_path(run_dir: str | Path) -> Path:
    """RUN_DIR/config.yaml, the base config of a resumed run; errors name the folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder to resume")
    if (run_dir / RESULT).is_file():
        raise RunError(f"{run_dir}: this run is finished ({RESULT} exists); nothing to resume")
    path = run_dir / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir}: not a resumable run folder (no {CONFIG})")
    if not path.read_bytes().strip():  # its defaults would make another run
        raise RunError(
            f"{path}: empty: the run's config is lost, it cannot be resumed (start a new run)"
        )
    return path


def check_writable(run_dir: Path) -> None:
    """Fail now, not after the work, if the folder or its progress log cannot be written."""
    # One probe per process: two resumes of one folder probe at once (the lock then refuses
    # one), and a shared name let one remove the other's probe (ENOENT, a wrong error).
    probe = run_dir / f".write-test-{os.getpid()}"
    for name in OWN_FILES:  # a planted link is refused before any work, not at the end
        safefile.refuse_link(run_dir / name)
    try:
        os.close(safefile.open_fd(probe, "x"))
        probe.unlink()
        if os.path.lexists(run_dir / PROGRESS):
            os.close(safefile.open_fd(run_dir / PROGRESS, "a"))
    except OSError as e:
        raise _os_error(Path(e.filename or run_dir), "write the run folder", e) from None


def write_run_files(run_dir: Path, cfg: Config, fp: dict) -> None:
    """config.yaml (the validated config) and fingerprint.json of a new run."""
    write_text_atomic(
        Path(run_dir) / CONFIG, lambda f: yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    )
    write_json_atomic(Path(run_dir) / FINGERPRINT, fp)


class RunLock:
    """An exclusive lock on a run folder, held from `acquire` to `release` (or death)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunError naming the process (pid and host) that holds it."""
        while True:
            fd = safefile.open_fd(self.path, "lock")  # never through a planted link
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunError(
                    f"{self.path.parent}: this run folder is in use by {holder} "
                    f"(lock {self.path}); wait until it ends"
                ) from None
            # The holder before us may have removed the file between our open and our lock:
            # then we locked a file nobody else sees, and must lock the current one instead.
            try:
                same = os.fstat(fd).st_ino == os.lstat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)  # a dead holder's pid (kill -9) is replaced by ours
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and let go of the lock."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
