"""The 13 attacks of the README's table that once ended badly, end to end through the command
line.

Each must end with exit status 2, exactly one `mmlubench: error:` line on stderr (nothing else
there: no traceback, no LOAD REPORT table, no warning), and no result.json. A good run over the
same inputs is checked first, so every attack fails for the reason it claims and not for another.
Items 7, 8, 9 and 12 have tests of their own that go further (the 20-run abort loop, stale
locks); here each is checked once with the same contract.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmlubench.cli.main import main

SUBJECT = "abstract_algebra"
REPO = "deepseek-ai/deepseek-llm-7b-base"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model, tiny_model_dir, mmlu_dir) -> dict[str, Path]:
    """A real checkpoint of the tiny Llama (weights, config, real tokenizer) and a one-subject
    copy of the real MMLU files."""
    root = tmp_path_factory.mktemp("attacks")
    model = root / "model"
    tiny_model.save_pretrained(str(model))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, model / name)
    mmlu = root / "mmlu"
    for split in ("dev", "test"):
        (mmlu / split).mkdir(parents=True)
        shutil.copy(mmlu_dir / split / f"{SUBJECT}_{split}.csv", mmlu / split)
    return {"model": model, "mmlu": mmlu}


def copy_world(world: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    model, mmlu = tmp_path / "model", tmp_path / "mmlu"
    shutil.copytree(world["model"], model)
    shutil.copytree(world["mmlu"], mmlu)
    return model, mmlu


def run_args(model: Path, mmlu: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--weight-dir",
        str(model),
        "--mmlu-dir",
        str(mmlu),
        "--subjects",
        SUBJECT,
        "--limit",
        "2",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--engine",
        "eager",
        "--no-validation",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


def assert_one_error(rc: int, err: str, out: Path | None, *words: str) -> str:
    """Exit 2, one `mmlubench: error:` line and nothing else on stderr, no result.json."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("mmlubench: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    if out is not None:
        assert not list(out.rglob("result.json"))
    return lines[0]


def attack(capfd, argv: list[str], out: Path | None, *words: str) -> str:
    capfd.readouterr()
    rc = main(argv)
    return assert_one_error(rc, capfd.readouterr().err, out, *words)


def test_the_inputs_are_good(world, tmp_path, capfd):
    """The baseline the attacks spoil: the same folders give a finished run."""
    model, mmlu = copy_world(world, tmp_path)
    assert main(run_args(model, mmlu, tmp_path / "out")) == 0
    (result,) = (tmp_path / "out").rglob("result.json")
    assert json.loads(result.read_text())["model"]["random_weights"] is False


# 1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["--data", "--weights"])
def test_01_download_without_network(tmp_path, what):
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),
    }
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "mmlubench", "download", what, "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    repo = "Stevross/mmlu" if what == "--data" else REPO
    line = assert_one_error(done.returncode, done.stderr, None, repo, "127.0.0.1:9", "HF_ENDPOINT")
    assert "--data-tar" in line if what == "--data" else "--weight-dir" in line
    assert not data.exists()  # nothing half-made


# 2 ----------------------------------------------------------------------------------------


def test_02_unreadable_csv(world, tmp_path, capfd):
    """As root, permissions do not stop a read; /proc/self/mem is a regular file whose read
    fails with an I/O error, which exercises the same path (an OSError while reading).
    test_data.py checks the "Permission denied" wording with a patched read."""
    model, mmlu = copy_world(world, tmp_path)
    csv = mmlu / "test" / f"{SUBJECT}_test.csv"
    csv.unlink()
    csv.symlink_to("/proc/self/mem")
    attack(capfd, run_args(model, mmlu, tmp_path / "out"), tmp_path / "out", f"{csv}: cannot read")


# 3 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", ["half", "100"])
def test_03_truncated_safetensors(world, tmp_path, capfd, keep):
    model, mmlu = copy_world(world, tmp_path)
    file = model / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if keep == "half" else data[:100])
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        f"{file}: not a complete safetensors file",
    )


# 4 ----------------------------------------------------------------------------------------


