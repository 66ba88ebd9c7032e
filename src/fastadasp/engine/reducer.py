"""Apply a reduction method to a stack of blocks of an unmodified HF model.

:class:`TokenReducer` is a context manager (kvpress style): on enter it wraps
each block's ``forward`` and routes the reducing layers' attention modules
through the probe of :mod:`.attention`; on exit it restores both exactly.
Per forward, one :class:`ReductionState` carries what changes as the sequence
shrinks: span ids, validity (padding), original positions and the tokens
each layer saw. Blocks never reduce while no state is active, so decode steps
and unrelated forwards run the stock code.

The block layout (which submodule is which) is given by the model adapter;
the engine knows pre-norm blocks, not model names:

    x = h + Attn(attn_norm(h))      # full sequence, probed if reducing
    x = reduce(x)                   # between attention and MLP (SPEC s.1)
    out = x + MLP(mlp_norm(x))      # shorter sequence
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..reduction import (
    BudgetError,
    LayerInputs,
    ReductionMethod,
    StackSpec,
    TokenLayout,
    flops_reduction,
    sample_seed,
    solve_ratio,
    solve_ratio_flops,
)
from ..reduction.ops import Reduction, segment_lengths
from .attention import AttentionProbe, install_probe, remove_probe

__all__ = ["BlockLayout", "Budget", "ReductionState", "TokenReducer"]


@dataclass(frozen=True)
class BlockLayout:
    """How to take a pre-norm block apart; supplied by the model adapter.

    ``attention(block, normed, kwargs)`` runs the attention sublayer and
    returns its output (no residual); ``mlp(block, x)`` runs norm + MLP and
    returns its output (no residual); ``layer_kwargs(state, kwargs)`` rewrites
    the block's keyword arguments (mask, positions) for the current, possibly
    shortened, sequence.
    """

    attn_norm: str
    attn: str
    attention: Callable[[nn.Module, Tensor, dict], Tensor]
    mlp: Callable[[nn.Module, Tensor], Tensor]
    layer_kwargs: Callable[["ReductionState", dict], dict]


@dataclass(frozen=True)
class Budget:
    """A FLOPs-reduction target and the model that maps it to ratios.

    ``model="flops"``: analytic FLOPs of the stack, solved per sample so the
    realised reduction meets ``flops``. ``model="paper"``: the authors'
    token-layer model, one ratio for all samples (``search`` as in
    :func:`~fastadasp.reduction.solve_ratio`).
    """

    flops: float = 0.0
    model: str = "flops"
    search: str = "exact"

    def __post_init__(self) -> None:
        if self.model not in ("flops", "paper"):
            raise ValueError(f"unknown budget model {self.model!r}; expected 'flops' or 'paper'")

    def base_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        if self.flops == 0:
            return 0.0
        if method.name == "none" or not method.reducing_layers(spec.num_layers):
            raise BudgetError(f"method {method.name!r} cannot reduce FLOPs; use flops=0")
        if self.model == "paper":
            return solve_ratio(spec.num_layers, method.start_layer, method.schedule, self.flops, self.search)
        return solve_ratio_flops(spec, layout, method.schedule, method.start_layer, self.flops)


@dataclass
class ReductionState:
    """Per-forward state of a reducing prefill, shared by all blocks."""

    segments: Tensor  # (B, T) span id or -1
    valid: Tensor  # (B, T) bool, False = padding
    positions: Tensor  # (B, T) original position of each (group's first) token
    ratios: Tensor  # (B, num_layers) float64
    seeds: Tensor  # (B,) int64
    align_right: bool = False
    tokens: list[Tensor] = field(default_factory=list)  # tokens entering layer l, (B,)
    extra: dict = field(default_factory=dict)  # adapter-owned per-forward data (e.g. rotary cache)
    reductions: dict[int, Reduction] = field(default_factory=dict)

    @property
    def reduced(self) -> bool:
        return bool(self.reductions)

    def advance(self, layer: int, red: Reduction) -> None:
        self.segments = red.take_first(self.segments, fill=-1)
        self.valid = red.take_first(self.valid, fill=False)
        self.positions = red.take_first(self.positions, fill=0)
        self.reductions[layer] = red
        kept = self.valid.sum(1)
        for later in range(layer + 1, len(self.tokens)):
            self.tokens[later] = kept


class TokenReducer:
    """Context manager that applies ``method`` under ``budget`` to ``blocks``."""

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        layout: BlockLayout,
        method: ReductionMethod,
        spec: StackSpec,
        budget: Budget = Budget(),
        seed: int | None = None,
        profile: bool = False,
    ):
        """``profile=True`` accumulates the time spent matching and merging
        (not the attention) in ``machinery_s``; it synchronises the device."""
        self.profile, self.machinery_s = profile, 0.0
        self.blocks, self.layout, self.method, self.spec, self.budget = list(blocks), layout, method, spec, budget
        self.seed = getattr(method, "seed", 0) if seed is None else seed
        self.reducing = set(method.reducing_layers(spec.num_layers)) if budget.flops > 0 else set()
        self.state: ReductionState | None = None
        self._probes: dict[int, AttentionProbe] = {}
        self._installed = False

    # -- install / remove -------------------------------------------------
    def __enter__(self) -> "TokenReducer":
        if self._installed:
            raise RuntimeError("TokenReducer is already installed")
        if self.budget.flops > 0 and self.method.name == "none":
            raise BudgetError("method 'none' cannot reduce FLOPs; use flops=0")
        for i, block in enumerate(self.blocks):
            block.forward = self._wrap(i, block, block.forward)
            if i in self.reducing:
                self._probes[i] = install_probe(block.get_submodule(self.layout.attn))
        self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        for i, block in enumerate(self.blocks):
            del block.forward  # drops the instance attribute: the class forward is back
            if i in self._probes:
                remove_probe(block.get_submodule(self.layout.attn))
        self._probes.clear()
        self.state, self._installed = None, False

    # -- per forward --------------------------------------------------------
    def plan(self, layouts: Sequence[TokenLayout]) -> Tensor:
        """Per-sample per-layer ratios ``(B, num_layers)`` for these samples."""
        rows = []
        for layout in layouts:
            r = self.budget.base_ratio(self.method, self.spec, layout) if self.reducing else 0.0
            rows.append(self.method.layer_ratios(self.spec.num_layers, r) if r > 0 else [0.0] * self.spec.num_layers)
        return torch.tensor(rows, dtype=torch.float64)

    @contextmanager
    def forward_state(
        self,
        segments: Tensor,
        valid: Tensor | None = None,
        positions: Tensor | None = None,
        sample_keys: Sequence[str] | None = None,
        align_right: bool = False,
    ) -> Iterator[ReductionState]:
        """Activate reduction for one prefill over a sequence laid out as
        ``segments (B, T)`` (span ids, ``-1`` = untouchable)."""
        b, t = segments.shape
        valid = torch.ones_like(segments, dtype=torch.bool) if valid is None else valid
        if positions is None:
            positions = (valid.long().cumsum(1) - 1).clamp_min(0)
        spans = segment_lengths(segments)
        layouts = [
            TokenLayout(int(valid[i].sum() - spans[i].sum()), tuple(int(n) for n in spans[i] if n > 0))
            for i in range(b)
        ]
        keys = [str(i) for i in range(b)] if sample_keys is None else list(sample_keys)
        seeds = torch.tensor([sample_seed(self.seed, k) for k in keys], dtype=torch.long)
        counts = valid.sum(1)
        self.state = ReductionState(
            segments=segments,
            valid=valid,
            positions=positions,
            ratios=self.plan(layouts),
            seeds=seeds,
            align_right=align_right,
            tokens=[counts] * (self.spec.num_layers + 1),
        )
        try:
            yield self.state
        finally:
            self.state = None

    def realised(self, state: ReductionState) -> list[float]:
        """Realised analytic FLOPs reduction per sample for a finished prefill."""
        tokens = torch.stack(state.tokens, dim=1).tolist()
        return [flops_reduction(self.spec, row, row[0]) for row in tokens]

    # -- the block wrapper ----------------------------------------------------
    def _wrap(self, index: int, block: nn.Module, original: Callable) -> Callable:
        params = list(inspect.signature(original).parameters)[1:]  # after hidden_states

        def forward(hidden_states: Tensor, *args, **kwargs) -> Tensor:
            state = self.state
            if state is None:
                return original(hidden_states, *args, **kwargs)
            kwargs = {**dict(zip(params, args)), **kwargs}
            kwargs = self.layout.layer_kwargs(state, kwargs)
            if index not in self.reducing or not bool((state.ratios[:, index] > 0).any()):
                return original(hidden_states, **kwargs)
            return self._reducing_forward(index, block, hidden_states, kwargs, state)

        return forward

    def _reducing_forward(self, index: int, block: nn.Module, h: Tensor, kwargs: dict, state: ReductionState) -> Tensor:
        probe = self._probes[index]
        m = self.method
        probe.arm(m.needs_keys, m.needs_attention, None if bool(state.valid.all()) else state.valid)
        try:
            normed = block.get_submodule(self.layout.attn_norm)(h)
            x = h + self.layout.attention(block, normed, kwargs)
        finally:
            keys, received = probe.disarm()
        tick = self._clock()
        if m.needs_keys and keys is None or m.needs_attention and received is None:
            raise RuntimeError(f"layer {index}: the attention probe captured nothing; does the block call its attention?")
        red, weights = m.select(
            LayerInputs(
                keys=keys,
                attention=received,
                segments=state.segments,
                ratio=state.ratios[:, index],
                layer=index,
                seeds=state.seeds,
                align_right=state.align_right,
            )
        )
        x = red.apply(x, weights)
        state.advance(index, red)
        if tick is not None:
            self.machinery_s += self._clock() - tick
        return x + self.layout.mlp(block, x)

    def _clock(self) -> float | None:
        """Wall clock for ``profile=True`` (synchronising CUDA), else None."""
        if not self.profile:
            return None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()
