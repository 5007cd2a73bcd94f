"""Data-parallel runs under torchrun: which rank am I, which batches are mine, gather results.

Every rank reads the data, tokenizes and plans the same batches (all deterministic), then runs
only its share: each rank takes a contiguous run of batches of about equal estimated cost, so
a batch is computed exactly as in a one-GPU run and predictions match it question for
question. Control messages (results, errors) go through a gloo group on the host, so a rank that
fails still answers and every rank stops with its error instead of hanging.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import torch

from mmlubench.device.device import Device
from mmlubench.engines.base import Batch
from mmlubench.errors import RunError, short

T = TypeVar("T")


@dataclass
class Dist:
    """This process's place in the job: its rank, the number of ranks, its device."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    group: Any = None  # gloo process group for control messages

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def torchrun_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's variables, checked; a missing or bad one
    is an error naming it (WORLD_SIZE unset or 1: one process)."""
    env = os.environ

    def number(key: str, default: str | None, low: int, high: int | None = None) -> int:
        raw = env.get(key, default)
        if raw is None:
            raise RunError(
                f"{key} is not set, but WORLD_SIZE={env['WORLD_SIZE']} says this is "
                "one rank of a torchrun job (start it with torchrun)"
            )
        value = int(raw) if raw.strip().isdigit() and len(raw.strip()) < 10 else -1
        if value < low or (high is not None and value >= high):
            raise RunError(
                f"environment variable {key}={short(raw, 30)}: expected an integer "
                f">= {low}" + (f" and < {high}" if high is not None else "")
            )
        return value

    world = number("WORLD_SIZE", "1", 1)
    if world == 1:
        return 1, 0, 0
    rank = number("RANK", None, 0, world)
    number("MASTER_PORT", None, 1, 65536)
    if not env.get("MASTER_ADDR"):
        raise RunError(
            f"MASTER_ADDR is not set, but WORLD_SIZE={world} says this is one rank "
            "of a torchrun job (start it with torchrun)"
        )
    return world, rank, number("LOCAL_RANK", "0", 0)


def init_from_env(device: str, timeout_min: float = 60.0) -> Dist:
    """Join the torchrun job described by the environment, if any.

    On an accelerator each rank takes the device of its LOCAL_RANK ("cuda" becomes
    "cuda:LOCAL_RANK"); on the CPU every rank shares it.
    """
    world, rank, local = torchrun_env()
    if world <= 1:
        return Dist(device=device)
    import torch.distributed as dist

    kind = torch.device(device).type
    if kind != "cpu":
        count = Device.count(kind)
        if count <= local:
            raise RunError(
                f"rank {rank}: LOCAL_RANK {local} but only {count} {kind} device(s) visible"
            )
        device = f"{kind}:{local}"
        Device.of(device).make_current()
    if not dist.is_initialized():
        # Only host-side control messages cross ranks: gloo is enough and never hangs a GPU.
        dist.init_process_group("gloo", timeout=dt.timedelta(minutes=timeout_min))
    return Dist(rank, world, device, dist.group.WORLD)


def shutdown(d: Dist) -> None:
    """Leave the job after a successful run: wait for every rank, then destroy the group."""
    if d.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier(group=d.group)
            dist.destroy_process_group()


def exit_now(status: int, line: str) -> NoReturn:
    """Print `line` to stderr and end the process at once with `status`, skipping the
    interpreter's shutdown. Used when a data-parallel run fails: once a peer rank has gone,
    tearing down gloo's threads sometimes aborts the process ("terminate called without an
    active exception", status -6) after the right message was printed."""
    print(line, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def deal(costs: Sequence[float], world: int) -> list[list[int]]:
    """Indices of batches for each rank: a contiguous run each, in batch order, cut where the
    running cost is nearest each rank's even share (so a rank's load is within one batch's
    cost of total/world). Contiguous runs keep the shared-prefix engine's carry chains whole
    but at rank boundaries, where its first pack recomputes the prefix it carries in."""
    total = float(sum(costs))
    cuts, run, rank = [], 0.0, 1
    for i, c in enumerate(costs):
        while rank < world and run + c / 2 > total * rank / world:
            cuts.append(i)  # batch i starts rank `rank`: the cut nearest its share
            rank += 1
        run += c
    cuts += [len(costs)] * (world - 1 - len(cuts))
    bounds = [0, *cuts, len(costs)]
    return [list(range(bounds[r], bounds[r + 1])) for r in range(world)]


def sharer(d: Dist, cost: Callable[[Batch], float]) -> Callable[[list[Batch]], list[Batch]] | None:
    """What picks this rank's batches out of all planned ones (`deal` by `cost`); None when
    the run is not data parallel."""
    if not d.active:
        return None
    return lambda batches: [batches[i] for i in deal([cost(b) for b in batches], d.world)[d.rank]]


def all_gather(d: Dist, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (just [obj] without torchrun)."""
    if not d.active:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj, group=d.group)
    return out


def step(d: Dist, what: str, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on every rank; if it fails on any rank, it fails on every rank, with an
    error naming the ranks (without torchrun: fn's own error)."""
    error, value = None, None
    try:
        value = fn(*args)
    except Exception as e:  # re-raised on every rank by agree()
        error = e
    agree(d, error, what)
    return value  # type: ignore[return-value]


def agree(d: Dist, error: BaseException | None, what: str) -> None:
    """Collective check after a step: if any rank failed, every rank raises, naming the rank."""
    if not d.active:
        if error is not None:
            raise error
        return
    msg = None if error is None else f"{type(error).__name__}: {error}"
    statuses = all_gather(d, msg)
    failed = [(r, m) for r, m in enumerate(statuses) if m is not None]
    if failed:
        if error is not None and d.world == 1:
            raise error
        text = "; ".join(f"rank {r}: {m}" for r, m in failed)
        raise RunError(f"{what} failed on {len(failed)} of {d.world} ranks: {text}") from error
