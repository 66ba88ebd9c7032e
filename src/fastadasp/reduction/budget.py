"""From a FLOPs-reduction target to per-layer reduction ratios: budgets and their solvers.

A *schedule* is a plain value: ``"single"`` (one layer), ``"constant"`` or
``"decay"`` (every layer from the start layer on), normalised by
:func:`layer_ratios`, the one function that turns ``(schedule, start, r)``
into per-layer ratios. A *budget* chooses the base ratio ``r``: a small frozen
type per cost model, each with one :meth:`Budget.base_ratio`:

* :class:`AnalyticFlopsBudget` (``cost_model=analytic``, the default) -- the
  analytic count of :mod:`fastadasp.reduction.flops` over the sample's real
  integer token counts (``k = floor(n * r)`` per span and layer), so the
  *realised* analytic reduction meets the target. :func:`solve_ratio_flops`.
* :class:`TokenLayerBudget` (``cost_model=token_layer``) -- the authors'
  token-layer cost model (SPEC section 5): every layer costs in proportion to
  the audio tokens it processes; text ignored; attention treated as linear;
  continuous token counts. :func:`solve_ratio`.
* :class:`FixedRatio` -- the ratio itself, no cost model (Transfer Entropy).

``Budget(flops)`` builds an :class:`AnalyticFlopsBudget` (the earlier single
class; its ``model="flops"|"paper"`` spelling still works, deprecated).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from .flops import StackSpec, stack_flops

if TYPE_CHECKING:
    from .methods import ReductionMethod

__all__ = [
    "SCHEDULES",
    "SEARCHES",
    "layer_ratios",
    "token_layer_cost",
    "solve_ratio",
    "TokenLayout",
    "simulate_tokens",
    "flops_reduction",
    "solve_ratio_flops",
    "BudgetError",
    "Budget",
    "AnalyticFlopsBudget",
    "TokenLayerBudget",
    "FixedRatio",
    "COST_MODELS",
    "COST_MODEL_NAMES",
    "DEPRECATED_COST_MODEL_NAMES",
    "cost_model_name",
]

SCHEDULES = ("single", "constant", "decay")
#: how :func:`solve_ratio` searches the token-layer model: bisection, or the authors' 0.001 grid
SEARCHES = ("exact", "grid")
_R_MAX = 1.0 - 1e-9


class BudgetError(ValueError):
    """A FLOPs target that the schedule cannot reach, or a budget setting no cost model takes."""


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
    if search not in SEARCHES:
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


# -- budgets: a target and the cost model that turns it into a method's base ratio -----------------

#: the cost models by the name that metrics.json (``budget_model``) and ``configs/cost_model/`` use
COST_MODEL_NAMES = ("analytic", "token_layer")
#: earlier names of the cost models (``budget=flops`` / ``budget=paper``, ``Budget(model=...)``)
DEPRECATED_COST_MODEL_NAMES = {"flops": "analytic", "paper": "token_layer"}


def cost_model_name(name: str, setting: str) -> str:
    """The cost model's current name; an earlier name (``flops``, ``paper``) is
    accepted with a DeprecationWarning, any other is a BudgetError naming ``setting``."""
    if name in DEPRECATED_COST_MODEL_NAMES:
        new = DEPRECATED_COST_MODEL_NAMES[name]
        warnings.warn(f"{setting}={name} is deprecated: use {setting}={new}", DeprecationWarning, stacklevel=2)
        return new
    if name not in COST_MODEL_NAMES:
        raise BudgetError(f"unknown cost model {name!r} ({setting}); expected one of {', '.join(COST_MODEL_NAMES)}")
    return name


class _BudgetType(type):
    """Lets the base class build the default budget: ``Budget(0.5)`` is
    ``AnalyticFlopsBudget(0.5)`` (the README's spelling, kept working); the
    concrete types construct themselves as usual."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Budget:
            return _budget_from_settings(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class Budget(metaclass=_BudgetType):
    """What a run may spend, and how its cost is counted: a small frozen type per
    cost model (:class:`AnalyticFlopsBudget`, :class:`TokenLayerBudget`,
    :class:`FixedRatio`). The engine asks it two things, :attr:`reduces` and
    :meth:`base_ratio`, and never its name. ``Budget(flops)`` builds an
    :class:`AnalyticFlopsBudget`.

    The method says what its ratio controls (``ReductionMethod.ratio_from``):
    tokens removed through its schedule (:meth:`schedule_ratio`) or KV-cache
    entries hidden from decoding (:meth:`cache_ratio`)."""

    #: the cost model's name: metrics.json's ``budget_model``, the file in ``configs/cost_model/``
    cost_model: ClassVar[str] = "base"

    @property
    def reduces(self) -> bool:
        """Whether anything is reduced at all (the engine installs nothing otherwise)."""
        raise NotImplementedError

    @property
    def target(self) -> float:
        """The value asked for, for reports (metrics.json's ``flops_target``)."""
        raise NotImplementedError

    def base_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        """The base ratio ``r`` of ``method`` for one sample of this layout
        (per-layer ratios: ``method.layer_ratios(num_layers, r)``)."""
        if not self.reduces:
            return 0.0
        if not method.reducing_layers(spec.num_layers):
            raise BudgetError(f"method {method.name!r} cannot reduce FLOPs; use flops=0")
        return method.ratio_from(self, spec, layout)

    def schedule_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        """The ratio of a method that removes ``floor(n * r)`` tokens of every span
        at each layer of its schedule."""
        raise NotImplementedError

    def cache_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        """The ratio of a method that leaves prefill unchanged and hides that
        fraction of the audio KV-cache entries from decoding, at every layer."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The cost model and its settings (part of a run's identity)."""
        return {"cost_model": self.cost_model, **{f.name: getattr(self, f.name) for f in fields(self)}}


def _check_fraction(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise BudgetError(f"{name} must be a FLOPs-reduction fraction in [0, 1), got {value!r}")


def _eviction_ratio(method: ReductionMethod, layout: TokenLayout, flops: float, r: float) -> float:
    """``r``, the fraction of audio cache entries to evict, if the audio has that many."""
    audio = sum(layout.spans)
    if r >= 1:
        raise BudgetError(
            f"{method.name}: evicting {flops:.0%} of {layout.total} cache entries needs more than the "
            f"{audio} audio entries; the largest feasible reduction is {(audio - 1) / layout.total:.4f}"
        )
    return r


@dataclass(frozen=True)
class _FlopsTarget(Budget):
    """A FLOPs-reduction target ``flops`` in [0, 1); the cost models differ in how they count."""

    flops: float = 0.0

    def __post_init__(self) -> None:
        _check_fraction(self.flops, "flops")

    @property
    def reduces(self) -> bool:
        return self.flops > 0

    @property
    def target(self) -> float:
        return self.flops


@dataclass(frozen=True)
class AnalyticFlopsBudget(_FlopsTarget):
    """Reduce the analytic FLOPs of the reduced stack (:mod:`.flops`) by
    ``flops``: the ratio is solved per sample so that its realised reduction
    meets the target (:func:`solve_ratio_flops`). For a KV-cache method (H2O,
    prefill unchanged): evict ``flops`` of all cache entries, taken from the audio."""

    cost_model: ClassVar[str] = "analytic"

    def schedule_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        return solve_ratio_flops(spec, layout, method.schedule, method.start_layer, self.flops)

    def cache_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        return _eviction_ratio(method, layout, self.flops, self.flops * layout.total / max(sum(layout.spans), 1))


@dataclass(frozen=True)
class TokenLayerBudget(_FlopsTarget):
    """The authors' token-layer cost model (SPEC s.5): one ratio for every
    sample (:func:`solve_ratio`; ``search="grid"`` is their calculator, as the
    paper chose its ratios). For a KV-cache method (H2O) the ratio is ``flops``
    itself, the fraction of audio entries evicted (keep = 1 - reduce)."""

    search: str = "exact"
    cost_model: ClassVar[str] = "token_layer"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.search not in SEARCHES:
            raise BudgetError(f"unknown search {self.search!r} (cost_model.search); expected 'exact' or 'grid'")

    def schedule_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        return solve_ratio(spec.num_layers, method.start_layer, method.schedule, self.flops, self.search)

    def cache_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        return _eviction_ratio(method, layout, self.flops, self.flops)


@dataclass(frozen=True)
class FixedRatio(Budget):
    """A base ratio applied as is, to every sample and method; no cost model
    (Transfer Entropy compares equal merges at every layer, the last included,
    where no FLOPs target can ask for one)."""

    ratio: float = 0.5
    cost_model: ClassVar[str] = "fixed_ratio"

    def __post_init__(self) -> None:
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not 0 < self.ratio < 1:
            raise BudgetError(f"ratio must be in (0, 1), got {self.ratio!r}")

    @property
    def reduces(self) -> bool:
        return True

    @property
    def target(self) -> float:
        return self.ratio

    def schedule_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        return self.ratio

    def cache_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        return self.ratio


#: the budget type of each cost model (``configs/cost_model/<name>.yaml`` builds the same)
COST_MODELS: dict[str, type[Budget]] = {"analytic": AnalyticFlopsBudget, "token_layer": TokenLayerBudget}


def _budget_from_settings(flops: float = 0.0, model: str | None = None, search: str | None = None) -> Budget:
    """``Budget(flops, model=..., search=...)``, the earlier single class:
    ``model="flops"`` (the default) or ``"paper"``; the ``model=`` spelling is
    deprecated (build :class:`AnalyticFlopsBudget` / :class:`TokenLayerBudget`)."""
    if search is not None and search not in SEARCHES:
        raise BudgetError(f"unknown budget search {search!r} (budget.search); expected 'exact' or 'grid'")
    if model is None:
        name = "analytic"
    else:
        if model not in COST_MODEL_NAMES and model not in DEPRECATED_COST_MODEL_NAMES:
            raise BudgetError(f"unknown budget model {model!r} (budget.model); expected 'flops' or 'paper' "
                              f"(now the types AnalyticFlopsBudget and TokenLayerBudget)")
        name = DEPRECATED_COST_MODEL_NAMES.get(model, model)
        warnings.warn(f"Budget(model={model!r}) is deprecated: use {COST_MODELS[name].__name__}(flops"
                      f"{', search=...' if name == 'token_layer' else ''})", DeprecationWarning, stacklevel=3)
    if name == "token_layer":
        return TokenLayerBudget(flops, search or "exact")
    return AnalyticFlopsBudget(flops)  # the analytic model never had a search; it was only checked
