"""The environment of a run's helper processes (run/questions.py, engines/precompile.py)."""

from __future__ import annotations

import os
import sys


def helper_env() -> dict[str, str]:
    """This process's environment, with its module search path as PYTHONPATH (a script may
    have extended sys.path), so that a helper started with `python -m`/`-c` imports the same
    mmlubench."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
