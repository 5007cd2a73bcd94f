"""Config: case YAML < vendor YAML < command line, and errors that name the key and its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlubench.cli.main import main
from mmlubench.config.config import DEFAULT_CASE, load_config
from mmlubench.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CASE = """\
case: layered
few_shots: 3
limit: 7
device: cpu
precision: fp32
engines:
  eager:
    method: padded
    batch_size: 4
    full_logits: true
  inductor:
    warmup_iters: 2
    mode: null
"""
VENDOR = """\
limit: 9
precision: bf16
engines:
  eager:
    batch_size: 2
"""


def test_layering(tmp_path):
    case, vendor = write(tmp_path / "case.yaml", CASE), write(tmp_path / "vendor.yaml", VENDOR)
    cfg = load_config(case, vendor, {"limit": 11, "engines": {"inductor": {"warmup_iters": 5}}})
    assert cfg.case == "layered"
    assert cfg.few_shots == 3  # case only
    assert cfg.precision == "bf16"  # vendor over case
    assert cfg.limit == 11  # command line over vendor over case
    assert cfg.engines["eager"] == {
        "method": "padded",
        "batch_size": 2,
        "full_logits": True,
    }  # merged key by key
    assert cfg.engines["inductor"] == {"warmup_iters": 5, "mode": None}
    assert cfg.max_seq_len == 2048  # unset: dataclass defaults
    assert cfg.engine == "eager"  # unset: auto, on the case's CPU
    # Without the overrides and the vendor, each layer shows through.
    assert load_config(case, vendor).limit == 9
    assert load_config(case).limit == 7
    assert load_config(case).precision == "fp32"


def test_packaged_case_is_the_reference(tmp_path):
    cfg = load_config()
    assert (cfg.case, cfg.split, cfg.few_shots, cfg.max_seq_len) == (
        "deepseek_7b_mmlu",
        "test",
        5,
        2048,
    )
    assert (cfg.prompt_style, cfg.scoring, cfg.precision) == ("reference", "reference", "fp16")
    # The fast exact engine is the default infer engine; inductor is the reference's method.
    assert (cfg.engine, cfg.val_engine, cfg.validation) == ("shared-prefix", "eager", True)
    assert cfg.flops_per_token == "2*7e9"
    assert cfg.weight_path == Path(".") / "deepseek_7b_hf"
    assert cfg.mmlu_path == Path(".") / "mmlu_dataset/data"
    ind = cfg.engines["inductor"]
    assert (
        ind["mode"],
        ind["dynamic"],
        ind["warmup_iters"],
        ind["warmup_times"],
        ind["batch_size"],
        ind["full_logits"],
    ) == ("reduce-overhead", True, 10, 10, 1, True)


def test_vendor_by_name():
    cfg = load_config(None, "nvidia", {"engines": {"inductor": {"mode": "max-autotune"}}})
    assert cfg.device == "cuda"
    assert cfg.engines["inductor"]["mode"] == "max-autotune"
    assert cfg.engines["inductor"]["warmup_iters"] == 10


def test_absolute_dirs_win(tmp_path):
    cfg = load_config(None, None, {"data_dir": "/data", "weight_dir": str(tmp_path)})
    assert cfg.weight_path == tmp_path
    assert cfg.mmlu_path == Path("/data/mmlu_dataset/data")


# (YAML text, text the error must contain besides the source)
BAD = [
    ("few_shot: 5\n", "unknown key 'few_shot'"),
    ("few_shots: five\n", "key 'few_shots': expected an integer, got 'five'"),
    ("validation: 3\n", "key 'validation': expected true or false, got 3"),
    ("limit: 2.5\n", "key 'limit'"),
    ("subjects: 3\n", "key 'subjects'"),
    ("precision: fp4\n", "key 'precision'"),
    ("few_shots: -1\n", "key 'few_shots': must be >= 0"),
    ("limit: 0\n", "key 'limit': must be >= 1"),
    ("max_seq_len: 4\n", "key 'max_seq_len'"),
    ("device: tpu\n", "key 'device'"),
    ("peak_flops: -1\n", "key 'peak_flops'"),
    ("peak_flops: lots\n", "key 'peak_flops'"),
    ("flops_per_token: abc\n", "key 'flops_per_token'"),
    ("flops_per_token: '-2*7e9'\n", "key 'flops_per_token'"),
    ("engine: tensorrt\n", "key 'engine': unknown engine 'tensorrt'"),
    ("val_engine: nope\n", "key 'val_engine': unknown engine 'nope'"),
    ("engines:\n  eager:\n    foo: 1\n", "unknown engines.eager option 'foo'"),
    (
        "engines:\n  eager:\n    batch_size: big\n",
        "engines.eager option 'batch_size': expected an integer, got 'big'",
    ),
    ("engines:\n  eager:\n    batch_size: 0\n", "engines.eager: batch_size must be >= 1"),
    ("engines:\n  inductor:\n    mode: fastest\n", "engines.inductor: mode must be one of"),
    ("engines:\n  trt:\n    x: 1\n", "key 'engines.trt': unknown engine"),
    ("engines:\n  eager: 3\n", "key 'engines.eager': expected a mapping"),
    # A section of an engine that is not chosen is checked all the same.
    ("engines:\n  null:\n    batch_sise: 2\n", "unknown engines.null option 'batch_sise'"),
]


@pytest.mark.parametrize("text,words", BAD, ids=[b[0].strip() for b in BAD])
def test_bad_value_in_a_file(tmp_path, text, words):
    path = write(tmp_path / "case.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("text,words", BAD, ids=[b[0].strip() for b in BAD])
def test_bad_value_in_the_vendor_file(tmp_path, text, words):
    """The vendor layer is named, not the case file under it."""
    vendor = write(tmp_path / "vendor.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(None, vendor)
    assert str(e.value).startswith(f"{vendor}: ") or (
        # option checks that see several options name every layer that set one
        f"{vendor}" in str(e.value).split(": ")[0]
    ), str(e.value)
    assert words in str(e.value)


def test_engine_option_errors_name_their_layer(tmp_path):
    """One option builder (engines.engine_options): an option's error names the layer that set
    that option, not the other layers of the same engine section; an error about options that
    do not go together names every layer that set an option of that engine."""
    case = write(tmp_path / "case.yaml", "engines:\n  eager:\n    method: prefix-cache\n")
    vendor = write(tmp_path / "vendor.yaml", "engines:\n  eager:\n    batch_size: 2\n")
    with pytest.raises(ConfigError, match=r"^command line: engines\.eager option 'batch_tokens'"):
        load_config(case, vendor, {"engines": {"eager": {"batch_tokens": "many"}}})
    with pytest.raises(ConfigError) as e:
        load_config(case, vendor, {"engines": {"eager": {"full_logits": True}}})
    sources, _, message = str(e.value).partition(": engines.eager: ")
    assert sorted(sources.split(", ")) == sorted([str(case), str(vendor), "command line"])
    assert message.startswith("full_logits needs method padded")
    from mmlubench.engines import engine_options

    opts = engine_options("eager", {"batch_size": 3}, {"batch_size": "x.yaml"})
    assert opts.batch_size == 3
    with pytest.raises(ConfigError, match=r"^x\.yaml: engines\.eager option 'batch_size'"):
        engine_options("eager", {"batch_size": "3"}, {"batch_size": "x.yaml"})
    with pytest.raises(ConfigError, match=r"^command line: unknown engines\.eager option 'b'"):
        engine_options("eager", {"b": 1})


@pytest.mark.parametrize(
    "item,words",
    [
        ("few_shots=five", "key 'few_shots': expected an integer"),
        ("limit=0", "key 'limit': must be >= 1"),
        ("validation=3", "key 'validation'"),
        ("device=tpu", "key 'device'"),
        ("flops_per_token=abc", "key 'flops_per_token'"),
        ("engine=warp", "unknown engine 'warp'"),
        ("engines.eager.foo=1", "unknown engines.eager option 'foo'"),
        ("engines.eager.batch_size=big", "engines.eager option 'batch_size'"),
        ("colour=blue", "unknown key 'colour'"),
        ("few_shots", "--set expects key=value"),
        ("limit=[1,", "--set limit: value is not valid YAML"),
    ],
)
def test_bad_value_on_the_command_line(tmp_path, capsys, item, words):
    rc = main(["prompts", "--set", item, "--out", str(tmp_path / "p.jsonl"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("mmlubench: error: command line: "), err
    assert words in err
    assert "Traceback" not in err
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize(
    "text,words",
    [
        ("a: [1,\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping of keys to values, got list"),
        ("just text\n", "expected a mapping of keys to values, got str"),
    ],
)
def test_unreadable_file(tmp_path, text, words):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:") and words in str(e.value)  # and the line


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"case: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.yaml'}: config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'v.yaml'}: config file not found"):
        load_config(None, tmp_path / "v.yaml")


def test_empty_file_is_no_change(tmp_path):
    assert load_config(write(tmp_path / "empty.yaml", "")).few_shots == 5
    assert load_config(DEFAULT_CASE, write(tmp_path / "v.yaml", "# nothing\n")).few_shots == 5


def tiny_mmlu(root: Path, rows: int = 6) -> Path:
    for split, n in (("dev", 5), ("test", rows)):
        (root / split).mkdir(parents=True)
        (root / split / f"toy_{split}.csv").write_text(
            "".join(f"Question {i}?,a,b,c,d,A\n" for i in range(n)), encoding="utf-8"
        )
    return root


def test_layering_through_the_command_line(tmp_path, tokenizer_dir):
    """case < vendor < --set/flags, seen in what `mmlubench prompts` writes."""
    mmlu = tiny_mmlu(tmp_path / "mmlu")
    case = write(
        tmp_path / "case.yaml",
        f"mmlu_dir: {mmlu}\nweight_dir: {tokenizer_dir}\nlimit: 1\nfew_shots: 1\n",
    )
    vendor = write(tmp_path / "vendor.yaml", "limit: 2\nfew_shots: 2\nprompt_style: lm-eval\n")
    out = tmp_path / "p.jsonl"

    def run(*extra: str) -> list[dict]:
        assert (
            main(["prompts", "--config", str(case), *extra, "--out", str(out), "--no-progress"])
            == 0
        )
        return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]

    def shots(row: dict) -> int:
        return row["text"].count("\nAnswer: A\n\n")

    rows = run()
    assert len(rows) == 1 and shots(rows[0]) == 1 and rows[0]["ids"][0] == 100000
    rows = run("--vendor", str(vendor))
    assert len(rows) == 2 and shots(rows[0]) == 2 and rows[0]["ids"][0] != 100000
    rows = run("--vendor", str(vendor), "--set", "limit=4", "--set", "few_shots=3")
    assert len(rows) == 4 and shots(rows[0]) == 3
    rows = run("--vendor", str(vendor), "--limit", "5")
    assert len(rows) == 5
    rows = run("--vendor", str(vendor), "--prompt-style", "reference")
    assert rows[0]["text"].startswith(
        "The following are multiple choice questions (with answers) about  toy."
    )


def test_unquoted_null_engine_section(tmp_path):
    """YAML reads the key `null:` as None; it still means the engine named "null"."""
    path = write(tmp_path / "c.yaml", "engine: 'null'\nengines:\n  null:\n    batch_size: 2\n")
    cfg = load_config(path)
    assert cfg.engine == "null"
    assert cfg.engines["null"] == {"batch_size": 2}


# ---- duplicate keys, one-line YAML errors, seed and flops checked up front --------


@pytest.mark.parametrize(
    "text,line,key,first",
    [
        ("case: a\nlimit: 1\nfew_shots: 5\nlimit: 2\n", 4, "limit", 2),
        ("engines:\n  eager:\n    batch_size: 2\n    batch_size: 4\n", 4, "batch_size", 3),
        ("engines:\n  eager: {batch_size: 2}\n  eager: {batch_size: 3}\n", 3, "eager", 2),
    ],
)
def test_yaml_key_given_twice(tmp_path, text, line, key, first):
    case = write(tmp_path / "case.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(case)
    assert str(e.value) == (
        f"{case}:{line}: key {key!r} given twice (first on line {first}); remove one"
    )


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    """`<<: *anchor` followed by one of its keys is YAML's override, not a duplicate."""
    case = write(tmp_path / "case.yaml", "x: &base {batch_size: 2, full_logits: true}\n")
    text = "engines:\n  eager:\n    <<: {batch_size: 2, batch_tokens: 64}\n    batch_size: 4\n"
    assert load_config(write(case, text)).engines["eager"] == {"batch_size": 4, "batch_tokens": 64}


