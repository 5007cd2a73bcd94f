"""MMLU files: every kind of bad file is a DataError naming the file (and the line where there is
one); good files with CRLF ends, quoted newlines and "None" cells read exactly; real row counts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import read_rows

from mmlubench.cli.main import main
from mmlubench.data.mmlu import load_mmlu, read_questions
from mmlubench.errors import DataError

GOOD = "Good question {}?,one,two,three,four,{}\n"


def good_rows(n: int, first: int = 0) -> str:
    return "".join(GOOD.format(i, "ABCD"[i % 4]) for i in range(first, first + n))


def make_mmlu(
    root: Path,
    test: str | bytes | None = None,
    dev: str | bytes | None = None,
    subject: str = "toy",
) -> Path:
    """A one-subject MMLU folder; None writes good rows, bytes are written as they are."""
    mmlu = root / "mmlu"
    for split, content, n in (("dev", dev, 5), ("test", test, 4)):
        (mmlu / split).mkdir(parents=True, exist_ok=True)
        data = good_rows(n) if content is None else content
        path = mmlu / split / f"{subject}_{split}.csv"
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8", newline="")
    return mmlu


# (name, file content, line named in the error, words of the message)
BAD_TEST_FILES = [
    (
        "wrong field count",
        good_rows(2) + "Q?,one,two,three,A\n" + good_rows(1, 3),
        3,
        "expected 6 fields",
    ),
    ("too many fields", good_rows(1) + "Q?,a,b,c,d,A,extra\n", 2, "expected 6 fields"),
    (
        "answer not A-D",
        good_rows(1) + "Q?,a,b,c,d,E\n" + good_rows(2, 2),
        2,
        "answer must be one of",
    ),
    ("lowercase answer", "Q?,a,b,c,d,a\n", 1, "answer must be one of"),
    ("answer with a space", good_rows(3) + "Q?,a,b,c,d, B\n", 4, "answer must be one of"),
    ("blank line", good_rows(1) + "\n" + good_rows(2, 1), 2, "blank line"),
    ("trailing blank line", good_rows(3) + "\n", 4, "blank line"),
    ("empty question", good_rows(2) + ",a,b,c,d,A\n", 3, "question cell is empty"),
    ("non-UTF-8", good_rows(2).encode() + b"Caf\xe9?,a,b,c,d,A\n", 3, "not valid UTF-8"),
    (
        "NUL byte",
        good_rows(1).encode() + b"Q\x00?,a,b,c,d,A\n" + good_rows(1, 2).encode(),
        2,
        "NUL byte",
    ),
    # The quote opened on line 2 is never closed: the row starts at line 2 and runs to the end.
    ("unterminated quote", good_rows(1) + '"Q?,a,b,c,d,A\n' + good_rows(3, 2), 2, "malformed CSV"),
    ("junk after a closing quote", good_rows(2) + '"Q?"x,a,b,c,d,A\n', 3, "malformed CSV"),
]


@pytest.mark.parametrize(
    "name,content,line,words", BAD_TEST_FILES, ids=[c[0] for c in BAD_TEST_FILES]
)
def test_bad_test_file(tmp_path, name, content, line, words):
    mmlu = make_mmlu(tmp_path, test=content)
    path = mmlu / "test" / "toy_test.csv"
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test")
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert words in msg


def test_bad_dev_file_names_the_dev_file(tmp_path):
    mmlu = make_mmlu(tmp_path, dev=good_rows(3) + "Q?,a,b,c,d,F\n" + good_rows(1, 4))
    with pytest.raises(DataError, match=re.escape(f"{mmlu / 'dev' / 'toy_dev.csv'}:4: answer")):
        load_mmlu(mmlu, "test")


def test_empty_file(tmp_path):
    mmlu = make_mmlu(tmp_path, test="")
    path = mmlu / "test" / "toy_test.csv"
    with pytest.raises(DataError, match=re.escape(f"{path}: has no rows")):
        load_mmlu(mmlu, "test")


def test_missing_dev_file(tmp_path):
    mmlu = make_mmlu(tmp_path)
    (mmlu / "dev" / "toy_dev.csv").unlink()
    (mmlu / "dev" / "other_dev.csv").write_text(good_rows(5))  # dev folder not empty
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test")
    assert str(mmlu / "dev" / "toy_dev.csv") in str(e.value)
    assert "file not found" in str(e.value)


def test_missing_test_file(tmp_path):
    mmlu = make_mmlu(tmp_path)
    (mmlu / "dev" / "other_dev.csv").write_text(good_rows(5))  # a dev file without test file
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test")
    assert str(mmlu / "test" / "other_test.csv") in str(e.value)
    assert "file not found" in str(e.value)


def test_missing_split_file_read_directly(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'x.csv'}: file not found")):
        read_questions(tmp_path / "x.csv", "x")


def test_dev_file_shorter_than_few_shots(tmp_path):
    mmlu = make_mmlu(tmp_path, dev=good_rows(3))
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test", few_shots=5)
    assert str(e.value).startswith(f"{mmlu / 'dev' / 'toy_dev.csv'}: has 3 rows")
    assert "few_shots=5" in str(e.value)
    assert len(load_mmlu(mmlu, "test", few_shots=3).questions) == 4


def test_unknown_subject(tmp_path):
    mmlu = make_mmlu(tmp_path)
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test", subjects=["toy", "astrology"])
    assert str(mmlu / "test") in str(e.value)
    assert "astrology" in str(e.value)


def test_unknown_subject_on_the_command_line(tmp_path, capsys):
    mmlu = make_mmlu(tmp_path)
    rc = main(
        [
            "prompts",
            "--mmlu-dir",
            str(mmlu),
            "--weight-dir",
            str(tmp_path),
            "--subjects",
            "toy,astrology",
            "--out",
            str(tmp_path / "p.jsonl"),
            "--no-progress",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "astrology" in err and str(mmlu / "test") in err
    assert "Traceback" not in err


def test_missing_mmlu_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_mmlu(tmp_path / "nowhere", "test")
    assert str(tmp_path / "nowhere") in str(e.value)
    assert "mmlubench download" in str(e.value)


def test_missing_split_folder(tmp_path):
    mmlu = make_mmlu(tmp_path)
    with pytest.raises(DataError, match=re.escape(f"{mmlu / 'val'}: folder not found")):
        load_mmlu(mmlu, "val")


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="unknown split 'train'"):
        load_mmlu(make_mmlu(tmp_path), "train")


def test_crlf_quotes_and_embedded_newlines(tmp_path):
    test = (
        b'"Line one\nline two, with ""quotes""?",a,"b, c","d\r\ne",f,B\r\n'
        b"Plain?,None,NA,,nan,D\r\n"
        b'"Last\n\nrow",1,2,3,4,A'
    )  # no line end after the last row, like the real files
    mmlu = make_mmlu(tmp_path, test=test)
    ds = load_mmlu(mmlu, "test")
    q = ds.questions
    assert [x.question for x in q] == [
        'Line one\nline two, with "quotes"?',
        "Plain?",
        "Last\n\nrow",
    ]
    assert q[0].choices == ("a", "b, c", "d\r\ne", "f")  # CRLF inside quotes is cell text
    assert q[1].choices == ("None", "NA", "", "nan")  # pandas would make all four NaN
    assert [x.answer for x in q] == ["B", "D", "A"]
    assert [x.line for x in q] == [1, 4, 5]  # 1-based line where each row starts
    assert [x.index for x in q] == [0, 1, 2]
    assert all(x.subject == "toy" and x.path.endswith("toy_test.csv") for x in q)


def test_utf8_bom_is_not_text(tmp_path):
    mmlu = make_mmlu(tmp_path, test=b"\xef\xbb\xbf" + good_rows(2).encode())
    assert load_mmlu(mmlu, "test").questions[0].question == "Good question 0?"


def test_subjects_sorted_and_limit(tmp_path):
    mmlu = make_mmlu(tmp_path, subject="zeta")
    make_mmlu(tmp_path, subject="alpha", test=good_rows(6))
    ds = load_mmlu(mmlu, "test", subjects=["zeta", "alpha"], limit=2)
    assert ds.subjects == ["alpha", "zeta"]
    assert [(x.subject, x.index) for x in ds.questions] == [
        ("alpha", 0),
        ("alpha", 1),
        ("zeta", 0),
        ("zeta", 1),
    ]
    assert [x.question for x in ds.dev["alpha"]] == [f"Good question {i}?" for i in range(5)]


@pytest.mark.parametrize("split,rows", [("dev", 285), ("val", 1531), ("test", 14042)])
def test_real_row_counts(full_mmlu_dir, split, rows):
    ds = load_mmlu(full_mmlu_dir, split)
    assert len(ds.subjects) == 57
    assert len(ds.questions) == rows
    assert sum(len(v) for v in ds.dev.values()) == 285


# Every cell of the real test split that pandas' default na_values would turn into NaN
# (found once with the csv module and pandas' list), as (subject, row, column): the 10 cells
# REFERENCE.md speaks of. Column 1 is choice A, 4 is choice D.
NAN_CELLS = [
    ("college_computer_science", 10, 1),
    ("college_computer_science", 94, 1),
    ("college_mathematics", 8, 1),
    ("college_mathematics", 21, 1),
    ("college_mathematics", 60, 1),
    ("college_physics", 60, 4),
    ("electrical_engineering", 41, 4),
    ("electrical_engineering", 68, 4),
    ("electrical_engineering", 107, 4),
    ("electrical_engineering", 117, 4),
]


def test_real_none_cells_stay_none(mmlu_dir):
    subjects = sorted({s for s, _, _ in NAN_CELLS})
    ds = load_mmlu(mmlu_dir, "test", subjects=subjects)
    by_key = {(q.subject, q.index): q for q in ds.questions}
    for subject, row, col in NAN_CELLS:
        assert read_rows("test", subject)[row][col] == "None"
        assert by_key[(subject, row)].choices[col - 1] == "None"
    cells = [c for q in ds.questions for c in (q.question, *q.choices)]
    assert sum(c == "None" for c in cells) == 10
    assert "nan" not in cells


def test_real_crlf_file_matches_the_csv_module(mmlu_dir):
    """nutrition_test.csv has CRLF row ends and bare LF inside cells."""
    raw = (mmlu_dir / "test" / "nutrition_test.csv").read_bytes()
    assert b"\r\n" in raw
    ds = load_mmlu(mmlu_dir, "test", subjects=["nutrition"])
    expected = read_rows("test", "nutrition")
    assert len(ds.questions) == len(expected) == 306
    assert [[q.question, *q.choices, q.answer] for q in ds.questions] == expected
    assert ds.questions[0].question.endswith("(as of 2020)?\n")
    assert not any("\r" in c for row in expected for c in row)


# ---- files that exist but cannot be read as a CSV --------------------------------


def test_unreadable_csv_is_one_error(tmp_path, monkeypatch):
    """Tests run as root, where chmod 000 does not stop a read: the read itself is made to fail
    as it does for a user without permission (what this proves: an OSError from the read is
    reported naming the file, not how the OS decides permissions)."""
    mmlu = make_mmlu(tmp_path)
    bad = mmlu / "test" / "toy_test.csv"
    real = Path.read_bytes

    def read_bytes(self):
        if self == bad:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test")
    assert str(e.value) == f"{bad}: cannot read: Permission denied"


def test_io_error_while_reading(tmp_path):
    """A real failing read, root or not: /proc/self/mem is a regular file whose read fails."""
    mmlu = make_mmlu(tmp_path)
    bad = mmlu / "test" / "toy_test.csv"
    bad.unlink()
    bad.symlink_to("/proc/self/mem")
    with pytest.raises(DataError, match=f"^{re.escape(str(bad))}: cannot read: "):
        load_mmlu(mmlu, "test")


def test_folder_where_a_csv_should_be(tmp_path):
    mmlu = make_mmlu(tmp_path)
    bad = mmlu / "dev" / "toy_dev.csv"
    bad.unlink()
    bad.mkdir()
    with pytest.raises(DataError) as e:
        load_mmlu(mmlu, "test")
    assert str(e.value) == f"{bad}: is a folder, expected an MMLU CSV file"


def test_pipe_where_a_csv_should_be(tmp_path):
    import os

    mmlu = make_mmlu(tmp_path)
    bad = mmlu / "test" / "toy_test.csv"
    bad.unlink()
    os.mkfifo(bad)  # reading it would block forever
    with pytest.raises(DataError, match="not a regular file"):
        load_mmlu(mmlu, "test")
