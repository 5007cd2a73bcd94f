"""The run folder: one process at a time (a lock held by a real second process, taken over after
kill -9), and output folders that cannot be written end in one line, before any work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmlubench.cli.main import main
from mmlubench.run.rundir import LOCK, RunLock

ROOT = Path(__file__).resolve().parents[1]


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
        "global_facts",
        "--limit",
        "1",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--engine",
        "null",
        "--no-validation",
        "--output-dir",
        str(out),
        "--no-progress",
    ]


def resumable(tmp_path: Path) -> Path:
    """A run folder as a killed run leaves it (config.yaml, no result.json)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("case: x\n")
    return run_dir


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the folder's lock and keeps it until killed."""
    code = (
        "import sys, time; from mmlubench.run.rundir import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.stdout.readline() == "locked\n"
    return p


def test_a_locked_folder_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, capsys):
    run_dir = resumable(tmp_path)
    holder = hold_lock(run_dir)
    try:
        assert main(["run", "--resume", str(run_dir), "--device", "cpu", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"mmlubench: error: {run_dir}: this run folder is in use by pid "
            f"{holder.pid} on host {socket.gethostname()} (lock {run_dir / LOCK}); "
            "wait until it ends\n"
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without cleaning up: its lock file stays, naming it, but is free.
    assert (run_dir / LOCK).read_text() == f"pid {holder.pid} on host {socket.gethostname()}\n"
    lock = RunLock(run_dir).acquire()
    assert (run_dir / LOCK).read_text() == f"pid {os.getpid()} on host {socket.gethostname()}\n"
    lock.release()
    assert not (run_dir / LOCK).exists()


def test_the_lock_is_held_for_the_whole_run_and_released(
    tmp_path, tiny_model_dir, mmlu_dir, monkeypatch
):
    seen = []
    real = RunLock.release

    def release(self):  # the lock file is there until the run lets go of it
        seen.append(self.path.read_text())
        real(self)

    monkeypatch.setattr(RunLock, "release", release)
    assert main(run_args(tiny_model_dir, mmlu_dir, tmp_path)) == 0
    (run_dir,) = tmp_path.iterdir()
    assert seen == [f"pid {os.getpid()} on host {socket.gethostname()}\n"]
    assert not (run_dir / LOCK).exists() and (run_dir / "result.json").is_file()


def bad_output(tmp_path: Path, kind: str) -> Path:
    if kind == "a file":
        (tmp_path / "f").write_text("x")
        return tmp_path / "f"
    if kind == "under a file":
        (tmp_path / "f").write_text("x")
        return tmp_path / "f" / "runs"
    if kind == "proc":
        return Path("/proc/x")
    out = tmp_path / "ro"
    out.mkdir(mode=0o555)
    return out / "runs"


@pytest.mark.parametrize("kind", ["a file", "under a file", "proc", "unwritable"])
def test_output_dir_that_cannot_be_written(
    tmp_path, tiny_model_dir, mmlu_dir, capfd, kind, monkeypatch
):
    if kind == "unwritable" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    out = bad_output(tmp_path, kind)
    import mmlubench.run.runner

    def no_work(*args):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(mmlubench.run.runner, "read_questions", no_work)
    assert main(run_args(tiny_model_dir, mmlu_dir, out)) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"mmlubench: error: {out if kind != 'under a file' else out.parent}")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("how", ["progress log is a folder", "read-only folder"])
def test_resume_into_a_folder_that_cannot_be_written(tmp_path, capfd, how, monkeypatch):
    run_dir = resumable(tmp_path)
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        run_dir.chmod(0o555)
    else:
        (run_dir / "progress.jsonl").mkdir()
    import mmlubench.run.runner

    def no_work(*args):
        raise AssertionError("work started before the run folder was checked")

    monkeypatch.setattr(mmlubench.run.runner, "read_questions", no_work)
    assert main(["run", "--resume", str(run_dir), "--device", "cpu", "--no-progress"]) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"mmlubench: error: {run_dir}") and "cannot write" in err
    assert err.count("\n") == 1 and "Traceback" not in err
