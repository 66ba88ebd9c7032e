"""Reduction methods: one small class each, one selection function each.

A method says *where* it acts (a schedule of per-layer ratios: single layer,
constant or decay from a start layer) and *what* it does at a reducing layer
(:meth:`ReductionMethod.select`: score tokens or pairs, pick, and return a
:class:`~fastadasp.reduction.ops.Reduction` plus the merge weights). It knows
nothing about models: the engine hands it this layer's keys and received
attention over the sequence, and the span layout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .budget import SCHEDULES, Budget, BudgetError, TokenLayout, layer_ratios
from .flops import StackSpec
from .ops import (
    Reduction,
    RowSpans,
    adjacent_similarity,
    bounded_pairs,
    chain_merge,
    counts_from_ratio,
    evict,
    non_overlapping,
    pair_segments,
    row_chains,
    segment_lengths,
    segment_ranks,
    segment_topk,
    span_chains,
)

__all__ = [
    "LayerInputs",
    "ReductionMethod",
    "NoReduction",
    "FastAdaSPDense",
    "FastAdaSPSparse",
    "ATome",
    "FastV",
    "RandomMerge",
    "RandomEvict",
    "H2O",
    "MethodSettingsError",
    "sample_seed",
]


class MethodSettingsError(ValueError):
    """A method setting is invalid, or does not fit the model's reduced stack.

    Raised by the constructors (a value no model can take) and by
    :meth:`ReductionMethod.validate` (a value this model cannot take, checked
    from the stack's shapes before any weights load); the message names the
    ``method.<key>`` and says what is allowed."""


def _layer_index(value: object, key: str) -> int:
    """A layer setting: an integer >= 0 (the stack's depth is checked by ``validate``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MethodSettingsError(f"method.{key} must be a layer index (an integer >= 0), got {value!r}")
    return value


def _flag(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise MethodSettingsError(f"method.{key} must be true or false, got {value!r}")
    return value


def _seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MethodSettingsError(f"method.seed must be an integer, got {value!r}")
    return value


@dataclass
class LayerInputs:
    """What a method may look at in one reducing layer (prefill only).

    ``keys (B, T, dk)`` or per head ``(B, T, Hkv, hd)`` (the engine's: a view,
    no copy): this layer's post-RoPE keys (``None`` unless the method asks for them); ``attention (B, T)``: the
    attention mass each token receives, summed over queries and heads
    (``None`` unless asked for); ``segments (B, T)``: span id or ``-1``;
    ``ratio (B,)``: this layer's ratio per sample; ``layer``: its index;
    ``seeds (B,)``: one integer per sample, for reproducible random methods;
    ``num_segments``: the number of span ids when the caller knows it (saves
    a device-to-host read); ``out_lengths``: the longest and shortest output
    length, planned on the host by the engine for methods with
    ``exact_counts`` (the Reduction is then built without a device read).
    ``span``: ``(start, stop)`` of the one span every row shares, when every
    row has the same layout and no padding, with ``remove``: the tokens each
    row loses from it here (both planned on the host); a method may then take
    a shorter path (:func:`~fastadasp.reduction.ops.span_chains`). ``rows``: the
    same when every row has one span but the rows differ (:func:`~.ops.row_chains`).
    """

    keys: Tensor | None
    attention: Tensor | None
    segments: Tensor
    ratio: Tensor
    layer: int
    seeds: Tensor
    align_right: bool = False
    num_segments: int | None = None
    out_lengths: tuple[int, int] | None = None
    span: tuple[int, int] | None = None
    remove: int | None = None
    rows: RowSpans | None = None

    def lengths(self) -> Tensor:
        return segment_lengths(self.segments, self.num_segments)

    def counts(self, scale: float = 1.0) -> Tensor:
        """``floor(n * r * scale)`` per span, ``(B, S)``."""
        return counts_from_ratio(self.lengths(), self.ratio * scale)


def sample_seed(seed: int, sample_key: str) -> int:
    """A stable 63-bit seed per (method seed, sample), so that a sample's
    random choices do not depend on its batch or position in it."""
    digest = hashlib.sha256(f"{seed}:{sample_key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _uniform_scores(segments: Tensor, seeds: Tensor, layer: int) -> Tensor:
    """Uniform scores on reducible positions, one seeded generator per sample.

    The i-th reducible token of a sample always gets the generator's i-th
    draw, so the choice does not depend on the batch, its padding or the
    sample's position in it."""
    eligible = segments >= 0
    order = (eligible.long().cumsum(1) - 1).clamp_min(0)
    rows = []
    for s, n in zip(seeds.tolist(), eligible.sum(1).tolist()):
        g = torch.Generator().manual_seed((int(s) + 1_000_003 * layer) % (2**63 - 1))
        rows.append(torch.rand(max(int(n), 1), generator=g).to(segments.device))
    width = max(r.shape[0] for r in rows)
    draws = torch.stack([torch.nn.functional.pad(r, (0, width - r.shape[0])) for r in rows])
    return torch.where(eligible, draws.gather(1, order.clamp_max(width - 1)), torch.zeros_like(draws[:, :1]))


class ReductionMethod:
    """Base class. Subclasses set the schedule and implement :meth:`select`."""

    name: str = "base"
    #: "tokens": shortens the sequence in prefill; "kv_cache": leaves prefill
    #: unchanged and hides cache entries from decoding (:meth:`select_kv`)
    acts_on: str = "tokens"
    schedule: str = "single"
    needs_keys: bool = False
    needs_attention: bool = False
    #: the received attention serves only as merge weights, never to choose
    #: tokens: ``select`` then also works with ``attention=None`` (returning
    #: weights ``None``), and the engine may compute the mass of grouped tokens only
    weights_from_attention: bool = False
    #: first (or only) reducing layer; the budget solver assumes ``floor(n * r)``
    #: removals per span at every reducing layer
    start_layer: int = 0
    #: ``select`` removes exactly ``floor(n * r)`` tokens per span, whatever the
    #: data: the engine then plans every layer's output length on the host (no
    #: device read per layer) and checks the plan once per forward
    exact_counts: bool = False
    #: the config key that sets ``start_layer`` (``method.layer`` or ``method.start_layer``), for messages
    layer_key: str = "start_layer"

    def validate(self, spec: StackSpec) -> None:
        """Refuse settings that this model's reduced stack cannot take, from its
        shapes alone (the runner calls it before any weights load, whatever the
        FLOPs target): a KV-cache method on a stack without a KV cache, a layer
        outside the stack, a schedule the budget solver does not know. Raises
        :class:`MethodSettingsError` naming the key. Subclasses extend it."""
        n = spec.num_layers
        if self.acts_on == "kv_cache" and not spec.causal:
            raise MethodSettingsError(
                f"method {self.name!r} evicts KV-cache entries, but this model's reduced stack is a {n}-layer "
                f"encoder without a KV cache; choose a method that reduces tokens, or a speech LLM"
            )
        if not 0 <= self.start_layer < n:
            raise MethodSettingsError(
                f"method.{self.layer_key}={self.start_layer} is outside this model's reduced stack of {n} layers; "
                f"use a layer in 0..{n - 1}"
            )
        if self.schedule not in SCHEDULES:
            raise MethodSettingsError(f"{self.name}: unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")

    def layer_ratios(self, num_layers: int, r: float) -> list[float]:
        return layer_ratios(self.schedule, num_layers, self.start_layer, r)

    def reducing_layers(self, num_layers: int) -> list[int]:
        return [i for i, r in enumerate(self.layer_ratios(num_layers, 0.5)) if r > 0]

    def ratio_from(self, budget: Budget, spec: StackSpec, layout: TokenLayout) -> float:
        """The base ratio ``budget`` grants this method for one sample: here it
        removes ``floor(n * r)`` tokens per span at each layer of the schedule."""
        return budget.schedule_ratio(self, spec, layout)

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        """Return the reduction to apply at this layer and the merge weights."""
        raise NotImplementedError

    def select_kv(self, x: LayerInputs) -> Tensor:
        """KV-cache methods: ``(B, H, T)`` bool, the entries decoding may attend."""
        raise NotImplementedError(f"{self.name} does not act on the KV cache")

    def describe(self) -> dict:
        """Settings that change results (part of any cache or result key)."""
        settings = {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.startswith("needs_")}
        return settings | {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def _merge_pairs(
    x: LayerInputs, scores: Callable[[int, int], Tensor], weighted: bool, max_group: int | None = None
) -> tuple[Reduction, Tensor | None]:
    """Top-k pairs by score per span, chained, (attention-)weighted average.
    ``scores(a, b)``: the scores of the adjacent pairs of tokens ``a..b-1``;
    ``max_group``: groups of at most that many tokens (:func:`~.ops.bounded_pairs`)."""
    weights = x.attention if weighted else None
    total = x.segments.shape[1]
    if x.span is not None and x.remove is not None:  # one span shared by every row: no per-span bookkeeping
        start, stop = x.span
        most = (stop - start - 1) - (stop - start - 1) // max_group if max_group is not None else x.remove
        if x.remove > most:
            raise MethodSettingsError(
                f"method.max_group_size={max_group}: a layer cannot remove {x.remove} of a span's {stop - start} tokens "
                f"with groups of at most {max_group} tokens (at most {most}); raise max_group_size or lower flops")
        return span_chains(scores(start, stop), x.remove, start, total, max_group), weights
    if x.rows is not None:  # one span per row, the rows' sizes planned on the host
        try:
            return row_chains(scores(0, total), x.rows, max_group), weights
        except ValueError as exc:  # only max_group_size can make a planned count unreachable
            raise MethodSettingsError(f"method.{exc}") from None
    pair_seg = pair_segments(x.segments)
    if max_group is None:
        chosen = segment_topk(scores(0, total), pair_seg, x.counts(), num_segments=x.num_segments)
        return chain_merge(chosen, x.align_right, x.out_lengths), weights
    wanted = x.counts()
    chosen, got = bounded_pairs(segment_ranks(scores(0, total), pair_seg), pair_seg, wanted, max_group)
    if bool((got < wanted).any()):  # a device read, with this option only
        short = (got < wanted).nonzero()[0].tolist()
        raise MethodSettingsError(
            f"method.max_group_size={max_group}: a layer cannot remove {int(wanted[short[0], short[1]])} tokens of "
            f"span {short[1]} of row {short[0]} with groups of at most {max_group} tokens; raise max_group_size "
            "or lower flops")
    return chain_merge(chosen, x.align_right, x.out_lengths), weights


def _max_group_size(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
        raise MethodSettingsError(
            f"method.max_group_size must be null (unbounded chains, the paper's method) or an integer >= 2, got {value!r}")
    return value


def _key_similarity(x: LayerInputs) -> Callable[[int, int], Tensor]:
    """Adjacent-key cosine similarities of tokens ``a..b-1`` (the whole sequence: no slice)."""
    return lambda a, b: adjacent_similarity(x.keys if (a, b) == (0, x.keys.shape[1]) else x.keys[:, a:b])


def _evict_lowest(x: LayerInputs, scores: Tensor) -> tuple[Reduction, None]:
    drop = segment_topk(scores, x.segments, x.counts(), largest=False, num_segments=x.num_segments)
    return evict(drop, x.align_right, x.out_lengths), None


class NoReduction(ReductionMethod):
    """Full tokens: the reference every method is compared with."""

    name = "none"

    def validate(self, spec: StackSpec) -> None:
        """Nothing to check: the full model runs on any stack (``flops > 0`` is the budget's refusal)."""

    def layer_ratios(self, num_layers: int, r: float) -> list[float]:
        if r > 0:
            raise BudgetError("method 'none' cannot reduce FLOPs; use flops=0 or choose a reduction method")
        return [0.0] * num_layers

    def reducing_layers(self, num_layers: int) -> list[int]:
        return []

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        raise RuntimeError("method 'none' never reduces")


class FastAdaSPDense(ReductionMethod):
    """FastAdaSP for dense tasks (ASR, ST): weighted merge at every layer from
    ``start_layer`` with a constant or linearly decaying ratio."""

    name = "fastadasp_dense"
    needs_keys = True
    exact_counts = True

    def __init__(
        self, schedule: str = "constant", start_layer: int = 0, weighted: bool = True, max_group_size: int | None = None
    ):
        """``max_group_size``: merge groups hold at most that many tokens (chains are cut; see
        :func:`~fastadasp.reduction.ops.bounded_pairs`); None (default): unbounded, the paper's method."""
        if schedule not in ("constant", "decay"):
            raise MethodSettingsError(
                f"method.schedule must be 'constant' or 'decay' for fastadasp_dense, got {schedule!r}")
        self.schedule, self.start_layer = schedule, _layer_index(start_layer, "start_layer")
        self.weighted = _flag(weighted, "weighted")
        self.needs_attention = weighted
        self._max_group_size = _max_group_size(max_group_size)

    @property
    def weights_from_attention(self) -> bool:
        return self.weighted

    def describe(self) -> dict:
        settings = super().describe()  # unbounded (the default) keeps its earlier settings: run keys stay
        return settings if self._max_group_size is None else settings | {"max_group_size": self._max_group_size}

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        return _merge_pairs(x, _key_similarity(x), self.weighted, self._max_group_size)


class FastAdaSPSparse(ReductionMethod):
    """FastAdaSP for sparse tasks (ER, AC, SV, AQA, SQA): one weighted merge
    with a large ratio at a single layer chosen by Transfer Entropy.

    ``layer="auto"`` reads the layer from ``te_file`` (the
    ``transfer_entropy.json`` of ``scripts/transfer_entropy.py``), so a run
    records which analysis chose its layer; the file's stack depth is checked
    against the model's once the engine knows it (:meth:`layer_ratios`).
    """

    name = "fastadasp_sparse"
    needs_keys = True
    exact_counts = True
    layer_key = "layer"

    def __init__(self, layer: int | str = 9, weighted: bool = True, te_file: str | None = None,
                 max_group_size: int | None = None):
        """``max_group_size``: as for :class:`FastAdaSPDense`."""
        self._max_group_size = _max_group_size(max_group_size)
        self._te_file, self._te_layers, self._te_sha256 = None, None, None
        if layer == "auto":
            if not te_file:
                raise MethodSettingsError(
                    "fastadasp_sparse: layer=auto needs method.te_file=<path to transfer_entropy.json>")
            self._te_file = str(te_file)
            layer, self._te_layers, self._te_sha256 = _read_te_selection(self._te_file)
        elif te_file:
            raise MethodSettingsError(
                f"fastadasp_sparse: te_file={te_file!r} is only read with layer=auto (got layer={layer!r})")
        elif isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise MethodSettingsError(
                f"method.layer must be a layer index (an integer >= 0) or 'auto', got {layer!r}")
        self.start_layer, self.weighted = layer, _flag(weighted, "weighted")
        self.needs_attention = weighted

    def _check_te_depth(self, num_layers: int) -> None:
        if self._te_file and (self.start_layer >= num_layers or self._te_layers not in (None, num_layers)):
            raise MethodSettingsError(
                f"{self._te_file}: selected layer {self.start_layer} of a {self._te_layers}-layer stack, "
                f"but this model's reduced stack has {num_layers} layers: the TE file was computed for another model"
            )

    def validate(self, spec: StackSpec) -> None:
        self._check_te_depth(spec.num_layers)  # names the TE file, not method.layer, when layer=auto
        super().validate(spec)

    def layer_ratios(self, num_layers: int, r: float) -> list[float]:
        self._check_te_depth(num_layers)
        return super().layer_ratios(num_layers, r)

    def describe(self) -> dict:
        settings = super().describe()
        if self._te_file:  # an int layer keeps its old settings (resume keys of earlier runs)
            settings |= {"layer": self.start_layer, "te_file": self._te_file, "te_file_sha256": self._te_sha256}
        if self._max_group_size is not None:  # likewise unbounded chains
            settings |= {"max_group_size": self._max_group_size}
        return settings

    @property
    def weights_from_attention(self) -> bool:
        return self.weighted

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        return _merge_pairs(x, _key_similarity(x), self.weighted, self._max_group_size)


def _read_te_selection(path: str) -> tuple[int, int | None, str]:
    """(selected layer, stack depth or None, sha256) of a transfer_entropy.json."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"fastadasp_sparse: te_file {path} does not exist") from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MethodSettingsError(f"fastadasp_sparse: te_file {path} is not valid JSON ({exc})") from exc
    layer = data.get("selected_layer") if isinstance(data, dict) else None
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise MethodSettingsError(f"fastadasp_sparse: te_file {path} has no usable 'selected_layer' (got {layer!r})")
    depth = data.get("num_layers")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)):
        raise MethodSettingsError(f"fastadasp_sparse: te_file {path}: 'num_layers' must be an integer, got {depth!r}")
    return layer, depth, hashlib.sha256(raw).hexdigest()


class ATome(ReductionMethod):
    """A-ToMe (Li et al. 2023): at every layer from ``start_layer``, take the
    top ``floor(n * pair_factor * r)`` adjacent pairs by key similarity, keep
    the left-to-right non-overlapping ones and average each pair (plain mean).

    Uncapped (the paper), a layer removes between ``r*n`` and ``2r*n`` tokens,
    so the realised FLOPs depend on the audio. ``cap_to_budget`` keeps only
    the ``floor(n * r)`` most similar of those pairs, so the budget holds.
    """

    name = "atome"
    schedule = "constant"
    needs_keys = True

    def __init__(self, start_layer: int = 0, pair_factor: float = 2.0, cap_to_budget: bool = True):
        if isinstance(pair_factor, bool) or not isinstance(pair_factor, (int, float)) or not pair_factor > 0:
            raise MethodSettingsError(f"method.pair_factor must be a number > 0, got {pair_factor!r}")
        self.start_layer, self.pair_factor = _layer_index(start_layer, "start_layer"), pair_factor
        self.cap_to_budget = _flag(cap_to_budget, "cap_to_budget")

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        sim = adjacent_similarity(x.keys)
        pair_seg = pair_segments(x.segments)
        candidates = segment_topk(sim, pair_seg, x.counts(self.pair_factor))
        chosen = non_overlapping(candidates)
        if self.cap_to_budget:
            kept_seg = torch.where(chosen, pair_seg, torch.full_like(pair_seg, -1))
            chosen = segment_topk(sim, kept_seg, x.counts())
        return chain_merge(chosen, x.align_right), None


class FastV(ReductionMethod):
    """FastV (Chen et al. 2024) as the paper ran it: at one layer, drop the
    tokens that receive the least attention."""

    name = "fastv"
    needs_attention = True
    exact_counts = True
    layer_key = "layer"

    def __init__(self, layer: int = 9):
        self.start_layer = _layer_index(layer, "layer")

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        return _evict_lowest(x, x.attention)


class RandomMerge(ReductionMethod):
    """Random Merge: FastAdaSP's chaining and attention-weighted average at
    one layer, with the pairs drawn uniformly at random (seeded per sample)."""

    name = "random_merge"
    needs_attention = True
    weights_from_attention = True
    exact_counts = True
    layer_key = "layer"

    def __init__(self, layer: int = 9, seed: int = 0):
        self.start_layer, self.seed = _layer_index(layer, "layer"), _seed(seed)

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        scores = _uniform_scores(x.segments, x.seeds, x.layer)[:, :-1]  # pair t scored by its left token
        return _merge_pairs(x, lambda a, b: scores[:, a : b - 1], True)


class RandomEvict(ReductionMethod):
    """Random Evict: drop tokens chosen uniformly at random at one layer
    (seeded per sample)."""

    name = "random_evict"
    exact_counts = True
    layer_key = "layer"

    def __init__(self, layer: int = 9, seed: int = 0):
        self.start_layer, self.seed = _layer_index(layer, "layer"), _seed(seed)

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        return _evict_lowest(x, _uniform_scores(x.segments, x.seeds, x.layer))


def _evictions_per_span(x: LayerInputs) -> Tensor:
    """``round(r * n_audio)`` evictions per sample spread over its spans by
    largest remainder, so a sample's total hits the target to one entry."""
    lengths = x.lengths().double()
    total = lengths.sum(1, keepdim=True)
    want = torch.round(x.ratio.to(total.device, torch.float64)[:, None] * total)  # ratios are planned on the host
    share = want * lengths / total.clamp_min(1)
    base = share.floor()
    left = (want - base.sum(1, keepdim=True)).long()
    order = torch.argsort(share - base, dim=1, descending=True, stable=True)
    bonus = torch.zeros_like(base).scatter_(1, order, (torch.arange(base.shape[1], device=base.device)[None] < left).double())
    return torch.minimum(base + bonus, (lengths - 1).clamp_min(0)).long()


class H2O(ReductionMethod):
    """H2O (Zhang et al. 2023) as the paper ran it: at every layer, per head,
    sum the attention each key receives in prefill; decoding then attends to
    all non-audio keys plus the heaviest audio keys, the others are masked.
    Prefill compute is unchanged; ``ratio`` is the fraction of audio entries
    evicted (the authors' code took a keep fraction: keep = 1 - ratio)."""

    name = "h2o"
    acts_on = "kv_cache"
    schedule = "constant"
    needs_attention = True

    def __init__(self, start_layer: int = 0):
        self.start_layer = _layer_index(start_layer, "start_layer")

    def ratio_from(self, budget: Budget, spec: StackSpec, layout: TokenLayout) -> float:
        """The ratio is the fraction of audio cache entries evicted, at every layer."""
        return budget.cache_ratio(self, spec, layout)

    def select(self, x: LayerInputs) -> tuple[Reduction, Tensor | None]:
        raise RuntimeError("h2o acts on the KV cache, not on prefill tokens")

    def select_kv(self, x: LayerInputs) -> Tensor:
        b, h, t = x.attention.shape
        k = _evictions_per_span(x)
        flat_scores = x.attention.reshape(b * h, t)
        flat_segments = x.segments.repeat_interleave(h, dim=0)
        drop = segment_topk(flat_scores, flat_segments, k.repeat_interleave(h, dim=0), largest=False)
        return ~drop.view(b, h, t)
