"""Bad input, generated: every malformed CSV, config or model/tokenizer folder must end in a clear
error (an MmlubenchError naming the file or key) or in a correct result, never in another
exception from deep inside a library, and never in a silent skip.

The expected outcome of a CSV is worked out here from the bytes with the csv module alone (the
file's rows, or "must be an error"); mmlubench must agree row for row. Budgets are fixed and
derandomized, so every CI run tries the same cases in bounded time.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mmlubench.config.config import Config, dotted_to_nested, load_config, parse_set
from mmlubench.data.mmlu import load_mmlu, read_questions
from mmlubench.data.prompts import load_tokenizer
from mmlubench.errors import ConfigError, DataError, ModelError
from mmlubench.model.load import check_model_dir

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder that every example overwrites (hypothesis reruns the test body)."""
    return tmp_path_factory.mktemp("fuzz")


# ---- MMLU CSV files -----------------------------------------------------------------------


def expected_rows(data: bytes) -> list[list[str]] | None:
    """The rows a valid MMLU file holds, or None when it must be refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        return None
    ok = rows and all(
        len(r) == 6 and r[5] in "ABCD" and len(r[5]) == 1 and r[0].strip() for r in rows
    )
    return rows if ok else None


def check_csv(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    want = expected_rows(data)
    try:
        got = read_questions(path, "subject")
    except DataError as e:
        assert want is None, f"valid file refused: {e}"
        assert str(e).startswith(str(path)), e
        event("refused")
        return
    event("accepted")
    assert want is not None, "malformed file accepted"
    assert [[q.question, *q.choices, q.answer] for q in got] == want  # nothing skipped
    assert [q.index for q in got] == list(range(len(want)))


CELL = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(
    ['"', '""', ",", "\n", "\r\n", " ", "A", "None", 'a "quoted" b', "é", "\u2028", "\ufeff"]
)
QUESTION = CELL.filter(lambda c: c.strip())
GOOD_ROW = st.tuples(QUESTION, CELL, CELL, CELL, CELL, st.sampled_from("ABCD")).map(list)
BAD_ROW = st.lists(CELL, max_size=8) | st.tuples(  # wrong field count, answer or question
    st.sampled_from(["", " ", "\n"]) | CELL,
    CELL,
    CELL,
    CELL,
    CELL,
    st.sampled_from(["A", "a", "E", " A", "", "AB", "None"]),
).map(list)


def insert(rows: list, bad: tuple[int, list] | None) -> list:
    return rows if bad is None else [*rows[: bad[0]], bad[1], *rows[bad[0] :]]


# Mostly valid files (good rows), half of them with one bad row somewhere.
ROWS = st.builds(
    insert, st.lists(GOOD_ROW, max_size=5), st.none() | st.tuples(st.integers(0, 5), BAD_ROW)
)


@FUZZ
@given(st.binary(max_size=400))
def test_csv_random_bytes(work, data):
    check_csv(work / "bytes_test.csv", data)


@FUZZ
@given(
    rows=ROWS,
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    encoding=st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]),
    tail=st.sampled_from([b"", b"", b"", b"\n", b'"', b"\r", b",", b"\x00"]),
)
def test_csv_rows(work, rows, quoting, encoding, tail):
    text = io.StringIO(newline="")
    csv.writer(text, quoting=quoting, lineterminator="\r\n").writerows(rows)
    data = text.getvalue().encode(encoding, "replace") + tail
    check_csv(work / "rows_test.csv", data)


@settings(FUZZ, max_examples=40)
@given(
    n_dev=st.integers(0, 7),
    n_test=st.integers(0, 4),
    few_shots=st.integers(0, 6),
    limit=st.none() | st.integers(1, 5),
    subjects=st.none() | st.lists(st.sampled_from(["algebra", "other", "x_y"]), max_size=2),
    drop=st.sampled_from([None, "dev", "test"]),
)
def test_load_mmlu_tree(work, n_dev, n_test, few_shots, limit, subjects, drop):
    root = work / "mmlu"
    shutil.rmtree(root, ignore_errors=True)
    for split, n in (("dev", n_dev), ("test", n_test)):
        (root / split).mkdir(parents=True)
        if split == drop:
            continue
        lines = "".join(f'"q{i}, ""{split}""",a,b,c,d,{"ABCD"[i % 4]}\r\n' for i in range(n))
        (root / split / f"algebra_{split}.csv").write_text(lines, encoding="utf-8")
    ok = (
        drop is None
        and n_dev >= max(few_shots, 1)
        and n_test >= 1
        and (subjects is None or set(subjects) <= {"algebra"})
        and subjects != []
    )
    try:
        ds = load_mmlu(root, "test", subjects, limit, few_shots)
    except DataError as e:
        assert not ok, f"valid tree refused: {e}"
        assert str(root) in str(e)
        return
    assert ok
    assert len(ds.questions) == min(limit or n_test, n_test)
    assert [q.question for q in ds.questions] == [f'q{i}, "test"' for i in range(len(ds.questions))]
    assert len(ds.dev["algebra"]) == n_dev


