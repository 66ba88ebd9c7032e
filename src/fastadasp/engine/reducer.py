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
    BudgetError,
    LayerInputs,
    ReductionMethod,
    StackSpec,
    TokenLayout,
    decode_step_flops,
    flops_reduction,
    kv_cache_bytes,
    sample_seed,
    solve_ratio,
    solve_ratio_flops,
)
from ..reduction.ops import Reduction, segment_lengths
from .attention import AttentionProbe, DeferredReceived, install_probe, reads_sizes, remove_probe
from .policies import BidirectionalPolicy, CausalPolicy
from .state import ReductionState

__all__ = ["BlockLayout", "Budget", "ReductionState", "TokenReducer", "CostReport"]


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


@dataclass(frozen=True)
class Budget:
    """A reduction target and the model that maps it to ratios.

    ``model="flops"``: analytic FLOPs of the stack, solved per sample so the
    realised reduction meets ``flops`` (for KV-cache methods such as H2O,
    which leave prefill unchanged: the fraction of KV entries evicted).
    ``model="paper"``: the authors' token-layer model, one ratio for all
    samples (``search`` as in :func:`~fastadasp.reduction.solve_ratio`); for
    H2O the ratio is ``flops`` itself (keep = 1 - reduce).
    """

    flops: float = 0.0
    model: str = "flops"
    search: str = "exact"

    def __post_init__(self) -> None:
        # BudgetError (a ValueError): a setting no model can take, refused when the budget is built
        if self.model not in ("flops", "paper"):
            raise BudgetError(f"unknown budget model {self.model!r} (budget.model); expected 'flops' or 'paper'")
        if self.search not in ("exact", "grid"):
            raise BudgetError(f"unknown budget search {self.search!r} (budget.search); expected 'exact' or 'grid'")
        if isinstance(self.flops, bool) or not isinstance(self.flops, (int, float)) or not 0 <= self.flops < 1:
            raise BudgetError(f"flops must be a FLOPs-reduction fraction in [0, 1), got {self.flops!r}")

    def base_ratio(self, method: ReductionMethod, spec: StackSpec, layout: TokenLayout) -> float:
        if self.flops == 0:
            return 0.0
        if not method.reducing_layers(spec.num_layers):
            raise BudgetError(f"method {method.name!r} cannot reduce FLOPs; use flops=0")
        if method.acts_on == "kv_cache":
            audio = sum(layout.spans)
            r = self.flops if self.model == "paper" else self.flops * layout.total / max(audio, 1)
            if r >= 1:
                raise BudgetError(
                    f"{method.name}: evicting {self.flops:.0%} of {layout.total} cache entries needs more than the "
                    f"{audio} audio entries; the largest feasible reduction is {(audio - 1) / layout.total:.4f}"
                )
            return r
        if self.model == "paper":
            return solve_ratio(spec.num_layers, method.start_layer, method.schedule, self.flops, self.search)
        return solve_ratio_flops(spec, layout, method.schedule, method.start_layer, self.flops)


@dataclass
class CostReport:
    """Realised analytic costs of one sample (see :mod:`fastadasp.reduction.flops`).

    ``kv_bytes`` / ``kv_bytes_full``: the cache after prefill (what the
    reduction controls); ``kv_reduction_end``: the same at the end of
    generation, when the generated tokens (never reduced) are cached too.
    H2O entries are *masked*, not freed: its bytes count what decoding
    attends, not what the tensors occupy.
    """

    prefill_flops_reduction: float
    decode_flops_reduction: float
    kv_bytes_full: float
    kv_bytes: float
    kv_reduction_end: float
    tokens_per_layer: list[int]

    @property
    def kv_reduction(self) -> float:
        return 1.0 - self.kv_bytes / self.kv_bytes_full if self.kv_bytes_full else 0.0


