"""Golden prompts: mmlubench.prompts.build_prompts against prompts written out by hand.

The expected text is built in this file (and in conftest.py) from the raw CSV cells with literal
f-strings following ../shared/REFERENCE.md; the expected ids come from the raw `tokenizers`
library with one BOS prepended by hand. GOLDEN pins a few literal constants computed once by
tests/tools/make_prompt_goldens.py, which imports nothing from mmlubench.
"""

from __future__ import annotations

import hashlib
import json
import random
import time

import numpy as np
import pytest
from conftest import BOS, MAX_SEQ_LEN, read_rows

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids
from mmlubench.errors import RunError

# Output of tests/tools/make_prompt_goldens.py (ids include the BOS for the reference style).
GOLDEN = {
    ("reference", "abstract_algebra", 0): dict(
        n_tokens=356,
        dropped=0,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[21, 185, 32349, 25],
        ids_sha256="2895f071956f25c08b086ef0560cb936b934614247106d616c41870277d137e1",
        text_sha256="da2912d4e148f4edca160fef6e2223e5a198274da16b2bdca2a16695df8b77de",
    ),
    ("reference", "college_computer_science", 10): dict(
        n_tokens=836,
        dropped=0,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[7508, 185, 32349, 25],
        ids_sha256="bc015915af2fe5ffada5c17be5c0bd3937753b4d348cad9113d8c0177b552691",
        text_sha256="4ba9144a26766d9bce07bd2117de8f10a41a59fc7fc460b08d376bbcf2186064",
    ),
    ("reference", "college_medicine", 6): dict(
        n_tokens=1440,
        dropped=0,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[13, 185, 32349, 25],
        ids_sha256="857873470c9cc2a9b88819826eca784b2fd23d5dd18cb8b7d19ff6aae6b07a31",
        text_sha256="56f8206847d6d5360f0a57c9140137454183b8dbac090e2f47f5315a20d465c5",
    ),
    ("reference", "global_facts", 0): dict(
        n_tokens=441,
        dropped=0,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[4, 185, 32349, 25],
        ids_sha256="e90ea65584600a217d1721bdb6e3e1f4010aabe622c4c2f3d01229aaa63ac850",
        text_sha256="d33f037305b0a7af3491182bd2b566938e08f3095bb6662d8ca3eaee87733107",
    ),
    ("reference", "college_mathematics", 0): dict(
        n_tokens=640,
        dropped=0,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[16, 185, 32349, 25],
        ids_sha256="7ae85524f1528df6116436c29c456e9daf317053ee2a3273a59cdb4bd2402ec4",
        text_sha256="387f73486aed261573cadf56f1e58cb29190547754400dc388486f869449e989",
    ),
    ("reference", "nutrition", 0): dict(
        n_tokens=585,
        dropped=0,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[19956, 185, 32349, 25],
        ids_sha256="c11e9ccbeb144ada3096807a61ef2179a23c3a62eb57ce250c5813313fbad0e5",
        text_sha256="6d85e282587ba14db64a11ec0f0e0d59870a012bd9149a62f4e58e14c6b5f349",
    ),
    ("reference", "high_school_us_history", 0): dict(
        n_tokens=1870,
        dropped=1,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[13, 185, 32349, 25],
        ids_sha256="a0b8fddabd1deee09cbed287dd0b9a8566ac1380f5b147d4f45384b7434b5903",
        text_sha256="b10c84375a43ed832d99cfc47d2b69670f2db580e273884081be0942d3a9c9b1",
    ),
    ("reference", "high_school_european_history", 3): dict(
        n_tokens=2002,
        dropped=2,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[13, 185, 32349, 25],
        ids_sha256="128a2f7582cf6c9d41f61b2a5571f76dbf7e0e717db1029f271d6a0243c40822",
        text_sha256="c5e69713cf6aa06cb1e3a3fabcbf239c8e87b9cf52df6ed79e35cb00d2ebb557",
    ),
    ("reference", "high_school_european_history", 29): dict(
        n_tokens=1613,
        dropped=3,
        first=[100000, 549, 1893, 418, 4606, 4858],
        last=[2001, 185, 32349, 25],
        ids_sha256="383a7a8a0e887d565e5f14407fdf9525a7d717b8f2eefdcd44efbb06286cb3d2",
        text_sha256="f22b75b78fde4d1e3d312b23d319c29406a32541c2b3856ac75d61a09a889b63",
    ),
    ("lm-eval", "abstract_algebra", 0): dict(
        n_tokens=354,
        dropped=0,
        first=[549, 1893, 418, 4606, 4858, 4313],
        last=[21, 185, 32349, 25],
        ids_sha256="1112042debaba70b0338a2ad5e2d7ce727655c53d6b5e47e01dabb5bfb63c10b",
        text_sha256="ff9b00310e214beacf4b324da8c9e6c1de4e49cb422f1bcb1f7037b78f40a2a3",
    ),
    ("lm-eval", "business_ethics", 3): dict(
        n_tokens=561,
        dropped=0,
        first=[549, 1893, 418, 4606, 4858, 4313],
        last=[9086, 185, 32349, 25],
        ids_sha256="b65cc5f80d4ac2a4f72e789ab3b1a5f996cf3b70a95e03e70446b27201732bf9",
        text_sha256="bdf237cbd4b0cd51e3a5382b02e7259a8a736368de8c93a1df00b98ae3ba6db5",
    ),
    ("lm-eval", "nutrition", 0): dict(
        n_tokens=577,
        dropped=0,
        first=[549, 1893, 418, 4606, 4858, 4313],
        last=[19956, 185, 32349, 25],
        ids_sha256="80ff5eed9f0b512a522846608aaede077f07303a1089715ecd7b820cea286be2",
        text_sha256="26b05fb974f3c642b0cefdf7ff5c5f676ab44e8d9ad5561a9709c40fd422fa3b",
    ),
    ("lm-eval", "professional_law", 0): dict(
        n_tokens=1726,
        dropped=0,
        first=[549, 1893, 418, 4606, 4858, 4313],
        last=[13, 185, 32349, 25],
        ids_sha256="7ffeaad9beaa66b6d8fe96c671ba05a0763fa38c8be77760113816e5382d66bf",
        text_sha256="eb17bcd71cfdbe4d85682ee33fcaeaf0f7717409b8b28389bbe85ddbc671d010",
    ),
}
REFERENCE_CASES = [k for k in GOLDEN if k[0] == "reference"]
LM_EVAL_CASES = [k for k in GOLDEN if k[0] == "lm-eval"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ids_sha256(ids) -> str:
    return sha256(",".join(str(int(i)) for i in ids))


def lm_eval_text(subject: str, index: int) -> str:
    """lm-eval's prompt, by hand: one space after "about", questions stripped, choices not."""
    dev, row = read_rows("dev", subject)[:5], read_rows("test", subject)[index]
    shots = [
        f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}" for q, a, b, c, d, ans in dev
    ]
    q, a, b, c, d, _ = row
    shots.append(f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:")
    name = subject.replace("_", " ")
    return (
        f"The following are multiple choice questions (with answers) about {name}.\n\n"
        + "\n\n".join(shots)
    )


def tail_text(subject: str, index: int, style: str) -> str:
    """The question under test as it ends the prompt (after the few-shot prefix)."""
    q, a, b, c, d, _ = read_rows("test", subject)[index]
    if style == "lm-eval":
        q = q.strip()
    return f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


_built: dict = {}


def built_prompt(mmlu_dir, tokenizer, style: str, subject: str, index: int):
    """The prompt mmlubench builds for one real question (cached: some cases share work)."""
    key = (style, subject, index)
    if key not in _built:
        ds = load_mmlu(mmlu_dir, "test", [subject], limit=index + 1)
        prompts = build_prompts(ds, tokenizer, style=style)
        assert [(p.subject, p.index) for p in prompts] == [(subject, i) for i in range(index + 1)]
        _built[key] = prompts[index]
    return _built[key]


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: f"{c[1]}#{c[2]}")
def test_reference_prompt_golden(case, mmlu_dir, tokenizer, reference_prompt):
    _, subject, index = case
    gold = GOLDEN[case]
    text, ids, dropped = reference_prompt(subject, index)
    # The independent construction agrees with the constants pinned once...
    assert sha256(text) == gold["text_sha256"]
    assert ids_sha256(ids) == gold["ids_sha256"]
    assert (len(ids), dropped, ids[:6], ids[-4:]) == (
        gold["n_tokens"],
        gold["dropped"],
        gold["first"],
        gold["last"],
    )
    # ...and mmlubench builds exactly that text and those ids.
    p = built_prompt(mmlu_dir, tokenizer, "reference", subject, index)
    assert p.text == text
    assert p.ids.tolist() == ids
    assert p.dropped == dropped
    assert p.answer == read_rows("test", subject)[index][5]
    assert p.text.endswith("\nAnswer:")
    assert p.ids[0] == BOS and int((p.ids == BOS).sum()) == 1  # exactly one BOS
    assert len(p.ids) <= 2048


