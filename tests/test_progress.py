"""A pass's progress: plain periodic lines when stderr is not a terminal, one throughput name
(the table's p_<pass>_core: prompt tokens per core second), no warm-up lines for an engine
that compiles nothing."""

from __future__ import annotations

import io

from mmlubench.run.progress import Progress


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()  # not a terminal
    bar = Progress("infer", "eager", 3000, stream=stream, interval_s=0.0)
    bar.update(1000, 1000, 0.5)
    bar.update(2000, 3000, 1.5)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        "infer (eager): 1,000/3,000 prompt tokens (33%), p_infer_core 2,000 tok/s, "
    )
    assert lines[1].startswith(
        "infer (eager): 3,000/3,000 prompt tokens (100%), p_infer_core 2,000 tok/s"
    )


def test_plain_lines_are_periodic():
    stream = io.StringIO()
    bar = Progress("val", "eager", 100, stream=stream, interval_s=3600)
    for _ in range(9):
        bar.update(10, 10, 1.0)
    assert stream.getvalue() == ""  # within the interval, only the last update prints
    bar.update(10, 100, 1.0)
    assert stream.getvalue().count("\n") == 1


def test_disabled_prints_nothing():
    stream = io.StringIO()
    bar = Progress("val", "eager", 100, enabled=False, stream=stream, interval_s=0.0)
    bar.update(100, 100, 1.0)
    assert stream.getvalue() == ""


def test_no_warm_up_line_for_an_engine_that_compiles_nothing(capsys, tiny_model):
    from mmlubench.engines import engine_class, engine_options
    from mmlubench.run.passes import warm_up

    engine = engine_class("eager")(tiny_model, engine_options("eager", {}, "test"), "cpu")
    assert warm_up("val", engine, [], say=True) == 0.0
    assert capsys.readouterr().err == ""


def test_ctrl_c_names_the_folder_and_the_resume_command(
    tmp_path, tiny_model_dir, mmlu_dir, monkeypatch
):
    """Ctrl-C (here while the model loads, after the run files are written) ends with the
    run folder and the exact command to go on, on a line of its own; the command works."""
    import contextlib

    from mmlubench.cli.main import main
    from mmlubench.run import runner

    def interrupt(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "load_weights", interrupt)
    args = [
        "run",
        "--weight-dir",
        str(tiny_model_dir),
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        "abstract_algebra",
        "--limit",
        "1",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--random-weights",
        "--no-validation",
        "--engine",
        "eager",
        "--output-dir",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 130
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert err.getvalue() == (
        f"\nmmlubench: interrupted; the answers so far are kept in "
        f"{run_dir}; go on with: mmlubench run --resume {run_dir}\n"
    )
    monkeypatch.undo()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    assert (run_dir / "result.json").is_file()
