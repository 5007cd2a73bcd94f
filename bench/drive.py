"""Run named stages of measurements on a GPU machine under one deadline; one tarball under $OUT.

A stage is one command (a `mmlubench run`, a bench tool) with a time cap. Stages are given in
lanes, `--lane GPUS=STAGE,STAGE,...`: the stages of a lane run one after another on its GPUs
(CUDA_VISIBLE_DEVICES; `cpu` for none), lanes run side by side, each lane with its own
compiler caches (so a lane's second run of the case compiles warm). Every stage gets the
smaller of its cap and the time left before the deadline (`--budget-s`), and is skipped when
less than MIN_STAGE_S is left; a stage past its time gets SIGINT (a run then records what it
did, and its folder can be resumed), then SIGKILL 30 s later.

The work folder ends up as one tarball, `$OUT/NAME.tar.gz`: logs/STAGE.log, runs/ (every run
folder), the stages' JSON, stages.json (each stage's lane, status and seconds), gpus.csv,
versions.txt and commit.txt (the machine and the code), summary.json/.txt (bench/summarize.py
over the finished runs). A short table is printed last. `--list` names the stages (their
commands: bench/stages.py).

On the CPU, with a tiny model: `python bench/drive.py --lane cpu=cpu --model DIR --mmlu DIR
--out /tmp/out --budget-s 300` (tests/test_drive.py runs this). Flags for every run:
`--extra="--limit 2"` (with `=`: the value starts with a dash).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from stages import PY, REPO, STAGES, Setup

MIN_STAGE_S = 20  # less left than this: the stage is skipped, not started
KILL_AFTER_S = 30  # after SIGINT, before SIGKILL


def parse_lane(text: str) -> tuple[str, list[str]]:
    """`GPUS=STAGE,...` -> (GPUS, stages); GPUS `cpu`: none. Unknown stage: ValueError."""
    gpus, sep, names = text.partition("=")
    stages = [n for n in names.split(",") if n]
    if not sep or not gpus or not stages:
        raise ValueError(f"{text!r}: a lane is GPUS=STAGE,STAGE,... (GPUS `cpu` for none)")
    unknown = [n for n in stages if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    return gpus, stages


class Clock:
    """The deadline shared by every lane."""

    def __init__(self, budget_s: float):
        self.t0 = time.monotonic()
        self.end = self.t0 + budget_s

    def left(self, cap_s: float) -> int:
        return int(min(cap_s, self.end - time.monotonic()))

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 1)


def run_stage(name: str, gpus: str, setup: Setup, clock: Clock, env: dict[str, str]) -> dict:
    """Run one stage under the deadline; its record for stages.json."""
    stage, log = STAGES[name], setup.work / "logs" / f"{name}.log"
    record = {"stage": name, "lane": gpus, "start_s": clock.now(), "status": "skipped"}
    limit = clock.left(stage.cap_s)
    with log.open("a", encoding="utf-8") as f:
        if limit < MIN_STAGE_S:
            f.write(f"skipped {name}: {limit} s left, less than {MIN_STAGE_S}\n")
            return {**record, "seconds": 0.0}
        argv = stage.command(name, setup, 0 if gpus == "cpu" else len(gpus.split(",")))
        f.write(f"start {name} t={clock.now()} s limit {limit} s: {shlex.join(argv)}\n")
        f.flush()
        t = time.monotonic()
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            rc = proc.wait(timeout=limit)
            record["status"] = "ok" if rc == 0 else f"failed (rc {rc})"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # a run records its work and stays resumable
            try:
                proc.wait(timeout=KILL_AFTER_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            record["status"] = f"stopped at its limit ({limit} s)"
        seconds = round(time.monotonic() - t, 1)
        f.write(f"end {name}: {record['status']} after {seconds} s\n")
    return {**record, "seconds": seconds}


def lane_env(gpus: str, work: Path) -> dict[str, str]:
    """The environment of a lane's stages: its GPUs and compiler caches, the checkout."""
    cache = work / "cache" / gpus.replace(",", "-")
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "" if gpus == "cpu" else gpus,
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "MMLUBENCH_GIT_COMMIT": commit(),
    }


