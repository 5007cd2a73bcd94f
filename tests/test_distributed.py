"""Data-parallel runs on CPU with the gloo backend: 2 processes give the single process's answers.

The processes are started with the environment torchrun would give them (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT), so one of them can be handed a bad argument.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmlubench.run.distributed import deal

SUBJECTS = "abstract_algebra,anatomy,high_school_european_history"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_args(model_dir: Path, mmlu_dir: Path, out: Path, engine: str) -> list[str]:
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
        "7",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--engine",
        engine,
        "--output-dir",
        str(out),
        "--no-progress",
        "--set",
        "engines.eager.batch_size=4",
        "--set",
        "engines.shared-prefix.pack_tokens=2048",
    ]


def launch(world: int, args_of_rank, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    port = free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mmlubench", *args_of_rank(rank)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def predictions(out: Path) -> list[dict]:
    (run,) = out.iterdir()
    return [json.loads(line) for line in (run / "predictions.jsonl").open()]


def test_deal_balances_and_covers():
    costs = [5, 1, 1, 1, 4, 3, 3, 2]
    shares = deal(costs, 3)
    assert sorted(i for s in shares for i in s) == list(range(len(costs)))
    loads = [sum(costs[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(costs)
    # Contiguous runs in batch order (the shared-prefix carry breaks only between ranks).
    assert [i for s in shares for i in s] == list(range(len(costs)))
    assert deal(costs, 3) == shares  # deterministic
    assert deal(costs, 1) == [list(range(len(costs)))]


@pytest.mark.parametrize("engine", ["shared-prefix", "eager"])
def test_two_ranks_match_one_process(tmp_path, tiny_model_dir, mmlu_dir, engine):
    from mmlubench.cli.main import main

    assert main(run_args(tiny_model_dir, mmlu_dir, tmp_path / "one", engine)) == 0
    done = launch(2, lambda rank: run_args(tiny_model_dir, mmlu_dir, tmp_path / "two", engine))
    assert [p.returncode for p in done] == [0, 0], done[0].stderr[-2000:] + done[1].stderr[-2000:]
    assert "run folder" in done[0].stdout and "run folder" not in done[1].stdout  # rank 0 only
    one, two = predictions(tmp_path / "one"), predictions(tmp_path / "two")
    assert len(one) == 21 and one == two  # question for question, val and infer
    (run,) = (tmp_path / "two").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["metrics"]["devices"] == 2
    per_rank = result["passes"]["infer"]["per_rank"]
    assert [r["rank"] for r in per_rank] == [0, 1]
    assert sum(r["questions"] for r in per_rank) == 21
    assert result["passes"]["infer"]["core_time_s"] == max(r["core_time_s"] for r in per_rank)


def test_a_failing_rank_fails_every_rank(tmp_path, tiny_model_dir, mmlu_dir):
    def args(rank: int) -> list[str]:
        a = run_args(tiny_model_dir, mmlu_dir, tmp_path / "out", "eager")
        if rank == 1:  # as if one node lacked the data
            a[a.index("--mmlu-dir") + 1] = str(tmp_path / "missing")
        return a

    done = launch(2, args, timeout=120)  # a hang would time out here
    assert [p.returncode for p in done] == [2, 2]
    for p in done:
        assert "rank 1" in p.stderr and "missing" in p.stderr
        assert "Traceback" not in p.stderr
    assert not any((tmp_path / "out").rglob("result.json"))


def test_a_failing_rank_always_exits_2(tmp_path, tiny_model_dir, mmlu_dir):
    """gloo's teardown once aborted a failing rank now and then ("terminate
    called without an active exception", status -6) after the right message. 20 launches, two
    at a time, of two ranks where rank 1 lacks the data: every rank exits 2 with one line."""
    import concurrent.futures

    def args(rank: int) -> list[str]:
        a = run_args(tiny_model_dir, mmlu_dir, tmp_path / "out", "null")
        a[a.index("--limit") + 1] = "1"
        a[a.index("--subjects") + 1] = "global_facts"
        if rank == 1:
            a[a.index("--mmlu-dir") + 1] = str(tmp_path / "missing")
        return [*a, "--no-validation"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        launches = list(pool.map(lambda _: launch(2, args, timeout=120), range(20)))
    for done in launches:
        assert [p.returncode for p in done] == [2, 2], [p.stderr[-500:] for p in done]
        for p in done:
            (line,) = p.stderr.strip().splitlines()
            assert line.startswith(
                "mmlubench: error: loading data failed on 1 of 2 ranks: rank 1: DataError: "
            )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("result.json"))


def test_two_nodes_on_one_host_match_one_process(tmp_path, tiny_model_dir, mmlu_dir):
    """Two torchrun launchers as two nodes (--nnodes 2, c10d rendezvous on localhost, gloo,
    CPU), one process each: the predictions of a one-process run."""
    from mmlubench.cli.main import main

    def args(out: Path) -> list[str]:
        a = run_args(tiny_model_dir, mmlu_dir, out, "eager")
        a[a.index("--limit") + 1] = "2"
        return a

    assert main(args(tmp_path / "one")) == 0
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"localhost:{port}",
                "--rdzv-id",
                "t",
                "--max-restarts",
                "0",
                "-m",
                "mmlubench",
                *args(tmp_path / "two"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    done = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in nodes]
    assert [rc for rc, _, _ in done] == [0, 0], [err[-2000:] for _, _, err in done]
    assert sum("run folder" in out for _, out, _ in done) == 1  # rank 0's node only
    one, two = predictions(tmp_path / "one"), predictions(tmp_path / "two")
    assert len(one) == 6 and one == two
    (run,) = (tmp_path / "two").iterdir()
    assert json.loads((run / "result.json").read_text())["metrics"]["devices"] == 2
