"""From a FLOPs-reduction target to per-layer reduction ratios.

A *schedule* is a plain value: ``"single"`` (one layer), ``"constant"`` or
``"decay"`` (every layer from the start layer on), normalised by
:func:`layer_ratios`, the one function that turns ``(schedule, start, r)``
into per-layer ratios. Two budget models choose the base ratio ``r``:

* ``paper`` -- the authors' token-layer cost model (SPEC section 5): every
  layer costs in proportion to the audio tokens it processes; text ignored;
  attention treated as linear; continuous token counts. :func:`solve_ratio`.
* ``flops`` -- the analytic count of :mod:`fastadasp.reduction.flops` over the
  sample's real integer token counts (``k = floor(n * r)`` per span and
  layer), so the *realised* analytic reduction meets the target.
  :func:`solve_ratio_flops`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from .flops import StackSpec, stack_flops

__all__ = [
    "SCHEDULES",
    "layer_ratios",
    "token_layer_cost",
    "solve_ratio",
    "TokenLayout",
    "simulate_tokens",
    "flops_reduction",
    "solve_ratio_flops",
    "BudgetError",
]

SCHEDULES = ("single", "constant", "decay")
_R_MAX = 1.0 - 1e-9


class BudgetError(ValueError):
    """A FLOPs target that the schedule cannot reach."""


def layer_ratios(schedule: str, num_layers: int, start_layer: int, r: float) -> list[float]:
    """Per-layer ratios of a schedule with base ratio ``r`` (SPEC section 3)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if not 0 <= start_layer < num_layers:
        raise ValueError(f"start layer {start_layer} outside a stack of {num_layers} layers")
    ratios = [0.0] * num_layers
    last = num_layers - 1
    for i in range(start_layer, num_layers):
        if schedule == "single":
            ratios[i] = r if i == start_layer else 0.0
        elif schedule == "constant":
            ratios[i] = r
        else:
            ratios[i] = r * (1 - (i - start_layer) / (last - start_layer)) if last > start_layer else r
    return ratios


def token_layer_cost(ratios: Sequence[float]) -> float:
    """Fraction of the full cost under the paper's token-layer model."""
    n, total = 1.0, 0.0
    for r in ratios:
        total += n  # the reducing layer itself counts as full
        n *= 1.0 - r
    return total / len(ratios)


def _bisect(fn: Callable[[float], float], target: float, iters: int = 60, closest: bool = False) -> float:
    """Smallest r in [0, 1) with ``fn(r) >= target`` for non-decreasing ``fn``;
      with ``closest``, whichever of that r and the largest r below the target
    lands nearer (a step function of integer token counts)."""
    lo, hi = 0.0, _R_MAX
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if fn(mid) >= target:
            hi = mid
        else:
            lo = mid
    if closest and target - fn(lo) < fn(hi) - target:
        return lo
    return hi


def solve_ratio(
    num_layers: int, start_layer: int, schedule: str, flops: float, search: str = "exact"
) -> float:
    """Base ratio ``r`` that reduces the paper's token-layer cost by ``flops``.

    ``single`` uses the closed form ``r = 1 - (N(1-m) - (L+1)) / (N-1-L)``;
    ``constant`` and ``decay`` are solved with the exact sums of SPEC section 5
    (never the authors' off-by-one decay sum). ``search="exact"`` bisects to
    machine precision; ``search="grid"`` emulates the authors' calculator:
    the first ``r`` on a 0.001 grid whose reduction is within 0.005 of the
    target. That is how the paper's constant-schedule ratios were chosen
    (e.g. 0.135, not 0.138, for L=9, m=0.5).
    """
    if search not in ("exact", "grid"):
        raise ValueError(f"unknown search {search!r}; expected 'exact' or 'grid'")
    if not 0 <= flops < 1:
        raise BudgetError(f"flops target must be in [0, 1), got {flops}")
    layer_ratios(schedule, num_layers, start_layer, 0.0)  # validates arguments
    max_m = 1 - (start_layer + 1) / num_layers
    if flops == 0:
        return 0.0
    if flops >= max_m:
        raise BudgetError(
            f"flops={flops} is not reachable with schedule {schedule!r} starting at layer {start_layer} "
            f"of {num_layers}: the largest feasible reduction is {max_m:.4f} (exclusive)"
        )
    n, start = num_layers, start_layer
    if schedule == "single":
        return 1 - (n * (1 - flops) - (start + 1)) / (n - 1 - start)
    def reduction(r: float) -> float:
        return 1 - token_layer_cost(layer_ratios(schedule, n, start, r))

    if search == "grid":
        for step in range(1000):
            if abs(reduction(step / 1000) - flops) < 0.005:
                return step / 1000
    return _bisect(reduction, flops)


@dataclass(frozen=True)
class TokenLayout:
    """Token counts of one sample: untouchable tokens plus reducible spans."""

    fixed: int
    spans: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.fixed + sum(self.spans)


def simulate_tokens(layout: TokenLayout, ratios: Sequence[float]) -> list[int]:
    """Tokens entering each layer (and leaving the last) when every reducing
    layer removes ``floor(n * r)`` tokens of every span."""
    spans = list(layout.spans)
    counts = [layout.total]
    for r in ratios:
        if r > 0:
            spans = [n - math.floor(n * r) for n in spans]
        counts.append(layout.fixed + sum(spans))
    return counts


def flops_reduction(spec: StackSpec, tokens: Sequence[float], full_tokens: float) -> float:
    """Realised analytic reduction: ``1 - FLOPs(tokens) / FLOPs(full)``."""
    full = stack_flops(spec, [full_tokens] * (spec.num_layers + 1))
    return 1.0 - stack_flops(spec, tokens) / full


def solve_ratio_flops(spec: StackSpec, layout: TokenLayout, schedule: str, start_layer: int, flops: float) -> float:
    """Base ratio whose realised analytic reduction for this sample is the
    closest reachable to ``flops``. Realised values move in steps of one
    token at one layer: under 0.001 for hundreds of audio tokens, about 0.01
    for the 50-token clips of the tiny test models."""
    if not 0 <= flops < 1:
        raise BudgetError(f"flops target must be in [0, 1), got {flops}")
    if flops == 0:
        return 0.0

    def realised(r: float) -> float:
        tokens = simulate_tokens(layout, layer_ratios(schedule, spec.num_layers, start_layer, r))
        return flops_reduction(spec, tokens, layout.total)

    best = realised(_R_MAX)
    if best < flops:
        raise BudgetError(
            f"flops={flops} is not reachable with schedule {schedule!r} starting at layer {start_layer} "
            f"for a sample with {layout.fixed} fixed and {list(layout.spans)} reducible tokens: "
            f"the largest feasible reduction is {best:.4f}"
        )
    return _bisect(realised, flops, iters=40, closest=True)
