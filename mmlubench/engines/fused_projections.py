"""Sibling projections of one input as one GEMM: an optional transformation of the HF modules.

transformers' attention modules call `q_proj(h)`, `k_proj(h)`, `v_proj(h)` on the same
hidden states, and their MLPs `gate_proj(h)` and `up_proj(h)`: three and two GEMMs where one
larger GEMM does the same work at a better rate. While the engine runs, the first module of
each group is swapped for one that multiplies by the group's rows at once (`Group`) and keeps
the parts; the others hand back their part when called on the same tensor, and compute their
own product otherwise (so a model that calls them on other inputs stays exact). The modules'
weights become views into the fused weight: memory does not grow, and the plain model computes
exactly as before. Groups are found by the names transformers uses across architectures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
Swap = tuple[nn.Module, str, nn.Module, nn.Module]  # (parent, name, plain module, swapped)


class Parts:
    """The last group product's input and parts, between the group's calls."""

    def __init__(self):
        self.x: torch.Tensor | None = None
        self.parts: Sequence[torch.Tensor] = ()


class Group(nn.Module):
    """The group's first projection: one GEMM over every member's rows."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, sizes: list[int], parts: Parts
    ):
        super().__init__()
        self.weight, self.bias, self.sizes, self.store = weight, bias, sizes, parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
        self.store.x, self.store.parts = x, parts
        return parts[0]


class Member(nn.Module):
    """A later projection of the group: its part of the product when called on the same
    input; the last member lets go of the stored product."""

    def __init__(self, plain: nn.Linear, slot: int, last: bool, parts: Parts):
        super().__init__()
        self.plain, self.slot, self.last, self.store = plain, slot, last, parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.store.x is not x:
            return self.plain(x)
        out = self.store.parts[self.slot]
        if self.last:
            self.store.x, self.store.parts = None, ()
        return out


def fuse_rows(modules: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One [sum(out), in] weight (and bias); the modules' weights become views into it."""
    fused = torch.cat([m.weight.detach() for m in modules])
    biases = [m.bias for m in modules]
    bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])
    start = 0
    for m in modules:
        rows = m.weight.shape[0]
        m.weight = nn.Parameter(fused[start : start + rows], requires_grad=False)
        if bias is not None:
            m.bias = nn.Parameter(bias[start : start + rows], requires_grad=False)
        start += rows
    return fused, bias


def group_swaps(layers: Sequence[nn.Module]) -> list[Swap]:
    """The swaps that fuse every group found in the decoder layers: members that are
    nn.Linear of one input size, all with biases or all without."""
    swaps: list[Swap] = []
    for layer in layers:
        for parent in layer.modules():
            for names in GROUPS:
                members = [getattr(parent, n, None) for n in names]
                if not all(type(m) is nn.Linear for m in members):
                    continue
                if (
                    len({m.in_features for m in members}) > 1
                    or len({m.bias is None for m in members}) > 1
                ):
                    continue
                weight, bias = fuse_rows(members)
                parts = Parts()
                sizes = [m.out_features for m in members]
                swaps.append((parent, names[0], members[0], Group(weight, bias, sizes, parts)))
                for slot, (name, m) in enumerate(zip(names[1:], members[1:], strict=True), 1):
                    swaps.append((parent, name, m, Member(m, slot, slot == len(names) - 1, parts)))
    return swaps
