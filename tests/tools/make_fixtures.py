"""Copy the MMLU files and the deepseek tokenizer the test suite needs into tests/fixtures/.

Run once by hand (`python tests/tools/make_fixtures.py [SHARED]`, SHARED defaulting to
../shared beside the clone). Files are copied byte for byte; a few long subjects keep only
their first rows, cut at a row boundary (found with the csv module), so CRLF line ends,
quoting and "None" cells stay as they are in the real files. tests/fixtures/README.md says
which files are cut.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "fixtures"
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "shared"

# Whole files: what the tests use row by row or count over a whole subject.
WHOLE = [
    "abstract_algebra",
    "anatomy",
    "business_ethics",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "electrical_engineering",
    "global_facts",
    "nutrition",
]
# Long subjects: the first rows only (the tests use rows below these counts).
CUT = {
    "high_school_european_history": 30,
    "high_school_us_history": 8,
    "college_medicine": 8,
    "professional_law": 2,
}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "config.json", "SOURCE.md"]


def first_rows(raw: bytes, rows: int) -> bytes:
    """The bytes of the first `rows` CSV rows of `raw` (whole physical lines)."""
    lines = re.findall(r"[^\n]*\n|[^\n]+$", raw.decode("utf-8"))  # "\n"-ended lines
    consumed = 0

    def feed():
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    reader = csv.reader(feed())
    for _ in range(rows):
        next(reader)
    return "".join(lines[:consumed]).encode("utf-8")


def count_rows(raw: bytes) -> int:
    return len(list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))))


def main() -> None:
    src = SHARED / "mmlu" / "data"
    for split in ("dev", "val", "test"):
        out = HERE / "mmlu" / split
        out.mkdir(parents=True, exist_ok=True)
        for subject in [*WHOLE, *CUT]:
            name = f"{subject}_{split}.csv"
            raw = (src / split / name).read_bytes()
            if subject in CUT and split != "dev":
                rows = min(CUT[subject], count_rows(raw))
                raw = first_rows(raw, rows)
                assert count_rows(raw) == rows
            (out / name).write_bytes(raw)
    tok = HERE / "tokenizers" / "deepseek-llm-7b-base"
    tok.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(SHARED / "deepseek-llm-7b-base" / name, tok / name)


if __name__ == "__main__":
    main()
