"""The repository describes the software, not how it was built: no tracker numbers, no numbered
working sessions, no calls of a borrowed machine, in any tracked text (docs, code, tests, bench
records). A resumed run's sessions are the software's own and are never numbered in prose."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Spelled in parts so that this file does not match itself.
PROCESS_WORDS = re.compile(
    "|".join(["session" + r" [0-9]", "device" + " call", "issue" + r" [0-9]+"]), re.I
)


def process_words(text: str) -> list[str]:
    """The lines of `text` that speak of the development process."""
    return [line.strip() for line in text.splitlines() if PROCESS_WORDS.search(line)]


def test_the_words_are_found() -> None:
    tracker, machine = "iss" + "ue 12", "Device" + " Call"
    assert process_words(f"fixed in {tracker}\nok\nthe {machine} of Monday") == [
        f"fixed in {tracker}",
        f"the {machine} of Monday",
    ]
    assert process_words("resumed sessions of a run; session ids; the device's calls") == []


def test_no_tracked_text_speaks_of_the_process() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    found = []
    for name in filter(None, files):
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary: tarballs, gzipped logs
            continue
        found += [
            f"{name}: {line[:120]}" for line in process_words(data.decode("utf-8", "replace"))
        ]
    assert len(files) > 100
    assert found == [], "\n".join(found)
