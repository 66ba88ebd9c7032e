"""Apply a reduction method to a stack of blocks of an unmodified HF model.

:class:`TokenReducer` is a context manager (kvpress style): on enter it wraps
each block's ``forward`` and routes the reducing layers' attention modules
through the probe of :mod:`.attention`; on exit it restores both exactly.
:meth:`TokenReducer.forward_state` activates reduction for one encoder
forward or one whole ``generate()`` call; one :class:`ReductionState`
carries what changes as the sequence shrinks: span ids, validity (padding),
positions, the tokens each layer saw and, for decoder stacks, each layer's
cache validity. Blocks run the stock code whenever no state is active.

The block layout (which submodule is which) comes from the model adapter,
the per-layer masks and positions from a policy (:mod:`.policies`); the
engine knows pre-norm blocks, not model names:

    x = h + Attn(attn_norm(h))      # full sequence, probed if reducing
    x = reduce(x)                   # between attention and MLP (SPEC s.1)
    out = x + MLP(mlp_norm(x))      # shorter sequence; later caches shorter
"""

from __future__ import annotations

import inspect
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..reduction import (
    AnalyticFlopsBudget,
    Budget,
    BudgetError,
    CostReport,
    LayerInputs,
    ReductionMethod,
    StackSpec,
    TokenLayout,
    flops_reduction,
    realised_costs,
    sample_seed,
)
from ..reduction.ops import Reduction, segment_lengths
from .attention import AttentionProbe, DeferredReceived, install_probe, reads_sizes, remove_probe
from .mass_kernel import check_mass_kernel
from .policies import BidirectionalPolicy, CausalPolicy
from .state import ReductionState, plan_row_spans, plan_shared_span, planned_tokens, shared_span_layout

__all__ = ["BlockLayout", "ReductionState", "TokenReducer"]


@dataclass(frozen=True)
class BlockLayout:
    """How to take a pre-norm block apart; supplied by the model adapter.

    ``attention(block, normed, kwargs)`` runs the attention sublayer and
    returns its output (no residual); ``mlp(block, x)`` runs norm + MLP and
    returns its output (no residual).
    """

    attn_norm: str
    attn: str
    attention: Callable[[nn.Module, Tensor, dict], Tensor]
    mlp: Callable[[nn.Module, Tensor], Tensor]


def group_weights(received: DeferredReceived, red: Reduction, most_grouped: int | None = None) -> Tensor:
    """Merge weights ``(B, T)``: the received mass of tokens in groups of two
    or more; 1 elsewhere (a singleton's weight cancels: ``w / w == 1``).
    ``most_grouped``: a host-known bound on the grouped tokens of a row
    (then nothing is read from the device; columns past a row's count are
    fillers whose mass is computed and discarded, or, where the reduction
    knows its joined pairs, their tokens are the columns)."""
    b, t = red.shape
    pairs = red.pair_columns() if most_grouped is not None else None
    if pairs is not None:  # both tokens of each joined pair: no fillers, no read
        mass = received.at(pairs, fillers=False)
        return torch.ones(b, t, dtype=mass.dtype, device=mass.device).scatter_(1, pairs, mass)
    grouped = red.group_sizes.gather(1, red.dest.clamp_max(red.num_out - 1)) > 1
    grouped &= red.dest < red.num_out
    count = grouped.sum(1)
    # the mass is computed for the m grouped keys only: exactly m (a device read) or a bound
    m = int(count.max()) if most_grouped is None else min(t, most_grouped)
    order = torch.argsort((~grouped).to(torch.uint8), dim=1, stable=True)[:, :m]  # grouped first, ascending
    filler = torch.arange(m, device=order.device)[None] >= count[:, None]
    columns = order.masked_fill(filler, t)
    mass = received.at(columns)
    weights = torch.ones(b, t + 1, dtype=mass.dtype, device=mass.device)
    return weights.scatter_(1, columns, mass.masked_fill(filler, 1.0))[:, :t]