def test_yaml_syntax_error_is_one_line_with_the_line(tmp_path):
    case = write(tmp_path / "case.yaml", "case: a\nlimit: [1, 2\nfew_shots: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(case)
    assert str(e.value).startswith(f"{case}:") and "not valid YAML" in str(e.value)
    assert "\n" not in str(e.value)


def test_config_folder_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, expected a YAML config file"):
        load_config(tmp_path)


def test_packaged_case_by_name():
    assert load_config("demo").case == "demo"


@pytest.mark.parametrize("seed", [-1, 2**64, 99999999999999999999999])
def test_seed_out_of_range(seed):
    with pytest.raises(ConfigError, match=r"command line: key 'seed': must be between 0 and "):
        load_config(None, None, {"seed": seed})


def test_seed_range_is_what_torch_accepts():
    import torch

    for seed in (0, 2**64 - 1):
        assert load_config(None, None, {"seed": seed}).seed == seed
        torch.manual_seed(seed)


@pytest.mark.parametrize(
    "expr",
    ["params*0", "0*params", "params*1e-400", "params*params*params*1e300", "1e300*params*params"],
)
def test_degenerate_flops_expressions_refused_up_front(expr):
    with pytest.raises(ConfigError, match="command line: key 'flops_per_token'"):
        load_config(None, None, {"flops_per_token": expr})


@pytest.mark.parametrize("expr", ["2*params", "2*7e9", "params", "6*params"])
def test_sound_flops_expressions_accepted(expr):
    assert load_config(None, None, {"flops_per_token": expr}).flops_per_token == expr


@pytest.mark.parametrize(
    "device,engine", [("cpu", "eager"), ("cuda", "shared-prefix"), ("cuda:1", "shared-prefix")]
)
def test_auto_engine_follows_the_device(device, engine):
    assert load_config(None, None, {"device": device}).engine == engine
    # An engine given by name always wins, on any device.
    assert load_config(None, None, {"device": device, "engine": "null"}).engine == "null"
    assert load_config(None, None, {"device": device, "engine": "shared-prefix"}).engine == (
        "shared-prefix"
    )