# ---- configs ------------------------------------------------------------------------------

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
HINTS = typing.get_type_hints(Config)
OPTIONS = [
    "batch_size",
    "batch_tokens",
    "full_logits",
    "mode",
    "dynamic",
    "warmup_iters",
    "pack_tokens",
    "max_questions",
    "block_size",
    "compile_mode",
    "share_prefix",
]
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-3, 5)
    | st.integers()
    | st.floats()
    | st.integers(10**308, 10**400)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "cpu",
            "cuda:1",
            "fp16",
            "eager",
            "null",
            "2*params",
            "1e999*2",
            "0*3",
            "nan",
            "-inf",
            "1e3",
            "test",
            "a,b",
            "x/y",
            "..\\z",
        ]
    )
)
VALUE = st.recursive(
    SCALAR,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=2),
    max_leaves=5,
)
ENGINES = st.dictionaries(
    st.sampled_from(["eager", "inductor", "shared-prefix", "null", "nope"]) | st.none(),
    st.none()
    | VALUE
    | st.dictionaries(st.sampled_from(OPTIONS) | st.text(max_size=6), VALUE, max_size=3),
    max_size=2,
)
CONFIG = st.dictionaries(
    st.sampled_from(sorted(FIELDS))
    | st.text(max_size=10)
    | st.sampled_from(["limit.x", "engines.eager", "1"]),
    VALUE,
    max_size=4,
).flatmap(lambda d: st.just(d) | ENGINES.map(lambda e: {**d, "engines": e}))


def check_accepted(cfg: Config) -> None:
    """What an accepted config promises the run: usable numbers and folder names."""
    from mmlubench.config.config import parse_flops_per_token

    assert isinstance(cfg, Config)
    for key in ("peak_flops", "mem_sample_interval_s"):
        value = getattr(cfg, key)
        assert value is None or (isinstance(value, float) and 0 < value < math.inf), key
    assert 0 < parse_flops_per_token(cfg.flops_per_token, 10**9) < math.inf
    for name in (cfg.case, cfg.run_name or ""):  # parts of the run folder's name
        assert "/" not in name and "\\" not in name and "\x00" not in name


def check_config(case: Path, overrides: dict | None = None) -> None:
    try:
        cfg = load_config(case, None, overrides)
    except ConfigError as e:
        assert str(case) in str(e) or "command line" in str(e), e
        return
    check_accepted(cfg)


@FUZZ
@given(CONFIG)
@example({"peak_flops": float("nan")})  # once found: NaN, inf and huge integers were accepted
@example({"mem_sample_interval_s": 10**400})
@example({"flops_per_token": "1e999*2"})
@example({"run_name": "a/b"})  # once found: a run folder name with a separator
@example({"limit.x": 1})  # once found: a KeyError from a dotted key
def test_config_mappings(work, mapping):
    path = work / "case.yaml"
    path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert str(path) in str(e), e
        event("refused")
        return
    event("accepted")
    check_accepted(cfg)
    for key, value in mapping.items():  # nothing unknown was silently ignored
        assert key.partition(".")[0] == "engines" or key in FIELDS, key
        if HINTS.get(key) in (int, str, bool) and type(value) is HINTS[key]:
            assert getattr(cfg, key) == value