def group_weights(received: DeferredReceived, red: Reduction, most_grouped: int | None = None) -> Tensor:
    """Merge weights ``(B, T)``: the received mass of tokens in groups of two
    or more; 1 elsewhere (a singleton's weight cancels: ``w / w == 1``).
    ``most_grouped``: a host-known bound on the grouped tokens of a row
    (then nothing is read from the device; columns past a row's count are
    fillers whose mass is computed and discarded)."""
    b, t = red.dest.shape
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
        budget: Budget = Budget(),
        policy: BidirectionalPolicy | CausalPolicy | None = None,
        profile: bool = False,
    ):
        """``profile=True`` accumulates the time spent matching and merging
        (not the attention) in ``machinery_s``, and the deferred received mass
        (part of the attention's cost) in ``received_s``; it synchronises the device."""
        self.blocks, self.layout, self.method, self.spec, self.budget = list(blocks), layout, method, spec, budget
        self.policy = policy or BidirectionalPolicy()
        if self.policy.causal != spec.causal:
            raise ValueError("the stack spec and the mask policy disagree on causality")
        self.seed = getattr(method, "seed", 0)  # random methods draw per sample from it
        self.reducing = set(method.reducing_layers(spec.num_layers)) if budget.flops > 0 else set()
        self.profile, self.machinery_s, self.received_s = profile, 0.0, 0.0
        #: merge weights needed only inside groups: the probe may defer the received mass
        self._defer = bool(method.needs_attention and method.weights_from_attention)
        self.state: ReductionState | None = None
        self._probes: dict[int, AttentionProbe] = {}
        self._installed = False

    # -- install / remove -------------------------------------------------
    def __enter__(self) -> "TokenReducer":
        if self._installed:
            raise RuntimeError("TokenReducer is already installed")
        if self.budget.flops > 0 and not self.method.reducing_layers(self.spec.num_layers):
            raise BudgetError(f"method {self.method.name!r} cannot reduce FLOPs; use flops=0")
        if self.method.acts_on == "kv_cache" and not self.spec.causal:
            raise ValueError(f"{self.method.name} evicts KV-cache entries: it needs a decoder stack with a cache")
        for i, block in enumerate(self.blocks):
            if i in self.reducing:
                self._probes[i] = install_probe(block.get_submodule(self.layout.attn))
            block.forward = self._wrap(i, block, block.forward)
        self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        for i, block in enumerate(self.blocks):
            vars(block).pop("forward", None)  # the class forward is back
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
        positions = None if self.spec.causal else (valid.long().cumsum(1) - 1).clamp_min(0)
        ratios = self.plan(layouts)  # a host tensor
        active = frozenset(i for i, r in enumerate(ratios.amax(0).tolist()) if r > 0) if b else frozenset()
        self.state = ReductionState(
            segments=segments,
            valid=valid,
            positions=positions,
            ratios=ratios,
            device_ratios=ratios.to(segments.device),  # a host-to-device copy per layer would synchronise a GPU
            seeds=torch.tensor([sample_seed(self.seed, k) for k in keys], dtype=torch.long),
            align_right=self.spec.causal,  # decoder prompts are left-padded
            padded=not bool(valid.all()),
            num_segments=max(1, spans.shape[1]),
            active_layers=active,
            planned=self.plan_lengths(layouts, ratios, t, active) if self.method.exact_counts else {},
            tokens=[valid.sum(1)] * (self.spec.num_layers + 1),
        )
        try:
            yield self.state
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
        tokens each row generated (the first one comes from the prefill)."""
        spec, n = self.spec, self.spec.num_layers
        tokens = torch.stack(state.tokens, dim=1)
        reports = []
        for i, g in enumerate(generated):
            full = int(tokens[i, 0])
            cache = [float(tokens[i, layer]) for layer in range(n)]
            for layer, keep in state.kv_keep.items():  # prompt entries each head still attends, on average
                prompt = state.prompt_valid[layer][i]
                seen = keep[i, :, : prompt.shape[0]] & prompt[None, :]
                cache[layer] = float(seen.float().sum(-1).mean())
            steps = max(g - 1, 0)
            dec_full = sum(decode_step_flops(spec, [full + s] * n) for s in range(steps))
            dec = sum(decode_step_flops(spec, [c + s for c in cache]) for s in range(steps))
            kv_full = kv_cache_bytes(spec, [full] * n, bytes_per_value)
            kv = kv_cache_bytes(spec, cache, bytes_per_value)
            end_full = kv_cache_bytes(spec, [full + steps] * n, bytes_per_value)
            end = kv_cache_bytes(spec, [c + steps for c in cache], bytes_per_value)
            reports.append(
                CostReport(
                    prefill_flops_reduction=flops_reduction(spec, tokens[i].tolist(), full),
                    decode_flops_reduction=1 - dec / dec_full if dec_full else 0.0,
                    kv_bytes_full=kv_full,
                    kv_bytes=kv,
                    kv_reduction_end=1 - end / end_full,
                    tokens_per_layer=[int(x) for x in tokens[i].tolist()],
                )
            )
        return reports

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
        probe.arm(self.method.needs_keys, self.method.needs_attention, query_valid, per_head, self._defer)
        return probe

    def _inputs(self, index: int, state: ReductionState, keys: Tensor | None, received: Tensor | None) -> LayerInputs:
        return LayerInputs(
            keys=keys,
            attention=received,
            segments=state.segments,
            ratio=state.device_ratios[:, index],
            layer=index,
            seeds=state.seeds,
            align_right=state.align_right,
            num_segments=state.num_segments,
            out_lengths=state.planned.get(index),
        )

    def _reducing_forward(self, index: int, block: nn.Module, h: Tensor, kwargs: dict, state: ReductionState) -> Tensor:
        probe = self._arm(index, state)
        try:
            normed = block.get_submodule(self.layout.attn_norm)(h)
            x = h + self.layout.attention(block, normed, kwargs)
        finally:
            keys, received = probe.disarm()
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
        if state.last_position is None:
            state.last_position = state.positions.masked_fill(~state.valid, -1).max(dim=1).values
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
        """Wall clock for ``profile=True`` (synchronising CUDA), else None."""
        if not self.profile:
            return None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()