def rewrite_weights(model: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    save_file(change(tensors), model / "model.safetensors", metadata={"format": "pt"})


def test_04_missing_tensors(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    rewrite_weights(
        model, lambda t: {k: v for k, v in t.items() if not k.startswith("model.layers.1.")}
    )
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        "9 tensor(s) missing",
        "model.layers.1.",
    )


def test_04_unexpected_tensors(world, tmp_path, capfd):
    import torch

    model, mmlu = copy_world(world, tmp_path)
    rewrite_weights(model, lambda t: {**t, "model.layers.9.extra.weight": torch.zeros(3)})
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        "1 unexpected: model.layers.9.extra.weight",
    )


# 5 ----------------------------------------------------------------------------------------


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_05_malicious_pickle(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    with open(model / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model.embed_tokens.weight": Payload(marker)}, f)
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        f"{model / 'pytorch_model.bin'}: refused",
    )
    assert not marker.exists()  # not executed


# 6 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr", ["params*0", "params*1e-400", "params*params*params*1e300", "2*params*"]
)
def test_06_degenerate_flops_expression(world, tmp_path, capfd, expr):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    attack(capfd, run_args(model, mmlu, out, "--flops-per-token", expr), out, "'flops_per_token'")
    assert not out.exists()  # refused before any work: no run folder


# 7 ----------------------------------------------------------------------------------------


