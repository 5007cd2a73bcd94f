"""FLOPs per token for MFU: the expression (`2*7e9`, `2*params`) and which one a run uses.

The reference's flops_per_token (2 x 7e9 for deepseek-llm-7b-base) is 2 x its model's nominal
parameter count: right for that model, wrong for any other (a tiny model under 2 x 7e9 showed an
MFU of 39,518%). So a case's own value holds only when the model is the case's (its config.json
agrees with the case's `model_config`); any other model gets 2 x its parameters (the active ones
for a mixture of experts: the experts a token is not routed to do no work). A value the user
gives (command line, `--set`, a vendor file) is used as given, with a warning when it is far
from 2 x the active parameters.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from mmlubench.errors import RunError

if TYPE_CHECKING:
    from mmlubench.results.document import Pass

# How far a given flops_per_token may be from 2 x active parameters before a warning.
FAR = 1.25

_FLOPS_RE = re.compile(r"^\s*([0-9.eE+\-]+|params)(\s*\*\s*([0-9.eE+\-]+|params))*\s*$")


def parse_flops_per_token(expr: str, n_params: int | None = None) -> float | None:
    """Evaluate "2*7e9" or "2*params"; None if it needs params that are not known yet."""
    if not _FLOPS_RE.match(expr):
        raise ValueError(f"expected a product like '2*7e9' or '2*params', got {expr!r}")
    value = 1.0
    for factor in expr.split("*"):
        factor = factor.strip()
        if factor == "params":
            if n_params is None:
                return None
            value *= n_params
        else:
            value *= float(factor)
    if not 0 < value < math.inf:
        raise ValueError(f"must be positive and finite, got {expr!r}")
    return value


def check_flops_per_token(expr: str) -> None:
    """Raise ValueError unless `expr` gives a positive, finite count for any model size.

    Checked before any work: a "params" expression can only be evaluated once the model is
    loaded, so it is tried at both ends of the sizes a model can have (1 to 1e13 parameters);
    the value grows with the parameter count, so both ends positive and finite means all are.
    """
    for n_params in (1, 10**13):
        parse_flops_per_token(expr, n_params)


def resolve_flops_per_token(
    expr: str, set_by: str, case: str, case_differs: list[str] | None, active_params: int
) -> tuple[float, list[str]]:
    """(FLOPs per token for MFU, warnings). `set_by` is "case" when the value is the case
    file's own, "user" when given on the command line or by a vendor file; `case_differs`:
    how the model differs from the case's model_config ([]: it is the case's model; None: the
    case names no model)."""
    per_params = 2.0 * active_params
    value = parse_flops_per_token(expr, active_params)
    assert value is not None
    if "params" in expr:
        return value, []
    if set_by == "case" and case_differs:
        return per_params, [
            f"flops_per_token {expr} is case {case}'s, for its own model; this model differs "
            f"({'; '.join(case_differs[:3])}): MFU counts 2*params = {per_params:.4g} (2 x the "
            "active parameters) instead"
        ]
    if set_by == "case" and case_differs is not None:
        return value, []  # the case's own model
    if not 1 / FAR <= value / per_params <= FAR:
        return value, [
            f"flops_per_token {expr} = {value:.4g} is {value / per_params:.2f}x "
            f"2*params ({per_params:.4g}, 2 x the active parameters of this "
            "model): MFU may mean little (give --flops-per-token 2*params)"
        ]
    return value, []


def checked_mfu(name: str, peak: float | None, section: Pass) -> Pass:
    """An mfu_computed above 100% is a wrong peak_flops, never a figure: it counts the FLOPs
    the engine ran. (The headline MFU counts flops_per_token per token, a nominal figure that
    may exceed what ran, e.g. a small model's embeddings: results/assemble.py warns about that.)"""
    for key in ("mfu_computed",):
        value = getattr(section, key)
        if value is not None and value > 1:
            raise RunError(
                f"{name} pass: {key} would be {value:.3g}x the device's peak, "
                f"above 100%: peak_flops ({peak:.4g} FLOP/s) is wrong; fix it and "
                "`mmlubench run --resume` the run folder (its answers are recorded "
                "and are not computed again)"
            )
    return section
