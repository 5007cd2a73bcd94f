"""MMLU files in the Hendrycks layout: `<mmlu_dir>/{dev,val,test}/<subject>_<split>.csv`.

Read with the csv module, not pandas: pandas turns cells such as "None" into NaN (a known defect
of the reference). Every problem is an error that names the file and line; nothing is skipped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from mmlubench.errors import DataError

SPLITS = ("dev", "val", "test")
LETTERS = ("A", "B", "C", "D")
DOWNLOAD_HINT = (
    "get MMLU with `mmlubench download --data --data-dir DATA_DIR` (data.tar of the HF dataset "
    "Stevross/mmlu, unpacked so that DATA_DIR/MMLU_DIR holds dev/, val/ and test/)"
)


@dataclass(frozen=True)
class Question:
    """One MMLU row. `index` is the 0-based row number in its file, `line` the 1-based line."""

    subject: str
    index: int
    question: str
    choices: tuple[str, str, str, str]
    answer: str
    path: str
    line: int


@dataclass
class Dataset:
    """The questions under test (subjects in alphabetical order, rows in file order) and the
    dev rows of each subject, from which few-shot examples are taken."""

    split: str
    subjects: list[str]
    questions: list[Question]
    dev: dict[str, list[Question]] = field(default_factory=dict)


def split_file(mmlu_dir: Path, split: str, subject: str) -> Path:
    return Path(mmlu_dir) / split / f"{subject}_{split}.csv"


def read_questions(path: Path, subject: str) -> list[Question]:
    """Read and validate one CSV file: 6 fields a row, answer letter A-D, non-empty question."""
    if path.is_dir():  # not "not found": downloading again would not help
        raise DataError(f"{path}: is a folder, expected an MMLU CSV file")
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: not a regular file (a pipe or device?), expected a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: file not found; {DOWNLOAD_HINT}")
    try:
        raw = path.read_bytes()
    except OSError as e:  # permission denied, I/O error
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"{path}:{line}: contains a NUL byte; is this really a CSV file?")
    questions: list[Question] = []
    # newline="": the csv module must see \r\n and the newlines inside quoted cells as they are.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if not row:
                raise DataError(f"{path}:{line}: blank line (every line must be a question row)")
            if len(row) != 6:
                raise DataError(
                    f"{path}:{line}: expected 6 fields (question, A, B, C, D, answer), "
                    f"got {len(row)}"
                )
            question, a, b, c, d, answer = row
            if answer not in LETTERS:
                raise DataError(f"{path}:{line}: answer must be one of A, B, C, D, got {answer!r}")
            if not question.strip():
                raise DataError(f"{path}:{line}: the question cell is empty")
            questions.append(
                Question(subject, len(questions), question, (a, b, c, d), answer, str(path), line)
            )
    except csv.Error as e:
        # Name the line where the bad row starts: an unclosed quote is only noticed at the end.
        upto = f" (read up to line {reader.line_num})" if reader.line_num > start else ""
        raise DataError(f"{path}:{start}: malformed CSV: {e}{upto}") from None
    if not questions:
        raise DataError(f"{path}: has no rows")
    return questions


def find_subjects(mmlu_dir: Path, split: str) -> list[str]:
    """Subjects that have a `<split>` file, checked against the dev folder, sorted."""
    mmlu_dir = Path(mmlu_dir)
    if not mmlu_dir.is_dir():
        raise DataError(f"{mmlu_dir}: MMLU folder not found; {DOWNLOAD_HINT}")
    for needed in sorted({"dev", split}):
        if not (mmlu_dir / needed).is_dir():
            raise DataError(f"{mmlu_dir / needed}: folder not found; {DOWNLOAD_HINT}")
    suffix = f"_{split}.csv"
    subjects = sorted(p.name[: -len(suffix)] for p in (mmlu_dir / split).glob(f"*{suffix}"))
    if not subjects:
        raise DataError(f"{mmlu_dir / split}: no *{suffix} files; {DOWNLOAD_HINT}")
    dev_subjects = sorted(p.name[: -len("_dev.csv")] for p in (mmlu_dir / "dev").glob("*_dev.csv"))
    for s in subjects:
        if s not in dev_subjects:
            raise DataError(
                f"{split_file(mmlu_dir, 'dev', s)}: file not found "
                f"(subject {s!r} has a {split} file but no dev file)"
            )
    for s in dev_subjects:
        if s not in subjects:
            raise DataError(
                f"{split_file(mmlu_dir, split, s)}: file not found "
                f"(subject {s!r} has a dev file but no {split} file)"
            )
    return subjects


def load_mmlu(
    mmlu_dir: str | Path,
    split: str = "test",
    subjects: list[str] | None = None,
    limit: int | None = None,
    few_shots: int = 5,
) -> Dataset:
    """Load the questions of `split` (first `limit` rows of each subject) and the dev rows."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    mmlu_dir = Path(mmlu_dir)
    available = find_subjects(mmlu_dir, split)
    if subjects is not None and not subjects:
        raise DataError(f"{mmlu_dir / split}: an empty subject list chooses no question")
    if subjects is None:
        chosen = available
    else:
        unknown = [s for s in subjects if s not in available]
        if unknown:
            raise DataError(
                f"{mmlu_dir / split}: no such subject(s): {', '.join(unknown)} "
                f"(known: {', '.join(available)})"
            )
        chosen = sorted(set(subjects))
    dataset = Dataset(split=split, subjects=chosen, questions=[])
    for subject in chosen:
        dev_path = split_file(mmlu_dir, "dev", subject)
        dev = read_questions(dev_path, subject)
        if len(dev) < few_shots:
            raise DataError(f"{dev_path}: has {len(dev)} rows, fewer than few_shots={few_shots}")
        dataset.dev[subject] = dev
        rows = read_questions(split_file(mmlu_dir, split, subject), subject)
        dataset.questions.extend(rows[:limit] if limit else rows)
    return dataset