def test_07_two_resumes_of_one_folder(world, tmp_path):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    args = run_args(model, mmlu, out, "--limit", "30", "--set", "engines.eager.batch_size=1")
    env = {**os.environ, "MMLUBENCH_INJECT_KILL": "infer:0"}
    first = subprocess.run(
        [sys.executable, "-m", "mmlubench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == -9
    (run,) = out.iterdir()
    cmd = [sys.executable, "-m", "mmlubench", "run", "--resume", str(run), "--no-progress"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in done) == [0, 2], done
    err = next(e for rc, e in done if rc == 2)
    # R1 names the holder's pid when it can read it; the lock file and "in use" always.
    assert_one_error(2, err, None, "this run folder is in use by", "run.lock")


# 8 ----------------------------------------------------------------------------------------


def test_08_output_dir_is_a_file(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "a_file"
    out.write_text("not a folder\n")
    attack(capfd, run_args(model, mmlu, out), None, str(out))
    assert out.read_text() == "not a folder\n"


# 9 ----------------------------------------------------------------------------------------


def test_09_report_on_a_broken_result(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    assert main(run_args(model, mmlu, tmp_path / "out")) == 0
    (result,) = (tmp_path / "out").rglob("result.json")
    doc = json.loads(result.read_text())
    del doc["metrics"]
    result.write_text(json.dumps(doc))
    attack(capfd, ["report", str(result.parent)], None, str(result))


# 10 ---------------------------------------------------------------------------------------


def test_10_model_that_needs_remote_code(world, tmp_path, capfd, monkeypatch):
    model, mmlu = copy_world(world, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(
        model_type="evil_llama",
        auto_map={"AutoConfig": "conf.EvilConfig", "AutoModelForCausalLM": "mod.EvilModel"},
    )
    (model / "config.json").write_text(json.dumps(cfg))
    marker = tmp_path / "PWNED"
    (model / "conf.py").write_text(f"open({str(marker)!r}, 'w').close()\n")

    def no_prompt(*args):
        raise AssertionError("asked the user whether to run the folder's code")

    monkeypatch.setattr("builtins.input", no_prompt)
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        f"{model / 'config.json'}",
        "trust_remote_code=False",
    )
    assert not marker.exists()


# 11 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1"])
def test_11_seed_out_of_range(world, tmp_path, capfd, seed):
    model, mmlu = copy_world(world, tmp_path)
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out", "--random-weights", "--seed", seed),
        tmp_path / "out",
        "command line: key 'seed'",
    )


# 12 ---------------------------------------------------------------------------------------


def test_12_failing_rank_under_torchrun_exits_2(world, tmp_path):
    """One launch of two ranks where rank 1 lacks the data (the 20-run loop against the rare
    abort at gloo's shutdown is in test_distributed.py; this is the same contract, once)."""
    model, mmlu = copy_world(world, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        args = run_args(model, mmlu if rank == 0 else tmp_path / "missing", tmp_path / "out")
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mmlubench", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert_one_error(p.returncode, err, tmp_path / "out", "rank 1")


# 13 ---------------------------------------------------------------------------------------


def test_13_yaml_key_given_twice(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    case = tmp_path / "case.yaml"
    case.write_text("case: twice\nlimit: 1\nfew_shots: 5\nlimit: 2\n", encoding="utf-8")
    argv = ["run", "--config", str(case), *run_args(model, mmlu, tmp_path / "out")[1:]]
    attack(capfd, argv, tmp_path / "out", f"{case}:4: key 'limit' given twice (first on line 2)")


def test_13_folder_where_a_csv_should_be(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    csv = mmlu / "test" / f"{SUBJECT}_test.csv"
    csv.unlink()
    csv.mkdir()
    line = attack(
        capfd, run_args(model, mmlu, tmp_path / "out"), tmp_path / "out", f"{csv}: is a folder"
    )
    assert "download" not in line


def test_13_shape_mismatch_is_one_line(world, tmp_path, capfd):
    import torch

    model, mmlu = copy_world(world, tmp_path)
    rewrite_weights(
        model, lambda t: {**t, "model.layers.0.mlp.up_proj.weight": torch.zeros(65, 32)}
    )
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        "model.layers.0.mlp.up_proj.weight [65, 32] in the checkpoint, [64, 32] in the model",
    )


def test_13_argparse_errors_are_usage_and_exit_2(capfd):
    """argparse's own format, as the README's table says: usage, then `mmlubench run: error:`."""
    with pytest.raises(SystemExit) as e:
        main(["run", "--precision", "fp4"])
    assert e.value.code == 2
    err = capfd.readouterr().err
    assert (
        err.startswith("usage: mmlubench run")
        and "mmlubench run: error: argument --precision: invalid choice: 'fp4'" in err
    )


# ===========================================================================================
# The second hunt: code run from a config, files written through planted links, silently mixed
# results, tracebacks on bad input. Same contract, and nothing outside the run folder changes.
# ===========================================================================================

PRECIOUS = "precious, outside every run folder\n"


def victim(tmp_path: Path) -> Path:
    """A file outside every run folder that no attack may change."""
    path = tmp_path / "victim.txt"
    path.write_text(PRECIOUS)
    return path


def run_cli(*argv: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m mmlubench ARGV` in a fresh process (this checkout's copy: PYTHONPATH)."""
    return subprocess.run(
        [sys.executable, "-m", "mmlubench", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def interrupted(world, tmp_path_factory) -> Path:
    """A run of 6 questions killed as its infer batch 3 began (3 batches recorded)."""
    root = tmp_path_factory.mktemp("interrupted")
    args = run_args(
        world["model"],
        world["mmlu"],
        root / "out",
        "--limit",
        "6",
        "--set",
        "engines.eager.batch_size=1",
    )
    done = run_cli(*args, env={"MMLUBENCH_INJECT_KILL": "infer:2"})
    assert done.returncode == -9, done.stderr
    (run,) = (root / "out").iterdir()
    return run


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory) -> Path:
    """A finished run of 2 questions."""
    root = tmp_path_factory.mktemp("finished")
    assert main(run_args(world["model"], world["mmlu"], root / "out")) == 0
    (run,) = (root / "out").iterdir()
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / run.name
    shutil.copytree(run, dest)
    return dest


def resume(run: Path, *extra: str) -> list[str]:
    return ["run", "--resume", str(run), "--no-progress", *extra]


# 2.1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["vendor", "resume"])
def test_2_01_config_never_names_a_program(world, interrupted, tmp_path, capfd, where):
    """Inductor's `cpp.cxx` is the C++ compiler it runs: a config giving it is refused before
    any work, and the planted program never runs."""
    marker = tmp_path / "RAN"
    script = tmp_path / "cxx.sh"
    script.write_text(f'#!/bin/sh\ntouch {marker}\nexec g++ "$@"\n')
    script.chmod(0o755)
    options = {"compile_options": {"cpp.cxx": [str(script)]}}
    if where == "vendor":
        model, mmlu = copy_world(world, tmp_path)
        vendor = tmp_path / "vendor.yaml"
        vendor.write_text(
            json.dumps({"vendor": "cpu", "device": "cpu", "engines": {"shared-prefix": options}})
        )
        out = tmp_path / "out"
        argv = [*run_args(model, mmlu, out, "--vendor", str(vendor)), "--engine", "shared-prefix"]
    else:
        import yaml

        run = copy_run(interrupted, tmp_path)
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["engines"]["eager"] = {**cfg["engines"].get("eager", {})}
        cfg["engines"]["shared-prefix"] = {**cfg["engines"].get("shared-prefix", {}), **options}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        out, argv = run, resume(run, "--engine", "shared-prefix")
    attack(capfd, argv, out, "'cpp.cxx'", "refused")
    assert not marker.exists()


@pytest.mark.parametrize(
    "key", ["cuda.cutlass_dir", "trace.debug_dir", "bogus_option", "post_grad_custom_pass"]
)
def test_2_01_only_known_plain_inductor_options(world, tmp_path, capfd, key):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    attack(
        capfd,
        run_args(
            model,
            mmlu,
            out,
            "--engine",
            "shared-prefix",
            "--set",
            f"engines.shared-prefix.compile_options={{{key}: x}}",
        ),
        out,
        f"'{key}'",
    )
    assert not out.exists()  # before any work


def test_2_01_a_plain_inductor_option_is_accepted():
    from mmlubench.engines.inductor_options import check_compile_options

    check_compile_options({"prologue_fusion": False, "max_autotune": True}, "default")
    with pytest.raises(ValueError, match="'prologue_fusion' takes a bool"):
        check_compile_options({"prologue_fusion": [1]})


# 2.2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "run.lock",
        "progress.jsonl",
        "result.json.tmp",
        "predictions.jsonl.tmp",
        "predictions.jsonl",
        "config.yaml.tmp",
        "fingerprint.json.tmp",
    ],
)
def test_2_02_resume_never_writes_through_a_link(interrupted, tmp_path, capfd, name):
    run = copy_run(interrupted, tmp_path)
    target = victim(tmp_path)
    if name == "progress.jsonl":  # the link's target holds the real log, so it reads well
        target.write_text((run / name).read_text())
        (run / name).unlink()
    before = target.read_text()
    (run / name).unlink(missing_ok=True)  # a killed run leaves its run.lock behind
    (run / name).symlink_to(target)
    attack(capfd, resume(run), run, f"{run / name}: refused: a link")
    assert target.read_text() == before


def test_2_02_report_html_never_written_through_a_link(finished, tmp_path, capfd):
    run = copy_run(finished, tmp_path)
    target = victim(tmp_path)
    (run / "report.html").symlink_to(target)
    attack(capfd, ["report", str(run), "--html"], None, "report.html: refused: a link")
    assert target.read_text() == PRECIOUS


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_2_02_outputs_never_written_through_links(world, finished, tmp_path, capfd, kind):
    """prompts --out writes in place: a hard link to a file elsewhere is refused too; the
    HTML and PNG are written atomically (a hard link's name is replaced, its target kept)."""
    model, mmlu = copy_world(world, tmp_path)
    target = victim(tmp_path)
    for name, argv in [
        (
            "p.jsonl",
            [
                "prompts",
                "--weight-dir",
                str(model),
                "--mmlu-dir",
                str(mmlu),
                "--subjects",
                SUBJECT,
                "--limit",
                "1",
                "--no-progress",
                "--out",
            ],
        ),
        ("c.html", ["compare", str(finished), "--html"]),
        ("c.png", ["compare", str(finished), "--png"]),
    ]:
        link = tmp_path / name
        link.symlink_to(target) if kind == "symlink" else os.link(target, link)
        if kind == "symlink" or name == "p.jsonl":
            attack(capfd, [*argv, str(link)], None, f"{link}: refused")
        else:
            assert main([*argv, str(link)]) == 0
        assert target.read_text() == PRECIOUS


# 2.3 -------------------------------------------------------------------------------------


def test_2_03_resume_with_other_weights_of_the_same_shape(interrupted, tmp_path, capfd):
    """A second checkpoint with the same config.json and the same file sizes (every weight
    negated: the same safetensors header too) is another model: the resume is refused."""
    run = copy_run(interrupted, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(interrupted_model(run), other)
    rewrite_weights(other, lambda t: {k: -v for k, v in t.items()})
    size = (interrupted_model(run) / "model.safetensors").stat().st_size
    assert (other / "model.safetensors").stat().st_size == size
    attack(
        capfd,
        resume(run, "--weight-dir", str(other)),
        run,
        "model differs",
        "safetensors header",
        "evenly spaced",
    )


def interrupted_model(run: Path) -> Path:
    import yaml

    return Path(yaml.safe_load((run / "config.yaml").read_text())["weight_dir"])


# 2.4 -------------------------------------------------------------------------------------

PASS_END = {
    "session": 0,
    "kind": "pass_end",
    "pass": "infer",
    "whole_time_s": 1.0,
    "t_s": 1.0,
    "e2e_s": 2.0,
}


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("batch", "top_ids", [5000000]),
        ("batch", "top_ids", [10**30]),
        ("batch", "t_s", "abc"),
        ("batch", "e2e_s", "abc"),
        ("session", "session", "zero"),
        ("pass_start", "compile_time_s", "abc"),
        ("pass_end", "whole_time_s", None),
        ("batch", "choice_logits", [[1.0, 2.0]]),
        ("batch", "core_time_s", -1.0),
        ("batch", "work", {"tokens": 1}),
        ("batch", "rows", [99]),
    ],
)
def test_2_04_edited_progress_log(interrupted, tmp_path, capfd, kind, field, value):
    """Every field of every record is checked when the log is read, before any work."""
    run = copy_run(interrupted, tmp_path)
    log = run / "progress.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    if kind == "pass_end":
        records.append(dict(PASS_END))
    n = next(i for i, r in enumerate(records) if r["kind"] == kind)
    records[n][field] = value
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = log.read_text()
    line = attack(
        capfd, resume(run), run, f"{log}:{n + 1}: corrupt progress record", f"field {field!r}"
    )
    assert len(line) < 400
    assert log.read_text() == before  # no session began


# 2.5 -------------------------------------------------------------------------------------


def test_2_05_bos_token_not_in_the_vocabulary(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    cfg_file = model / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["bos_token"] = "<never-seen-bos>"
    cfg_file.write_text(json.dumps(cfg))
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out"),
        tmp_path / "out",
        f"{cfg_file}: bos_token '<never-seen-bos>' is not a token of",
    )


# 2.6 -------------------------------------------------------------------------------------


def test_2_06_peak_below_any_device(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    vendor = tmp_path / "vendor.yaml"
    vendor.write_text("vendor: cpu\ndevice: cpu\npeak_flops: {fp32: 1}\n")
    out = tmp_path / "out"
    attack(
        capfd,
        run_args(model, mmlu, out, "--vendor", str(vendor)),
        out,
        f"{vendor}",
        "'peak_flops'",
        "at least 1e11",
    )
    assert not out.exists()


def test_2_06_mfu_above_100_percent(world, tmp_path, capfd, monkeypatch):
    """mfu_computed counts the FLOPs that ran: above 100% the peak is wrong, an error, and the
    answers are kept for a resume (here the count is made impossible on purpose)."""
    from mmlubench.results import pass_sections

    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(pass_sections, "work_flops", lambda *a, **k: 1e30)
    attack(
        capfd,
        run_args(model, mmlu, out, "--peak-flops", "1e11"),
        out,
        "pass: mfu_computed",
        "above 100%",
        "--resume",
    )
    monkeypatch.undo()
    (run,) = out.iterdir()
    assert main(resume(run, "--peak-flops", "1e18")) == 0


def test_2_06_a_nominal_mfu_above_100_percent_is_a_warning(world, tmp_path, capfd):
    """The headline MFU counts flops_per_token per token (2 x 7e9 given for a tiny model):
    above 100% it is said, not refused, and mfu_computed stays the work that ran."""
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    assert (
        main(run_args(model, mmlu, out, "--peak-flops", "1e11", "--flops-per-token", "2*7e9")) == 0
    )
    (run,) = out.iterdir()
    result = json.loads((run / "result.json").read_text(encoding="utf-8"))
    assert any("is above 100%: flops_per_token counts more" in w for w in result["warnings"])
    assert all(p["mfu_computed"] <= 1 for p in result["passes"].values())


# 2.7 -------------------------------------------------------------------------------------


def laughs(levels: int) -> str:
    """A YAML "billion laughs" as the value of `few_shots`: each level a list of nine aliases of
    the one before (the anchors inside the value, so no unknown key stops it first)."""
    parts = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, levels):
        parts.append(f"&a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    return "few_shots: [" + ", ".join(parts) + "]\n"


@pytest.mark.parametrize("levels", [9, 5])
def test_2_07_yaml_alias_bomb(world, tmp_path, capfd, levels):
    model, mmlu = copy_world(world, tmp_path)
    case = tmp_path / "case.yaml"
    case.write_text(laughs(levels))
    assert len(case.read_bytes()) < 600
    argv = ["run", "--config", str(case), *run_args(model, mmlu, tmp_path / "out")[1:]]
    line = attack(capfd, argv, tmp_path / "out", str(case))
    assert len(line) < 500  # the value is never written out whole
    # 5 levels (66k values) load, and the message about `few_shots` shows a bounded part
    assert ("aliases expand" in line) == (levels == 9)


# 2.8 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["set", "vendor"])
def test_2_08_vendor_for_another_device(world, tmp_path, capfd, how):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    if how == "set":
        extra = ("--set", "vendor=nvidia")
    else:
        vendor = tmp_path / "vendor.yaml"
        vendor.write_text("vendor: nvidia\ndevice: cpu\n")
        extra = ("--vendor", str(vendor))
    attack(capfd, run_args(model, mmlu, out, *extra), out, "'nvidia'", "cpu")
    assert not out.exists()  # no empty run folder left


# 2.9 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"),
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "is not set"),
        (
            {"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
            "RANK='5'",
        ),
    ],
)
def test_2_09_bad_torchrun_variables(world, tmp_path, capfd, monkeypatch, env, word):
    model, mmlu = copy_world(world, tmp_path)
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    attack(capfd, run_args(model, mmlu, out), out, word)
    assert not out.exists()


# 2.10 / 2.18 / 2.19 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"vocab_size": 1000}, "vocab_size 1000 is smaller than the tokenizer's ids"),
        ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads 3"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"num_attention_heads": 3}, "transformers cannot build this config"),
        ({"model_type": "bert"}, "'bert' is not a causal language model"),
        ({"dtype": "float7"}, "transformers cannot build this config"),
        (
            {
                "num_hidden_layers": 100,
                "hidden_size": 8192,
                "intermediate_size": 22016,
                "num_attention_heads": 64,
                "num_key_value_heads": 64,
            },
            "the weights alone need",
        ),
    ],
)
def test_2_10_config_json_against_tokenizer_engine_and_device(world, tmp_path, capfd, edit, words):
    """Checked before any pass and before a weight is allocated (item 19: 390 GB of
    weights is refused at once)."""
    model, mmlu = copy_world(world, tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(edit)
    (model / "config.json").write_text(json.dumps(cfg))
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out", "--random-weights"),
        tmp_path / "out",
        f"{model / 'config.json'}: ",
        words,
    )


def test_2_18_weight_file_is_a_fifo(world, tmp_path):
    model, mmlu = copy_world(world, tmp_path)
    (model / "model.safetensors").unlink()
    os.mkfifo(model / "model.safetensors")
    done = run_cli(*run_args(model, mmlu, tmp_path / "out"), timeout=60)
    assert_one_error(
        done.returncode,
        done.stderr,
        tmp_path / "out",
        f"{model / 'model.safetensors'}: not a regular file",
    )


# 2.11 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "setting"),
    [
        ("shared-prefix", "engines.shared-prefix.compile_options={bogus_option: 1}"),
        ("shared-prefix", "engines.shared-prefix.compile_mode=bogus"),
        ("inductor", "engines.inductor.mode=bogus"),
    ],
)
def test_2_11_compile_settings_checked_up_front(world, tmp_path, capfd, engine, setting):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    attack(capfd, run_args(model, mmlu, out, "--engine", engine, "--set", setting), out, "bogus")
    assert not out.exists()  # before the model loads


# 2.12 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["folder", "missing parent", "/dev/full"])
def test_2_12_prompts_out_unwritable(world, tmp_path, capfd, where):
    model, mmlu = copy_world(world, tmp_path)
    out = {
        "folder": tmp_path,
        "missing parent": tmp_path / "no" / "p.jsonl",
        "/dev/full": Path("/dev/full"),
    }[where]
    attack(
        capfd,
        [
            "prompts",
            "--weight-dir",
            str(model),
            "--mmlu-dir",
            str(mmlu),
            "--subjects",
            SUBJECT,
            "--limit",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ],
        None,
        str(out),
    )


@pytest.mark.parametrize("what", ["report --html", "compare --html", "compare --png"])
def test_2_12_report_outputs_unwritable(finished, tmp_path, capfd, what):
    command, flag = what.split()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out in (tmp_path, blocker / "sub" / "x.out", Path("/proc/x.out")):
        attack(capfd, [command, str(finished), flag, str(out)], None, str(out)[:10])
    assert blocker.read_text() == "x"


# 2.14 ------------------------------------------------------------------------------------


def test_2_14_names_are_plain_text_in_charts(world, finished, tmp_path, capfd):
    run = copy_run(finished, tmp_path)
    named = run.with_name(run.name + "_$^$")
    run.rename(named)
    assert main(["report", str(named), "--html", str(tmp_path / "r.html")]) == 0
    assert main(["compare", str(named), str(named), "--png", str(tmp_path / "c.png")]) == 0
    assert "Traceback" not in capfd.readouterr().err


# 2.15 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["first progress record", "result write"])
def test_2_15_disk_full(world, tmp_path, capfd, monkeypatch, when):
    import errno

    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    name = "progress.jsonl" if when == "first progress record" else "result.json.tmp"
    real = os.fsync

    def full(fd):  # the disk fills as that file is synced
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(name):
            return real(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    attack(capfd, run_args(model, mmlu, out), out, "the disk is full", "--resume")
    monkeypatch.undo()
    (run,) = out.iterdir()
    assert not (run / "result.json.tmp").exists()
    assert main(resume(run)) == 0
    assert (run / "result.json").is_file()


# 2.16 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["XDG_CACHE_HOME a file", "--dir a file", "--dir /proc"])
def test_2_16_demo_folder_cannot_be_made(tmp_path, how):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    env = {"XDG_CACHE_HOME": str(blocker)} if how.startswith("XDG") else {}
    extra = {"--dir a file": ["--dir", str(blocker)], "--dir /proc": ["--dir", "/proc/demo"]}.get(
        how, []
    )
    done = run_cli("demo", "--no-progress", *extra, env=env, timeout=120)
    assert_one_error(done.returncode, done.stderr, None, "cannot make the demo folder")
    assert blocker.read_text() == "x"


# 2.17 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap_s", [0.01, 0.03, 0.05])
def test_2_17_second_ctrl_c(world, tmp_path, gap_s):
    import signal
    import time

    model, mmlu = copy_world(world, tmp_path)
    # The whole subject, one question a batch: the run must still be going when both signals
    # come (one that ends first exits 0, and one interrupted at its exit dies by the signal).
    args = run_args(
        model, mmlu, tmp_path / "out", "--limit", "100", "--set", "engines.eager.batch_size=1"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmlubench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120

    def batches() -> int:  # batch records so far: the run is past its set-up
        return sum(
            f.read_text(errors="replace").count('"kind": "batch"')
            for f in (tmp_path / "out").rglob("progress.jsonl")
        )

    while batches() < 2 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert not list((tmp_path / "out").rglob("result.json")), "the run ended before the signals"
    assert proc.returncode == 130, err
    assert "Exception ignored" not in err and "Traceback" not in err, err


# 2.20 ------------------------------------------------------------------------------------


def test_2_20_yaml_errors_are_one_line(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out", "--set", "limit=[1"),
        tmp_path / "out",
        "--set limit",
    )


def test_2_20_run_name_with_a_control_character(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    out = tmp_path / "out"
    attack(capfd, run_args(model, mmlu, out, "--run-name", "a\nb"), out, "'run_name'")
    assert not out.exists()


def test_2_20_weight_dir_with_a_newline(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    odd = tmp_path / "mo\ndel"
    model.rename(odd)
    (odd / "config.json").unlink()  # an error that names the folder
    attack(capfd, run_args(odd, mmlu, tmp_path / "out"), tmp_path / "out", "mo del")


def test_2_20_data_tar_not_a_tar(tmp_path, capfd):
    bad = tmp_path / "notatar.tar"
    bad.write_text("not a tar\n")
    attack(
        capfd,
        ["download", "--data-tar", str(bad), "--data-dir", str(tmp_path / "d")],
        None,
        str(bad),
    )


# 2.21 ------------------------------------------------------------------------------------


def test_2_21_emptied_config_on_resume(interrupted, tmp_path, capfd):
    run = copy_run(interrupted, tmp_path)
    (run / "config.yaml").write_text("")
    line = attack(capfd, resume(run), run, f"{run / 'config.yaml'}: empty")
    assert "cuda" not in line


def test_2_21_fifo_as_config(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    fifo = tmp_path / "case.yaml"
    os.mkfifo(fifo)
    argv = ["run", "--config", str(fifo), *run_args(model, mmlu, tmp_path / "out")[1:]]
    line = attack(capfd, argv, tmp_path / "out", f"{fifo}: not a regular file")
    assert "not found" not in line


def test_2_21_device_index_out_of_range(world, tmp_path, capfd):
    model, mmlu = copy_world(world, tmp_path)
    line = attack(
        capfd,
        run_args(model, mmlu, tmp_path / "out", "--device", "cpu:99999999999999999999"),
        tmp_path / "out",
        "'device'",
        "index out of range",
    )
    assert "does not know device type" not in line


# 2.13 ------------------------------------------------------------------------------------


def _set(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        doc = doc[p]
    if value is KeyError:
        del doc[last]
    else:
        doc[last] = value


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ("big int", "not valid JSON"),
        ("deep", "not valid JSON"),
        (("passes.infer", KeyError), "passes.infer"),
        (("accuracy.rule", "bogus"), "accuracy.rule"),
        ("random without a rule", "accuracy.reference"),
        (("passes.infer.energy_j", 5.0), "energy_j"),
        ("power without energy", "energy_j"),
        (("memory.samples", [[1.0]]), "memory.samples[0]"),
        (("passes.infer.timeline", [[1, 2]]), "passes.infer.timeline[0]"),
        ("infinity", "Infinity"),
        (("timings.x_bytes", 10**100), "timings.x_bytes"),
    ],
)
def test_2_13_edited_result_document(finished, tmp_path, capfd, edit, key):
    run = copy_run(finished, tmp_path)
    path = run / "result.json"
    doc = json.loads(path.read_text())
    text = None
    if edit == "big int":
        text = json.dumps(doc).replace('"questions": 2', '"questions": ' + "9" * 5000, 1)
    elif edit == "deep":
        text = "[" * 200_000 + "]" * 200_000
    elif edit == "infinity":
        doc["timings"]["x_bytes"] = float("inf")
        text = json.dumps(doc)
    elif edit == "random without a rule":
        doc["random_weights"] = True
        del doc["passes"]["infer"]["accuracy"]["reference"]
        doc["accuracy"]["rule"] = "choices"
    elif edit == "power without energy":
        doc["passes"]["infer"].update(energy_j=None, avg_power_w=3.0)
    else:
        _set(doc, *edit)
    path.write_text(text if text is not None else json.dumps(doc))
    for argv in (["report", str(run)], ["compare", str(run), str(run)]):
        line = attack(capfd, argv, None, str(path), key)
        assert len(line) < 500
