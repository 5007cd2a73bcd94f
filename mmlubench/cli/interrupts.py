"""Ctrl-C while a run goes: one KeyboardInterrupt, never a second one breaking its cleanup.

Python's own handler raises KeyboardInterrupt wherever the main thread is. A second Ctrl-C a
few milliseconds after the first then lands in the cleanup of the first (the lock released,
the log closed, a `__del__`) and prints "Exception ignored ... KeyboardInterrupt". And one that
lands in a `__del__` is swallowed there: the run goes on as if never interrupted. So here a
Ctrl-C that finds the main thread in a `__del__` is delivered again a moment later, and a
second one within WINDOW_S of the first is ignored (a later one raises again: the user insists).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

WINDOW_S = 1.0
_first: list[float] = []


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def handler(signum: int, frame: FrameType | None) -> None:
    """The SIGINT handler (see the module's docstring)."""
    if _in_finalizer(frame):  # raised here it would be ignored: deliver it again, outside
        threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    now = time.monotonic()
    if _first and now - _first[-1] < WINDOW_S:
        return
    _first[:] = [now]
    raise KeyboardInterrupt


def install() -> object | None:
    """Install `handler` for SIGINT; the handler it replaces (None off the main thread)."""
    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: Python's own handler stays
        return None


def ignore_from_now() -> None:
    """The run has stopped for an interrupt: every later Ctrl-C, up to the exit, is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
