"""Which machine and software produced a result: device, driver, versions, git hash, date."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

import mmlubench
from mmlubench.device.vendors.base import Vendor


def git_revision() -> dict:
    """Commit of the mmlubench checkout and whether it had uncommitted changes (None if no git)."""
    root = Path(mmlubench.__file__).resolve().parent.parent
    if os.environ.get("MMLUBENCH_GIT_COMMIT"):  # a copy of the tree without .git (device runs)
        return {"commit": os.environ["MMLUBENCH_GIT_COMMIT"], "dirty": None}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_version(name: str) -> str:
    """The version of package `name`, without importing it where it is not imported yet:
    importing transformers imports its model code (seconds), and the environment is collected
    before the questions load. The module's own __version__ where it is imported already."""
    module = sys.modules.get(name)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return module.__version__
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # no metadata (a copied tree): the module
        return importlib.import_module(name).__version__


def collect(device: str, vendor: Vendor) -> dict:
    """The environment of a run on `device`, whose vendor plug-in names it and its software."""
    versions = vendor.versions()
    limits = vendor.limits()
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "mmlubench": mmlubench.__version__,
        "git": git_revision(),
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
        "tokenizers": package_version("tokenizers"),
        "cuda": versions.get("cuda"),
        "cudnn": versions.get("cudnn"),
        "driver": versions.get("driver"),
        "vendor": vendor.name,
        "vendor_versions": versions,
        "device": device,
        "device_name": vendor.device_name(),
        "device_count": vendor.device_count(),
        # only the two known keys: a plug-in's limits() may give fewer or more
        "power_limit_w": limits.get("power_limit_w"),
        "max_sm_clock_mhz": limits.get("max_sm_clock_mhz"),
        "cpu_count": os.cpu_count(),
        "command": sys.argv,
    }