@FUZZ
@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_config_raw_text(work, text):
    path = work / "raw.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if text else b"")
    check_config(path)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [*FIELDS, "engines.eager.batch_size", "engines", "engines.x", "limit.y", ""]
            )
            | st.text(max_size=8),
            st.text(max_size=10),
        ),
        max_size=3,
    )
)
def test_config_set_flags(work, items):
    case = work / "empty.yaml"
    case.write_text("", encoding="utf-8")
    try:
        overrides = dotted_to_nested(parse_set(f"{k}={v}") for k, v in items)
    except ConfigError as e:
        assert "command line" in str(e)
        return
    check_config(case, overrides)


# ---- model and tokenizer folders ----------------------------------------------------------


def tiny_tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, "A": 3, "B": 4, "C": 5, "D": 6, "Answer": 7, ":": 8}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def mutate(doc, path: list[int], value):
    """Replace (or with value None, delete) the node that `path` leads to in a JSON tree."""
    parent, key, node = None, None, doc
    for step in path:
        if isinstance(node, (dict, list)) and node:
            key = list(node)[step % len(node)] if isinstance(node, dict) else step % len(node)
            parent, node = node, node[key]
        else:
            break
    if parent is None:
        return value
    if value is None and isinstance(parent, dict):
        del parent[key]
    else:
        parent[key] = value
    return doc


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)
FILE = st.one_of(st.none(), st.binary(max_size=40), JSON.map(json.dumps))


SPECIAL = st.dictionaries(
    st.sampled_from(
        ["bos_token", "eos_token", "pad_token", "unk_token", "tokenizer_class", "add_bos_token"]
    ),
    JSON
    | st.sampled_from(["<s>", "A", "nope"])
    | st.sampled_from(["<s>", "A"]).map(lambda c: {"content": c}),
    max_size=3,
).map(json.dumps)


def expected_json_object(content: str | bytes) -> dict | None:
    try:
        doc = json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return doc if isinstance(doc, dict) else None


@settings(FUZZ, max_examples=200)
@given(
    tok=st.one_of(
        st.just(()), st.tuples(st.lists(st.integers(0, 20), min_size=1, max_size=5), JSON), FILE
    ),
    tok_cfg=st.one_of(st.none(), SPECIAL, FILE),
    sp_model=st.none() | st.none() | st.binary(max_size=20),
)
def test_tokenizer_folders(work, tok, tok_cfg, sp_model):
    folder = work / "tok"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    if tok == ():
        tok = tiny_tokenizer_json()
    elif isinstance(tok, tuple):  # a valid tokenizer.json with one node changed or deleted
        path, value = tok
        tok = json.dumps(mutate(json.loads(tiny_tokenizer_json()), path, value))
    for name, content in (
        ("tokenizer.json", tok),
        ("tokenizer_config.json", tok_cfg),
        ("tokenizer.model", sp_model),
    ):
        if content is not None:
            (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        tokenizer = load_tokenizer(folder)
    except ModelError as e:
        assert str(folder) in str(e), e
        if tok is not None and tok_cfg is not None and expected_json_object(tok_cfg) is None:
            assert str(e).startswith(str(folder / "tokenizer_config.json")), e  # the file
        event("refused")
        return
    event("accepted")
    # Loaded: then it works (a broken tokenizer must not load and fail later).
    ids = tokenizer("A B", add_special_tokens=False)["input_ids"]
    assert all(isinstance(i, int) for i in ids)


@settings(FUZZ, max_examples=60)
@example(config="null", weights=False, random_weights=True)  # once found: accepted
@given(
    config=st.none() | st.just("dir") | FILE, weights=st.booleans(), random_weights=st.booleans()
)
def test_model_folders(work, config, weights, random_weights):
    folder = work / "model"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    if config == "dir":
        (folder / "config.json").mkdir()
    elif config is not None:
        (folder / "config.json").write_bytes(
            config if isinstance(config, bytes) else config.encode()
        )
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    try:
        check_model_dir(folder, random_weights)
    except ModelError as e:
        assert str(folder) in str(e), e
        return
    assert isinstance(json.loads((folder / "config.json").read_text()), dict)
    assert weights or random_weights
