"""Which machine and software produced a result: device, driver, versions, git hash, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

import mmlubench


def git_revision() -> dict:
    """Commit of the mmlubench checkout and whether it had uncommitted changes (None if no git)."""
    root = Path(mmlubench.__file__).resolve().parent.parent
    if os.environ.get("MMLUBENCH_GIT_COMMIT"):  # a copy of the tree without .git (device runs)
        return {"commit": os.environ["MMLUBENCH_GIT_COMMIT"], "dirty": None}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:  # Linux: the CPU's marketing name
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v
    except Exception:
        return None


def collect(device: str) -> dict:
    import tokenizers
    import transformers

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "mmlubench": mmlubench.__version__,
        "git": git_revision(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "driver": driver_version() if cuda else None,
        "device": device,
        "device_name": device_name(device),
        "device_count": torch.cuda.device_count() if cuda else 0,
        "cpu_count": os.cpu_count(),
        "command": sys.argv,
    }
