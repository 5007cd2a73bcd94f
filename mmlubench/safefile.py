"""Every file mmlubench writes is opened here, without following links.

A link planted where a file of ours goes (`report.html`, `run.lock`, `progress.jsonl`, the
`.tmp` files of the atomic writes) would make a write truncate or overwrite its target outside
the run folder. So the last component is opened with O_NOFOLLOW, and what was opened must be a
regular file with one name (a hard link to a file elsewhere is refused too); anything else is
one error line naming the path. Errors of the write itself (a full disk, no permission, a
folder in the way) are one line too.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mmlubench.errors import OutputError

FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO never hangs the open
MODES = {
    "w": os.O_WRONLY | os.O_CREAT,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "r+": os.O_RDWR,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "lock": os.O_RDWR | os.O_CREAT,
}


def output_error(path: str | Path, e: OSError, what: str = "write") -> OutputError:
    """One line for an OSError while writing `path`."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        err = OutputError(f"{path}: cannot {what}: the disk is full (no space left on device)")
        err.disk_full = True
        return err
    if e.errno == errno.ELOOP:
        return link_error(path)
    reason = {
        errno.EISDIR: "it is a folder",
        errno.ENOENT: "its folder does not exist",
        errno.ENOTDIR: "a file is in the way",
        errno.ENXIO: "not a regular file",
        errno.EEXIST: "a file is in the way",
    }.get(e.errno or 0)
    return OutputError(f"{path}: cannot {what} ({reason or (e.strerror or str(e)).lower()})")


def link_error(path: str | Path) -> OutputError:
    return OutputError(
        f"{path}: refused: a link where mmlubench writes a file of its own "
        "(it never writes through links); remove it"
    )


def refuse_link(path: str | Path) -> None:
    """A link where a file of ours should be is an error (also for the files we only read and
    then rewrite)."""
    if Path(path).is_symlink():
        raise link_error(path)


def open_fd(path: str | Path, mode: str = "w") -> int:
    """The file descriptor of `path` opened as `mode` (w: truncated, a: appended, r+, x: new,
    lock: read-write, created), never through a link; only a regular file with one name."""
    try:
        fd = os.open(path, MODES[mode] | FLAGS, 0o644)
    except OSError as e:
        raise output_error(path, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        kind = (
            "it has another name (a hard link)"
            if stat.S_ISREG(st.st_mode)
            else "not a regular file"
        )
        raise OutputError(f"{path}: refused: {kind}; mmlubench writes only its own files")
    os.set_blocking(fd, True)
    if mode == "w":
        os.ftruncate(fd, 0)
    return fd


def open_file(path: str | Path, mode: str = "w", binary: bool = False) -> IO:
    """`open_fd` as a Python file (text files in UTF-8)."""
    fd = open_fd(path, mode)
    pymode = {"w": "w", "a": "a", "r+": "r+", "x": "w"}[mode] + ("b" if binary else "")
    return os.fdopen(fd, pymode, **({} if binary else {"encoding": "utf-8"}))


def write_atomic(path: str | Path, write: Callable[[IO], object], binary: bool = False) -> None:
    """Call `write` on a temporary file beside `path`, sync it, then rename it to `path`: a crash
    or an exception never leaves a truncated `path` (nor the temporary file, on an exception)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    refuse_link(path)
    refuse_link(tmp)
    made = False
    try:
        tmp.unlink(missing_ok=True)  # ours from a crash: a regular file (links refused above)
        with open_file(tmp, "x", binary) as f:
            made = True
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if made:
            tmp.unlink(missing_ok=True)
        raise output_error(path, e) from None
    except BaseException:
        if made:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """`text` to `path` (UTF-8), atomically and never through a link."""
    write_atomic(path, lambda f: f.write(text))


def write_bytes(path: str | Path, data: bytes) -> None:
    """`data` to `path`, atomically and never through a link."""
    write_atomic(path, lambda f: f.write(data), binary=True)


def make_parent(path: str | Path) -> None:
    """Make the folder `path` goes in (an error naming it when it cannot be made)."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(parent, e, "make the folder") from None