def commit() -> str:
    """The code under test: MMLUBENCH_GIT_COMMIT, else .devdata/COMMIT (a copied tree has no
    .git), else git's HEAD."""
    if os.environ.get("MMLUBENCH_GIT_COMMIT"):
        return os.environ["MMLUBENCH_GIT_COMMIT"]
    carried = REPO / ".devdata" / "COMMIT"
    if carried.is_file():
        return carried.read_text(encoding="utf-8").strip()
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def record_machine(work: Path) -> None:
    """gpus.csv (nvidia-smi, where there is one), versions.txt and commit.txt."""
    query = "index,name,memory.total,driver_version,power.limit"
    try:
        smi = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        (work / "gpus.csv").write_text(smi.stdout, encoding="utf-8")
    except (OSError, subprocess.TimeoutExpired):
        pass
    code = (
        "import torch, transformers; print('torch', torch.__version__, 'transformers', "
        "transformers.__version__)"
    )
    versions = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    (work / "versions.txt").write_text(versions.stdout, encoding="utf-8")
    (work / "commit.txt").write_text(commit() + "\n", encoding="utf-8")


def summarize(work: Path) -> str:
    """bench/summarize.py over the finished run folders: summary.json and its table."""
    runs = sorted(str(p.parent) for p in (work / "runs").glob("*/result.json"))
    if not runs:
        return "no finished run\n"
    argv = [PY, str(REPO / "bench" / "summarize.py"), "--runs", *runs]
    if (work / "parity.json").is_file():
        argv += ["--parity", str(work / "parity.json")]
    done = subprocess.run(
        [*argv, "--out", str(work / "summary.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    text = done.stdout + done.stderr[-2000:]
    (work / "summary.txt").write_text(text, encoding="utf-8")
    return text


def drive(lanes: list[tuple[str, list[str]]], setup: Setup, budget_s: float) -> list[dict]:
    """Every lane in its own thread, stages in order; the stages' records."""
    clock, records, lock = Clock(budget_s), [], threading.Lock()

    def lane(gpus: str, names: list[str]) -> None:
        env = lane_env(gpus, setup.work)
        for name in names:
            rec = run_stage(name, gpus, setup, clock, env)
            with lock:
                records.append(rec)

    threads = [threading.Thread(target=lane, args=lane_args) for lane_args in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(records, key=lambda r: r["start_s"])


def pack(work: Path, out: Path) -> None:
    """The work folder, without the compiler caches, as one tarball."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(work.iterdir()):
            if p.name != "cache":
                tar.add(p, arcname=p.name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--lane",
        action="append",
        default=[],
        metavar="GPUS=STAGE,...",
        help="GPUs (e.g. 0, or 2,3; cpu for none) and the stages they run in order",
    )
    p.add_argument("--list", action="store_true", help="name the stages and what each runs")
    p.add_argument("--model", help="model folder: config.json and tokenizer (no weights needed)")
    p.add_argument("--mmlu", help="MMLU folder holding dev/ and test/")
    p.add_argument("--config", help="case file of every run (default: the packaged case)")
    p.add_argument("--precision", default="fp16", help="of the GPU runs (default: fp16)")
    p.add_argument(
        "--extra",
        default="",
        help="more flags for every `mmlubench run`, as one string (e.g. '--limit 2' for a dry run)",
    )
    p.add_argument("--budget-s", type=float, default=540, help="deadline of the whole drive")
    p.add_argument("--name", default="drive", help="the tarball's name (default: drive)")
    p.add_argument(
        "--out", default=os.environ.get("OUT", "."), help="where the tarball goes (default: $OUT)"
    )
    p.add_argument("--work", help="scratch folder (default: /tmp/mmlubench-NAME; emptied first)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(f"{n:10} {s.what} (cap {s.cap_s} s)" for n, s in STAGES.items()))
        return 0
    try:
        lanes = [parse_lane(text) for text in args.lane]
    except ValueError as e:
        print(f"drive.py: error: {e}", file=sys.stderr)
        return 2
    if not lanes or not args.model or not args.mmlu:
        print("drive.py: error: give --lane, --model and --mmlu (--help)", file=sys.stderr)
        return 2
    work = Path(args.work or f"/tmp/mmlubench-{args.name}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    setup = Setup(
        Path(args.model).resolve(),
        Path(args.mmlu).resolve(),
        work,
        args.config,
        args.precision,
        shlex.split(args.extra),
    )
    record_machine(work)
    records = drive(lanes, setup, args.budget_s)
    (work / "stages.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    summary = summarize(work)
    pack(work, Path(args.out) / f"{args.name}.tar.gz")
    print(summary, end="")
    print("| stage | lane | status | seconds |\n|---|---|---|---|")
    for r in records:
        print(f"| {r['stage']} | {r['lane']} | {r['status']} | {r['seconds']} |")
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