class TokenReducer:
    """Context manager that applies ``method`` under ``budget`` to ``blocks``."""

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        layout: BlockLayout,
        method: ReductionMethod,
        spec: StackSpec,
        budget: Budget = AnalyticFlopsBudget(),
        policy: BidirectionalPolicy | CausalPolicy | None = None,
        profile: bool = False,
        mass_kernel: str = "torch",
    ):
        """``profile=True`` accumulates the time spent matching and merging
        (not the attention) in ``machinery_s``, and the deferred received mass
        (part of the attention's cost) in ``received_s``; it synchronises the device.
        ``mass_kernel="triton"`` computes the deferred mass in one fused pass (:mod:`.mass_kernel`)."""
        self.blocks, self.layout, self.method, self.spec, self.budget = list(blocks), layout, method, spec, budget
        self.policy = policy or BidirectionalPolicy()
        if self.policy.causal != spec.causal:
            raise ValueError("the stack spec and the mask policy disagree on causality")
        self.seed = getattr(method, "seed", 0)  # random methods draw per sample from it
        self.reducing = set(method.reducing_layers(spec.num_layers)) if budget.reduces else set()
        self.profile, self.machinery_s, self.received_s = profile, 0.0, 0.0
        self.mass_kernel = check_mass_kernel(
            mass_kernel, next(self.blocks[0].parameters()).device if mass_kernel == "triton" else None)
        #: merge weights needed only inside groups: the probe may defer the received mass
        self._defer = bool(method.needs_attention and method.weights_from_attention)
        self.state: ReductionState | None = None
        self._probes: dict[int, AttentionProbe] = {}
        self._installed = False

    # -- install / remove -------------------------------------------------
    def __enter__(self) -> "TokenReducer":
        if self._installed:
            raise RuntimeError("TokenReducer is already installed")
        if self.budget.reduces and not self.method.reducing_layers(self.spec.num_layers):
            raise BudgetError(f"method {self.method.name!r} cannot reduce FLOPs; use flops=0")
        if self.method.acts_on == "kv_cache" and not self.spec.causal:
            raise ValueError(f"{self.method.name} evicts KV-cache entries: it needs a decoder stack with a cache")
        for i, block in enumerate(self.blocks):
            if i in self.reducing:
                self._probes[i] = install_probe(block.get_submodule(self.layout.attn))
                self._probes[i].mass_kernel = self.mass_kernel
            block.forward = self._wrap(i, block, block.forward)
            block._fastadasp_reducer = self  # how a compiled forward finds the active state (engine/compiled.py)
        self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        for i, block in enumerate(self.blocks):
            vars(block).pop("forward", None)  # the class forward is back
            vars(block).pop("_fastadasp_reducer", None)
            if i in self._probes:
                remove_probe(block.get_submodule(self.layout.attn))
        self._probes.clear()
        self.state, self._installed = None, False

    # -- per forward --------------------------------------------------------
    def plan(self, layouts: Sequence[TokenLayout]) -> Tensor:
        """Per-sample per-layer ratios ``(B, num_layers)`` for these samples."""
        n = self.spec.num_layers
        rows = []
        for layout in layouts:
            r = self.budget.base_ratio(self.method, self.spec, layout) if self.reducing else 0.0
            rows.append(self.method.layer_ratios(n, r) if r > 0 else [0.0] * n)
        return torch.tensor(rows, dtype=torch.float64)

    @contextmanager
    def forward_state(
        self,
        segments: Tensor,
        valid: Tensor | None = None,
        sample_keys: Sequence[str] | None = None,
    ) -> Iterator[ReductionState]:
        """Activate reduction for one encoder forward or one ``generate()``
        over a prompt laid out as ``segments (B, T)`` (span id per position,
        ``-1`` = text or padding, never touched)."""
        if not self._installed:
            raise RuntimeError("install the TokenReducer first: `with reducer, reducer.forward_state(...)`")
        b, t = segments.shape
        valid = torch.ones_like(segments, dtype=torch.bool) if valid is None else valid.bool()
        segments = torch.where(valid, segments, torch.full_like(segments, -1))
        spans = segment_lengths(segments)
        layouts = [
            TokenLayout(int(valid[i].sum() - spans[i].sum()), tuple(int(n) for n in spans[i] if n > 0))
            for i in range(b)
        ]
        keys = [str(i) for i in range(b)] if sample_keys is None else list(sample_keys)
        if len(keys) != b:
            raise ValueError(f"{len(keys)} sample keys for a batch of {b}")
        ratios = self.plan(layouts)  # a host tensor
        active = frozenset(i for i, r in enumerate(ratios.amax(0).tolist()) if r > 0) if b else frozenset()
        exact = self.method.exact_counts
        span_plan, row_plan, layout_plan = self._plan_spans(segments, valid, layouts, ratios, active)
        self.state = ReductionState(
            segments=segments,
            valid=valid,
            positions=None,  # a causal policy takes the model's own at the first layer; an encoder needs none
            ratios=ratios,
            device_ratios=ratios.to(segments.device),  # a host-to-device copy per layer would synchronise a GPU
            seeds=torch.tensor([sample_seed(self.seed, k) for k in keys], dtype=torch.long),
            align_right=self.spec.causal,  # decoder prompts are left-padded
            padded=not bool(valid.all()),
            num_segments=max(1, spans.shape[1]),
            active_layers=active,
            planned=self.plan_lengths(layouts, ratios, t, active) if exact else {},
            span_plan=span_plan,
            row_plan=row_plan,
            layout_plan=layout_plan,
            tokens=planned_tokens(layouts, ratios, segments.device) if exact else [valid.sum(1)] * (self.spec.num_layers + 1),
            tokens_planned=exact,
        )
        try:
            yield self.state
            if self.state is not None and self.state.plan_unchecked:  # the prefill ran compiled
                self._check_plan(self.state)
        finally:
            self.state = None

    @staticmethod
    def plan_lengths(
        layouts: Sequence[TokenLayout], ratios: Tensor, t: int, layers: frozenset[int]
    ) -> dict[int, tuple[int, int]]:
        """(longest, shortest) sequence after each reducing layer, for methods that
        remove exactly ``floor(n * r)`` tokens per span (``math.floor`` of the
        same float64 product the device computes). Padding and text stay; rows
        that keep fewer tokens are padded up to the longest."""
        spans = [list(layout.spans) for layout in layouts]
        plan = {}
        for layer in sorted(layers):
            out = []
            for row, r in zip(spans, ratios[:, layer].tolist()):
                cut = [math.floor(n * r) for n in row]
                row[:] = [n - c for n, c in zip(row, cut)]
                out.append(t - sum(cut))
            t = max(out)
            plan[layer] = (t, min(out))
        return plan

    def realised(self, state: ReductionState) -> list[float]:
        """Realised analytic prefill FLOPs reduction per sample."""
        tokens = torch.stack(state.tokens, dim=1).tolist()
        return [flops_reduction(self.spec, row, row[0]) for row in tokens]

    def costs(self, state: ReductionState, generated: Sequence[int], bytes_per_value: int = 2) -> list[CostReport]:
        """Prefill and decode FLOPs and KV-cache bytes per row, given how many
        tokens each row generated (the first one comes from the prefill);
        computed by :func:`fastadasp.reduction.realised_costs` from the counts in ``state``."""
        tokens = torch.stack(state.tokens, dim=1).tolist()
        cache = [row[:-1] for row in tokens]  # each layer caches the tokens it saw
        for layer, keep in state.kv_keep.items():  # prompt entries each head still attends, on average
            prompt = state.prompt_valid[layer]
            seen = keep[:, :, : prompt.shape[1]] & prompt[:, None, :]
            for row, entries in zip(cache, seen.float().sum(-1).mean(-1).tolist()):
                row[layer] = entries
        rows = len(generated)
        return realised_costs(self.spec, tokens[:rows], cache[:rows], generated, bytes_per_value)

    # -- the block wrapper ----------------------------------------------------
    def _wrap(self, index: int, block: nn.Module, original: Callable) -> Callable:
        params = list(inspect.signature(original).parameters)[1:]  # after hidden_states
        last = len(self.blocks) - 1

        def forward(hidden_states: Tensor, *args, **kwargs) -> Tensor:
            state = self.state
            if state is None:
                return original(hidden_states, *args, **kwargs)
            kwargs = {**dict(zip(params, args)), **kwargs}
            if state.mode == "decode":
                return original(hidden_states, **self.policy.decode(state, kwargs, index, hidden_states))
            if index == 0:
                self._begin_prefill(state, hidden_states)
            kwargs = self.policy.prefill(state, kwargs, index, hidden_states)
            if self.spec.causal:
                state.cache_valid[index] = state.prompt_valid[index] = state.valid  # what this layer caches
            try:
                if index not in self.reducing or index not in state.active_layers:
                    out = original(hidden_states, **kwargs)
                elif self.method.acts_on == "kv_cache":
                    out = self._kv_forward(index, original, hidden_states, kwargs, state)
                else:
                    out = self._reducing_forward(index, block, hidden_states, kwargs, state)
            finally:
                if index == last:
                    state.mode = "decode"
            if index == last and state.planned:
                if torch.compiler.is_compiling():  # a read cannot be traced: checked when the forward state closes
                    state.plan_unchecked = True
                else:
                    self._check_plan(state)
            return out

        return forward

    def _begin_prefill(self, state: ReductionState, hidden: Tensor) -> None:
        b = hidden.shape[0]
        if b != state.batch:
            if b % state.batch:
                raise ValueError(f"prefill batch {b} does not match the {state.batch} prompts of the forward state")
            state.expand(b // state.batch)
        if hidden.shape[1] != state.valid.shape[1]:
            raise ValueError(
                f"prefill of {hidden.shape[1]} tokens but the forward state describes {state.valid.shape[1]}"
            )

    def _arm(self, index: int, state: ReductionState, per_head: bool = False) -> AttentionProbe:
        probe = self._probes[index]
        query_valid = state.valid if state.padded else None
        # the policies' masks (and the stock ones they stand in for) hide padded keys and later ones only
        probe.arm(self.method.needs_keys, self.method.needs_attention, query_valid, per_head, self._defer,
                  padding_mask=True)
        return probe

    def _inputs(self, index: int, state: ReductionState, keys: Tensor | None, received: Tensor | None) -> LayerInputs:
        span = state.span_plan.get(index)
        return LayerInputs(
            keys=keys,
            attention=received,
            segments=state.segments,
            ratio=state.ratio_column(index),
            layer=index,
            seeds=state.seeds,
            align_right=state.align_right,
            num_segments=state.num_segments,
            out_lengths=state.planned.get(index),
            span=span[:2] if span else None,
            remove=span[2] if span else None,
            rows=state.row_plan.get(index),
        )

    def _reducing_forward(self, index: int, block: nn.Module, h: Tensor, kwargs: dict, state: ReductionState) -> Tensor:
        probe = self._arm(index, state)
        try:
            normed = block.get_submodule(self.layout.attn_norm)(h)
            x = h + self.layout.attention(block, normed, kwargs)
        finally:
            keys, received = probe.release()  # keys per head, (B, T, Hkv, hd)
        self._check_probe(index, keys, received)
        tick = self._clock()
        deferred = isinstance(received, DeferredReceived)
        red, weights = self.method.select(self._inputs(index, state, keys, None if deferred else received))
        if deferred:  # the attention's cost, not the machinery's: kept off the machinery clock
            pause = self._clock()
            weights = group_weights(received, red, self._most_grouped(index, state, h))
            if tick is not None:
                spent = self._clock() - pause
                self.received_s += spent
                tick += spent
        x = red.apply(x, weights)
        state.advance(index, red)
        if tick is not None:
            self.machinery_s += self._clock() - tick
        return x + self.layout.mlp(block, x)

    def _check_plan(self, state: ReductionState) -> None:
        """Once per forward (one device read): every planned layer produced the
        lengths planned on the host. A method that claims ``exact_counts`` but
        removes another number of tokens fails here, not silently."""
        layers = sorted(state.planned.keys() & state.reductions.keys())
        if not layers:
            return
        got = torch.stack([torch.stack([state.reductions[i].out_lengths.max(), state.reductions[i].out_lengths.min()])
                           for i in layers]).tolist()
        want = [list(state.planned[i]) for i in layers]
        if got != want:
            raise RuntimeError(
                f"{self.method.name}: (longest, shortest) output per reducing layer {got} differ from the host plan "
                f"{want}; the method does not remove exactly floor(n * r) tokens per span: set exact_counts = False"
            )

    def _plan_spans(self, segments: Tensor, valid: Tensor, layouts: Sequence[TokenLayout], ratios: Tensor,
                    active: frozenset[int]) -> tuple[dict, dict, dict]:
        """The host plans of span sizes (every row's span alike, or one per row) and of
        span ids and validity per layer, for methods with exact counts."""
        if not self.method.exact_counts:
            return {}, {}, {}
        spans = plan_shared_span(segments, valid, layouts, ratios, active)
        if spans:
            return spans, {}, shared_span_layout(spans, segments, valid)
        return ({}, *plan_row_spans(segments, valid, layouts, ratios, active, self.spec.causal))

    @staticmethod
    def _most_grouped(index: int, state: ReductionState, h: Tensor) -> int | None:
        """Where sizes are not read from the device (``attention.READ_SIZES_ON``), a
        bound on the tokens in groups of two or more: a group of ``s`` tokens
        removes ``s - 1``, so at most twice the most tokens any row removes."""
        if reads_sizes(h.device) or index not in state.planned:
            return None
        return 2 * (h.shape[1] - state.planned[index][1])

    def _kv_forward(self, index: int, original: Callable, h: Tensor, kwargs: dict, state: ReductionState) -> Tensor:
        """KV-cache methods (H2O): prefill unchanged, choose what decode sees."""
        probe = self._arm(index, state, per_head=True)
        try:
            out = original(h, **kwargs)
        finally:
            keys, received = probe.disarm()
        self._check_probe(index, keys, received)
        state.kv_keep[index] = self.method.select_kv(self._inputs(index, state, keys, received))
        return out

    def _check_probe(self, index: int, keys: Tensor | None, received: Tensor | None) -> None:
        if self.method.needs_keys and keys is None or self.method.needs_attention and received is None:
            raise RuntimeError(f"layer {index}: the attention probe captured nothing; does the block call its attention?")

    def _clock(self) -> float | None:
        """Wall clock for ``profile=True`` (synchronising CUDA), else None; None too while
        ``torch.compile`` traces (a clock reading would end the graph)."""
        if not self.profile or torch.compiler.is_compiling():
            return None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()
