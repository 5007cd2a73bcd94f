"""A run killed halfway (SIGKILL, at a batch chosen by a test hook) and resumed with --resume
gives the predictions of an uninterrupted run, computes no question twice, adds up the
sessions' timings as documented, and refuses to resume when the config, data or model differ.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mmlubench.cli.main import main
from mmlubench.run.progress_check import Limits
from mmlubench.run.resume import read_records

SUBJECTS = "abstract_algebra,anatomy,global_facts"
QUESTIONS = 9  # 3 subjects x --limit 3; eager padded batches of 2: 5 batches a pass


def run_args(model_dir: Path, mmlu_dir: Path, out: Path) -> list[str]:
    return [
        "run",
        "--random-weights",
        "--data-dir",
        "/",
        "--weight-dir",
        str(model_dir),
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        SUBJECTS,
        "--limit",
        "3",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--engine",
        "eager",
        "--set",
        "engines.eager.method=padded",
        "--set",
        "engines.eager.batch_size=2",
        "--output-dir",
        str(out),
        "--no-progress",
    ]


def start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mmlubench", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(p: subprocess.Popen) -> tuple[int, str]:
    out, err = p.communicate(timeout=300)
    return p.returncode, out + err


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def killed(tmp_path_factory, tiny_model_dir, mmlu_dir):
    """(uninterrupted run folder, folder of a run killed after its 2nd infer batch)."""
    tmp = tmp_path_factory.mktemp("resume")
    # Both at once (two cores); the same interpreter and settings as the resumed run below.
    ref = start(run_args(tiny_model_dir, mmlu_dir, tmp / "ref"))
    dead = start(
        run_args(tiny_model_dir, mmlu_dir, tmp / "killed"), MMLUBENCH_INJECT_KILL="infer:1"
    )
    rc, log = finish(dead)
    assert rc == -signal.SIGKILL, log
    rc, log = finish(ref)
    assert rc == 0, log
    (ref_dir,) = (tmp / "ref").iterdir()
    (run_dir,) = (tmp / "killed").iterdir()
    return ref_dir, run_dir


def test_killed_run_left_progress_and_no_result(killed):
    _, run_dir = killed
    # run.lock: left by the killed process, whose lock the system dropped when it died.
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.yaml",
        "fingerprint.json",
        "progress.jsonl",
        "run.lock",
    ]
    batches = [r for r in lines(run_dir / "progress.jsonl") if r["kind"] == "batch"]
    assert [r["pass"] for r in batches] == ["val"] * 5 + ["infer"] * 2


def test_resume_refuses_another_run(
    killed, tmp_path, mmlu_dir, tiny_model_dir, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    shutil.copytree(killed[1], run_dir)
    before = (run_dir / "progress.jsonl").read_bytes()

    def refused(*extra: str) -> str:
        assert main(["run", "--resume", str(run_dir), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mmlubench: error: {run_dir}") or "torchrun" in err, err
        assert "Traceback" not in err
        return err

    assert "config differs: engines.eager.batch_size: 2 then, 3 now" in refused(
        "--set", "engines.eager.batch_size=3"
    )
    assert "limit: 3 then, 2 now" in refused("--limit", "2")
    # Data: the same subjects from another folder, one question changed by one character.
    data = tmp_path / "mmlu"
    for split in ("dev", "test"):
        (data / split).mkdir(parents=True)
        for s in SUBJECTS.split(","):
            shutil.copy(mmlu_dir / split / f"{s}_{split}.csv", data / split)
    f = data / "test" / "anatomy_test.csv"
    f.write_text(f.read_text(encoding="utf-8").replace("?", "?!", 1), encoding="utf-8")
    assert "prompt token ids differ" in refused("--mmlu-dir", str(data))
    # Model: another config.json (a different norm epsilon).
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-5}))
    assert "model differs: config_json_sha256" in refused("--weight-dir", str(model))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "not under torchrun" in refused()
    monkeypatch.delenv("WORLD_SIZE")
    # Nothing of that touched the run.
    assert (run_dir / "progress.jsonl").read_bytes() == before
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_resume_finishes_the_run_exactly(killed, tmp_path):
    ref_dir, run_dir = killed[0], tmp_path / "run"
    shutil.copytree(killed[1], run_dir)
    # As if the kill had struck while a line was being written: a torn line without "\n".
    with open(run_dir / "progress.jsonl", "a", encoding="utf-8") as f:
        f.write('{"session": 0, "pass": "infer", "kind": "batch", "rows": [0, 1], "top_')
    # Metric-only keys may differ: they change no answer (a bad value must not lock the work in).
    rc, log = finish(
        start(
            [
                "run",
                "--resume",
                str(run_dir),
                "--no-progress",
                "--flops-per-token",
                "2*params",
                "--peak-flops",
                "1e12",
            ]
        )
    )
    assert rc == 0, log
    assert f"resumed run folder: {run_dir}" in log
    predictions = (run_dir / "predictions.jsonl").read_text()
    assert predictions == (ref_dir / "predictions.jsonl").read_text()

    records = read_records(run_dir / "progress.jsonl", Limits(10**6, 102400))
    assert [r["session"] for r in records if r["kind"] == "session"] == [0, 1]
    for name in ("val", "infer"):  # every question recorded exactly once over both sessions
        rows = [i for r in records if r["kind"] == "batch" and r["pass"] == name for i in r["rows"]]
        assert sorted(rows) == list(range(QUESTIONS)), name
    second = [r for r in records if r["session"] == 1 and r["kind"] == "batch"]
    assert [r["pass"] for r in second] == ["infer"] * 3  # val was not run again

    result = json.loads((run_dir / "result.json").read_text())
    ref = json.loads((ref_dir / "result.json").read_text())
    resume = result["resume"]
    assert ref["resume"] is None and resume["resumed"] is True
    assert [s["completed"] for s in resume["sessions"]] == [False, True]
    assert [s["passes"]["infer"]["questions"] for s in resume["sessions"]] == [4, 5]
    assert "val" not in resume["sessions"][1]["passes"]
    assert any(w.startswith("RESUMED") for w in result["warnings"])
    infer = result["passes"]["infer"]
    cores = [r["core_time_s"] for r in records if r["kind"] == "batch" and r["pass"] == "infer"]
    assert infer["core_time_s"] == pytest.approx(sum(cores))
    assert infer["whole_time_s"] == pytest.approx(
        sum(s["passes"]["infer"]["whole_time_s"] for s in resume["sessions"])
    )
    assert result["metrics"]["e2e_time_s"] == pytest.approx(
        sum(s["e2e_time_s"] for s in resume["sessions"])
    )
    assert infer["batches"] == ref["passes"]["infer"]["batches"] == 5
    assert infer["prompt_tokens"] == ref["passes"]["infer"]["prompt_tokens"]
    assert infer["computed_tokens"] == ref["passes"]["infer"]["computed_tokens"]
    times = [t[3] for t in infer["timeline"]]
    assert times == sorted(times)  # one timeline, the second session after the first
    assert result["metrics"]["peak_flops_per_s"] == 1e12 and result["metrics"]["mfu"] > 0
    # The whole-logit distance needs both passes' logits in memory: val ran in the killed
    # session, so the resumed one has no question to compare and says so (0, null).
    agree, ref_agree = (r["accuracy"]["agreement_val_infer"] for r in (result, ref))
    assert ref_agree["logits_sample_questions"] == QUESTIONS
    assert agree["logits_sample_questions"] == 0 and agree["logits_rel_l2_mean"] is None
    assert main(["run", "--resume", str(run_dir)]) == 2  # finished: nothing to resume


def test_progress_log_reader(tmp_path):
    """A torn last line is cut off the file; a corrupt line elsewhere is an error naming it;
    a batch whose answers do not match its rows is refused."""
    from mmlubench.errors import RunError
    from mmlubench.run.resume import RunLog

    batch = {
        "kind": "batch",
        "session": 0,
        "e2e_s": 1.0,
        "pass": "infer",
        "rows": [2, 0],
        "top_ids": [7, 8],
        "choice_logits": [[0, 1, 2, 3], [4, 5, 6, 7]],
        "prompt_tokens": 9,
        "work": {"tokens": 9, "attention_pairs": 0, "logit_rows": 2, "padded_tokens": 9},
        "core_time_s": 0.5,
        "t_s": 0.6,
    }
    path = tmp_path / "progress.jsonl"
    good = json.dumps(batch) + "\n"
    path.write_text(good + '{"kind": "batch", "ses')
    lim = Limits(3, 100)
    assert read_records(path, lim) == [batch]
    assert path.read_text() == good  # appending starts on a fresh line
    log = RunLog(tmp_path, 3, 0.0, read_records(path, lim))
    ((session, part),) = log.earlier("infer")
    assert session == 0 and log.session == 1
    assert part.top_ids.tolist() == [8, -1, 7] and part.choice_logits[2].tolist() == [0, 1, 2, 3]
    assert part.work.tokens == 9 and part.core_time_s == 0.5 and part.whole_time_s == 0.6
    log.close()
    path.write_text("not json\n" + good)
    with pytest.raises(RunError, match=r"progress.jsonl:1: corrupt progress record"):
        read_records(path, lim)
    path.write_text(json.dumps({**batch, "top_ids": [7]}) + "\n")
    with pytest.raises(RunError, match=r"progress.jsonl:1: .* field 'top_ids' must be one"):
        read_records(path, lim)
    path.write_text(good + json.dumps({**batch, "rows": [1, 2]}) + "\n")
    log = RunLog(tmp_path, 3, 0.0, read_records(path, lim))
    with pytest.raises(RunError, match="records a row twice"):
        log.earlier("infer")
    log.close()


def test_fingerprint_counts_only_the_engines_the_run_uses(tmp_path):
    from mmlubench.config.config import load_config
    from mmlubench.run.fingerprint import differences, fingerprint

    base = {"device": "cpu", "engine": "eager", "weight_dir": str(tmp_path)}

    def fp(**more):
        return fingerprint(load_config(overrides={**base, **more}), [], [1, 2, 3, 4])

    plain = fp()
    # The inductor engine does not run here: its options cannot change the answers.
    assert differences(plain, fp(engines={"inductor": {"warmup_iters": 3}})) == []
    changed = differences(plain, fp(engines={"eager": {"batch_size": 7}}))
    assert len(changed) == 1 and "engines.eager.batch_size" in changed[0]