def test_reference_header_has_two_spaces(mmlu_dir, tokenizer):
    p = built_prompt(mmlu_dir, tokenizer, "reference", "abstract_algebra", 0)
    assert p.text.startswith(
        "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\n"
        "Answer: B\n\nStatement 1 | If aH is an element of a factor group"
    )
    assert p.text.endswith(
        "\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."
        "\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )


def test_none_cell_stays_none(mmlu_dir, tokenizer):
    """pandas would read this cell as NaN and print "nan" (the reference's defect)."""
    p = built_prompt(mmlu_dir, tokenizer, "reference", "college_computer_science", 10)
    assert (
        "III. An array\nA. None\nB. III only\nC. I and II only\nD. I, II, and III\nAnswer:"
        in p.text
    )
    assert "A. nan" not in p.text


def test_quotes_commas_newlines_kept(mmlu_dir, tokenizer):
    p = built_prompt(mmlu_dir, tokenizer, "reference", "college_medicine", 6)
    q = read_rows("test", "college_medicine")[6][0]
    assert q.startswith('Sauna use, sometimes referred to as "sauna bathing," is')
    assert "\n" in q and '"' in q and "," in q
    assert f"\n\n{q}\nA. " in p.text


def test_crlf_files(mmlu_dir, tokenizer):
    """CRLF line ends are row separators, not text; bare LF inside a cell is kept."""
    raw = (mmlu_dir / "test" / "global_facts_test.csv").read_bytes()
    assert raw.count(b"\r\n") > 90
    p = built_prompt(mmlu_dir, tokenizer, "reference", "global_facts", 0)
    assert "\r" not in p.text
    p = built_prompt(mmlu_dir, tokenizer, "reference", "nutrition", 0)
    assert "\r" not in p.text
    assert (
        "(as of 2020)?\n\nA. Meat\nB. Confectionary\nC. Fruits and vegetables\nD. Potatoes"
        "\nAnswer:" in p.text
    )


def test_crlf_inside_a_quoted_cell_is_kept(mmlu_dir, tokenizer):
    """college_mathematics_dev.csv row 2 has "\\r\\n" inside its quoted question cell."""
    p = built_prompt(mmlu_dir, tokenizer, "reference", "college_mathematics", 0)
    assert (
        "Which of the following statements must be true?\r\nI. All of the entries of A^2 are"
        " nonnegative.\r\nII."
    ) in p.text


@pytest.mark.parametrize(
    "subject,index",
    [
        ("high_school_us_history", 0),
        ("high_school_european_history", 3),
        ("high_school_european_history", 29),
    ],
)
def test_truncation(subject, index, mmlu_dir, tokenizer, raw_tokenizer):
    """Independent re-implementation of the reference loop, step by step."""
    from conftest import reference_text

    dev = read_rows("dev", subject)
    text = reference_text(subject, dev, read_rows("test", subject)[index])
    n_full = 1 + len(raw_tokenizer.encode(text, add_special_tokens=False).ids)
    assert n_full > 2048  # this question really needs truncation
    dropped = 0
    while 1 + len(raw_tokenizer.encode(text, add_special_tokens=False).ids) > 2048:
        head, sep, rest = text.partition("\n\n")  # element 0 is the header sentence
        rest = rest.partition("\n\n")[2]  # element 1 goes
        text = head + sep + rest
        dropped += 1
    p = built_prompt(mmlu_dir, tokenizer, "reference", subject, index)
    assert p.text == text
    assert p.dropped == dropped == GOLDEN[("reference", subject, index)]["dropped"]
    assert len(p.ids) == 1 + len(raw_tokenizer.encode(text, add_special_tokens=False).ids)
    # The header stays, the first `dropped` examples go (in file order), the rest stays.
    assert p.text.startswith(
        "The following are multiple choice questions (with answers) about "
        f"{''.join(' ' + w for w in subject.split('_'))}.\n\n"
    )
    for k, (q, *_) in enumerate(dev):
        shown = f"{q}\nA. " in p.text
        assert shown == (k >= dropped), (k, dropped)


@pytest.mark.parametrize("case", LM_EVAL_CASES, ids=lambda c: f"{c[1]}#{c[2]}")
def test_lm_eval_prompt_golden(case, mmlu_dir, tokenizer, raw_tokenizer):
    _, subject, index = case
    gold = GOLDEN[case]
    text = lm_eval_text(subject, index)
    ids = raw_tokenizer.encode(text, add_special_tokens=False).ids  # no BOS forced
    assert sha256(text) == gold["text_sha256"]
    assert ids_sha256(ids) == gold["ids_sha256"]
    assert (len(ids), ids[:6], ids[-4:]) == (gold["n_tokens"], gold["first"], gold["last"])
    p = built_prompt(mmlu_dir, tokenizer, "lm-eval", subject, index)
    assert p.text == text
    assert p.ids.tolist() == ids
    assert BOS not in p.ids.tolist()
    assert p.text.startswith(
        "The following are multiple choice questions (with answers) about "
        f"{subject.replace('_', ' ')}.\n\n"
    )


def test_lm_eval_strips_questions_not_choices(mmlu_dir, tokenizer):
    p = built_prompt(mmlu_dir, tokenizer, "lm-eval", "business_ethics", 3)
    assert "\n\n______ is an employee's preferred ratio" in p.text
    p = built_prompt(mmlu_dir, tokenizer, "lm-eval", "nutrition", 0)
    assert "(as of 2020)?\nA. Meat" in p.text
    p = built_prompt(mmlu_dir, tokenizer, "lm-eval", "professional_law", 0)
    # dev row 1 of professional_law has a choice with a trailing space, kept as is
    assert "\nC. The privileges and immunities clause of Article IV, Section 2. \nD." in p.text


def test_lm_eval_bos_follows_the_tokenizer(mmlu_dir, tokenizer_dir, raw_tokenizer):
    """lm-eval adds whatever the tokenizer adds by default; reference forces exactly one BOS."""
    from transformers import AutoTokenizer

    with_bos = AutoTokenizer.from_pretrained(str(tokenizer_dir), add_bos_token=True)
    assert with_bos("x")["input_ids"][0] == BOS  # this tokenizer now adds BOS by default
    ds = load_mmlu(mmlu_dir, "test", ["abstract_algebra"], limit=1)
    (lm,) = build_prompts(ds, with_bos, style="lm-eval")
    assert lm.ids.tolist() == [
        BOS,
        *raw_tokenizer.encode(lm_eval_text("abstract_algebra", 0), add_special_tokens=False).ids,
    ]
    (ref,) = build_prompts(ds, with_bos, style="reference")
    assert ids_sha256(ref.ids) == GOLDEN[("reference", "abstract_algebra", 0)]["ids_sha256"]
    assert int((ref.ids == BOS).sum()) == 1


@pytest.mark.parametrize("case", list(GOLDEN), ids=lambda c: f"{c[0]}-{c[1]}#{c[2]}")
def test_prefix_len(case, mmlu_dir, tokenizer, raw_tokenizer):
    """The first prefix_len ids are the independently tokenized few-shot prefix."""
    style, subject, index = case
    p = built_prompt(mmlu_dir, tokenizer, style, subject, index)
    tail = tail_text(subject, index, style)
    assert p.text.endswith(tail)
    prefix = p.text[: len(p.text) - len(tail)]
    assert prefix.endswith("\n\n")
    head = [BOS] if style == "reference" else []
    expected = head + raw_tokenizer.encode(prefix, add_special_tokens=False).ids
    # This tokenizer isolates every "\r" and "\n" before BPE, so the seam never merges.
    assert p.prefix_len == len(expected)
    assert p.ids[: p.prefix_len].tolist() == expected
    assert p.prefix_len < len(p.ids)


class WordTokenizer:
    """A stand-in tokenizer that splits on single spaces only: "B\\n\\nWhat" is one token, so
    a prompt's tokens need not start with its prefix's tokens."""

    bos_token_id = 1

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def _id(self, word: str) -> int:
        return self.vocab.setdefault(word, len(self.vocab) + 10)

    def __call__(self, texts, add_special_tokens=True):
        one = isinstance(texts, str)
        batch = [texts] if one else texts
        out = [[self._id(w) for w in t.split(" ")] if t else [] for t in batch]
        if add_special_tokens:
            out = [[self.bos_token_id, *ids] for ids in out]
        return {"input_ids": out[0] if one else out}


def _dataset(questions):
    from mmlubench.data.mmlu import Dataset, Question

    dev = [
        Question("toy", i, f"Dev question {i}?", ("a", "b", "c", "d"), "A", "dev.csv", i + 1)
        for i in range(5)
    ]
    qs = [
        Question("toy", i, q, ("w", "x", "y", "z"), "B", "test.csv", i + 1)
        for i, q in enumerate(questions)
    ]
    return Dataset("test", ["toy"], qs, {"toy": dev})


def test_prefix_shared_up_to_a_merge_across_the_seam():
    """A tokenizer that merges across the seam still shares the leading ids every prompt has
    in common (all but the prefix's last token here), never an id that differs."""
    tok = WordTokenizer()
    # "...Answer: A\n\nWhat" merges into one word token; " What" (leading space) does not.
    prompts = build_prompts(_dataset(["What now?", " What now?"]), tok, few_shots=5)
    merged, clean = prompts
    prefix = merged.text[: -len("What now?\nA. w\nB. x\nC. y\nD. z\nAnswer:")]
    expected = [1, *tok(prefix, add_special_tokens=False)["input_ids"]]
    assert merged.ids[: len(expected)].tolist() != expected
    assert clean.ids[: len(expected)].tolist() == expected
    assert merged.prefix_len == clean.prefix_len == len(expected) - 1
    assert merged.ids[: merged.prefix_len].tolist() == expected[:-1]
    assert clean.ids[: clean.prefix_len].tolist() == expected[:-1]


def test_question_that_cannot_fit_is_an_error():
    tok = WordTokenizer()
    long_q = " ".join(["word"] * 100)
    with pytest.raises(RunError, match=r"test\.csv:1: question toy#0 does not fit"):
        build_prompts(_dataset([long_q]), tok, few_shots=5, max_seq_len=50)
    # The same question fits once every example is dropped, exactly as the loop says.
    (p,) = build_prompts(_dataset([long_q]), tok, few_shots=5, max_seq_len=120)
    assert p.dropped == 5 and len(p.ids) <= 120
    assert p.text.startswith(
        "The following are multiple choice questions (with answers) about  toy.\n\nword word"
    )


def test_choice_token_ids(tokenizer, raw_tokenizer):
    expected = [raw_tokenizer.encode(" " + x, add_special_tokens=False).ids for x in "ABCD"]
    assert expected == [[338], [380], [339], [414]]
    assert choice_token_ids(tokenizer) == [338, 380, 339, 414]


def test_prompts_cli_full_test_split(
    tmp_path, full_mmlu_dir, tokenizer_dir, raw_tokenizer, reference_prompt
):
    """`mmlubench prompts` over all 14042 test questions, with the real tokenizer and data."""
    from mmlubench.cli.main import main

    out = tmp_path / "prompts.jsonl"
    t0 = time.perf_counter()
    rc = main(
        [
            "prompts",
            "--data-dir",
            str(tokenizer_dir.parent),
            "--weight-dir",
            tokenizer_dir.name,
            "--mmlu-dir",
            str(full_mmlu_dir),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    seconds = time.perf_counter() - t0
    assert rc == 0
    assert seconds < 120, f"prompts for the full test split took {seconds:.0f} s"
    raw = out.read_text(encoding="utf-8")
    lines = raw.split("\n")
    assert lines.pop() == "" and len(lines) == 14042
    # Cells holding U+2028 are escaped: readers splitting on any line break see 14042 too.
    assert len(raw.splitlines()) == 14042
    rows = [json.loads(line) for line in lines]
    for r in rows[:50]:
        assert {"subject", "index", "text", "ids", "answer"} <= set(r)
    # Order: subjects alphabetical, rows in file order.
    subjects = [r["subject"] for r in rows]
    assert subjects == sorted(subjects) and len(set(subjects)) == 57
    assert all(r["ids"][0] == BOS and r["ids"].count(BOS) == 1 for r in rows)
    assert all(len(r["ids"]) <= 2048 for r in rows)
    by_key = {(r["subject"], r["index"]): r for r in rows}
    assert len(by_key) == 14042
    # Spot checks against the independent construction: the golden cases and a sample.
    sample = [(s, i) for (style, s, i) in REFERENCE_CASES]
    sample += random.Random(0).sample(sorted(by_key), 25)
    for s, i in sample:
        text, ids, _ = reference_prompt(s, i, root=full_mmlu_dir)
        r = by_key[(s, i)]
        assert (r["text"], r["ids"], r["answer"]) == (
            text,
            ids,
            read_rows("test", s, full_mmlu_dir)[i][5],
        )
    counts = np.array([len(r["ids"]) for r in rows])
    # REFERENCE.md: ~10 million prompt tokens, median ~540, a few hundred truncated prompts.
    assert 9.5e6 < counts.sum() < 10.5e6
    assert 500 < np.median(counts) < 580
    assert sum(1 for r in rows if r.get("dropped")) == 376


def test_reference_style_without_a_bos_token(mmlu_dir, tokenizer_dir, raw_tokenizer):
    """A tokenizer that defines no BOS (Qwen's) gets reference prompts without one: the ids are
    the text's own, nothing is refused, and truncation counts what the model sees."""
    from mmlubench.data.prompts import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    tok.bos_token = None
    assert tok.bos_token_id is None
    dataset = load_mmlu(
        mmlu_dir, "test", ["abstract_algebra", "high_school_european_history"], limit=2
    )
    for p in build_prompts(dataset, tok):
        assert p.ids.tolist() == raw_tokenizer.encode(p.text, add_special_tokens=False).ids
        assert BOS not in p.ids.tolist() and len(p.ids) <= MAX_SEQ_LEN
