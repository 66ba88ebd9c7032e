"""Token-reduction operators: pure, vectorised torch, no model knowledge.

Every operator works on a batch of sequences of length ``T`` in which some
positions are *reducible*. ``segments (B, T)`` holds, per position, the index
of the reducible span it belongs to (an audio clip or a 30 s window) or ``-1``
for positions that must never be touched (text, padding). Nothing merges
across a span boundary.

Like ToMe's ``merge.py``, the matching is computed once and returned as a
:class:`Reduction`, a vectorised map "input position -> output slot" that can
be applied to any tensor laid out as ``(B, T, ...)``: the hidden states, the
positions, the validity mask. There are no per-token Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = [
    "Reduction",
    "SpanChains",
    "span_chains",
    "RowSpans",
    "RowChains",
    "row_chains",
    "segment_lengths",
    "counts_from_ratio",
    "segment_topk",
    "segment_ranks",
    "bounded_pairs",
    "adjacent_similarity",
    "pair_segments",
    "chain_merge",
    "evict",
    "non_overlapping",
    "weighted_merge",
]


@dataclass
class Reduction:
    """A computed token reduction, applicable to any ``(B, T, ...)`` tensor.

    ``dest[b, t]`` is the output slot of input position ``t``, or ``T_out``
    (a dump slot that is cut away) when the token is dropped. Tokens sharing
    a slot form one merge group. ``first[b, s]`` is the input index of the
    first token of slot ``s`` (the group's representative), and ``filled``
    marks slots that hold a token (others are padding when samples in a batch
    keep different numbers of tokens).
    """

    dest: Tensor  # (B, T) long
    out_lengths: Tensor  # (B,) long, tokens kept per sample
    num_out: int  # T_out = max(out_lengths)
    first: Tensor  # (B, T_out) long
    filled: Tensor  # (B, T_out) bool
    group_sizes: Tensor  # (B, T_out) long (0 for padding slots)
    uniform: bool = True  # every sample keeps the same number of slots (no new padding)

    @property
    def removed(self) -> Tensor:
        """Tokens removed per sample, ``(B,)``."""
        return self.dest.shape[1] - self.out_lengths

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, T)``: the inputs this reduction applies to."""
        return tuple(self.dest.shape)

    def apply(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """Reduce ``x (B, T, ...)``: each group becomes its weighted mean.

        ``weights (B, T)`` default to 1 (plain mean). Weights are normalised
        inside each group *before* the sum, so a singleton's weight is exactly
        ``w / w == 1`` and singletons pass through bit-exactly; a group whose
        weights are all zero (padding receives no attention) takes the mean.
        """
        b, t = self.dest.shape
        if x.shape[:2] != (b, t):
            raise ValueError(f"expected a tensor of shape ({b}, {t}, ...), got {tuple(x.shape)}")
        tail = x.shape[2:]
        out = x.new_zeros((b * (self.num_out + 1), *tail))
        sizes = torch.cat([self.group_sizes, self.group_sizes.new_ones(b, 1)], dim=1)
        mean = 1.0 / sizes.gather(1, self.dest).clamp_min(1).to(x.dtype)
        if weights is None:
            norm = mean
        else:  # a group whose weights are all zero (e.g. padding) falls back to the mean
            w = weights.to(x.dtype)
            wsum = w.new_zeros(b, self.num_out + 1).scatter_add_(1, self.dest, w).gather(1, self.dest)
            norm = torch.where(wsum > 0, w / wsum.masked_fill(wsum == 0, 1), mean)
        norm = norm.view(b, t, *([1] * len(tail)))
        # one flat index_add_ (a row per token), several times faster than scatter_add_ over every element
        flat = (self.dest + torch.arange(b, device=x.device)[:, None] * (self.num_out + 1)).view(-1)
        out.index_add_(0, flat, (x * norm).reshape(b * t, *tail))
        return out.view(b, self.num_out + 1, *tail)[:, : self.num_out]

    def take_first(self, x: Tensor, fill: float | int | bool | None = 0) -> Tensor:
        """Per output slot, the value of the group's first token (positions,
        segment ids, validity); ``fill`` in padding slots (``None``: whatever the
        gather gives, for values nothing reads there). A tensor shared by the rows
        (batch dimension 1, as rotary embeddings may be) is taken per row."""
        b = self.first.shape[0]
        x = x if x.shape[0] == b else x.expand(b, *x.shape[1:])
        idx = self.first.view(b, self.num_out, *([1] * (x.dim() - 2))).expand(b, self.num_out, *x.shape[2:])
        out = x.gather(1, idx)
        if fill is None:
            return out
        mask = self.filled.view(b, self.num_out, *([1] * (x.dim() - 2)))
        return torch.where(mask, out, fill)  # a Python scalar: no host-to-device copy

    def pair_columns(self) -> Tensor | None:
        """Both tokens of every joined pair ``(B, 2 * pairs)``, when known without a
        device read (:class:`SpanChains`); ``None`` here."""
        return None


class SpanChains(Reduction):
    """A chain merge inside the one span ``[start, start + n)`` that every row
    shares (the same layout, no padding), with every size known on the host.

    The ``remove`` best adjacent pairs of the span join: ``order`` lists the
    span's pairs best first, ``group_ids (B, T)`` numbers each token's group
    from 1 (the running count of group starts). Nothing is read from the
    device, and the other :class:`Reduction` fields are computed only if asked
    for. Built by :func:`span_chains`; :meth:`apply` sums each group's tokens
    and weights in one ``index_add_`` (a handful of launches on a GPU)."""

    def __init__(self, group_ids: Tensor, order: Tensor, remove: int, start: int, num_out: int,
                 starts: Tensor | None = None):
        self.group_ids, self.order, self.remove, self.start, self.num_out = group_ids, order, remove, start, num_out
        self.starts = starts  # (B, T) bool where the joined pairs are not the ``remove`` best (bounded groups)
        self._flat: Tensor | None = None
        self._first: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.group_ids.shape)

    @property
    def dest(self) -> Tensor:
        return self.group_ids - 1

    def _flat_dest(self) -> Tensor:
        """Output row of each token in the ``(B * num_out)`` rows of the flattened output."""
        if self._flat is None:
            b = self.group_ids.shape[0]
            if b == 1:
                self._flat = self.group_ids.view(-1) - 1
            else:
                offsets = torch.arange(b, device=self.group_ids.device)[:, None] * self.num_out - 1
                self._flat = (self.group_ids + offsets).view(-1)
        return self._flat

    @property
    def out_lengths(self) -> Tensor:
        return torch.full((self.group_ids.shape[0],), self.num_out, dtype=torch.long, device=self.group_ids.device)

    @property
    def first(self) -> Tensor:
        first = self._first_index()
        return first[None] if first.dim() == 1 else first

    def _first_index(self) -> Tensor:
        """Where each group starts: the first token whose running count reaches the
        group's number; ``(num_out,)`` for one row, else ``(B, num_out)``."""
        if self._first is None:
            b = self.group_ids.shape[0]
            if b == 1:  # (the flat output rows are the group numbers less one)
                self._first = torch.searchsorted(self._flat_dest(), torch.arange(self.num_out, device=self._flat.device))
            else:
                wanted = torch.arange(1, self.num_out + 1, device=self.group_ids.device)
                self._first = torch.searchsorted(self.group_ids, wanted.repeat(b, 1))
        return self._first

    @property
    def filled(self) -> Tensor:
        return torch.ones(self.group_ids.shape[0], self.num_out, dtype=torch.bool, device=self.group_ids.device)

    @property
    def group_sizes(self) -> Tensor:
        dest = self.dest
        return dest.new_zeros(dest.shape[0], self.num_out).scatter_add_(1, dest, torch.ones_like(dest))

    def apply(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """Each group's weighted mean, as :meth:`Reduction.apply` computes it
        (weights normalised inside the group before the sum; singletons pass
        through exactly; a group whose weights are all 0 takes the mean), with one
        ``index_add_`` for the groups' weight sums and one for the tokens; without
        weights, each group's sum over its size."""
        b, t, d = x.shape
        if (b, t) != tuple(self.group_ids.shape):
            raise ValueError(f"expected a tensor of shape ({b}, {t}, ...), got {tuple(x.shape)}")
        flat = self._flat_dest()
        rows = b * self.num_out
        out = x.new_zeros(b, self.num_out, d)
        if weights is None:  # sum, then divide by the size
            size = x.new_zeros(rows).index_add_(0, flat, x.new_ones(b * t))
            self._add(out, flat, x)
            return out.div_(self._sizes(size).view(b, self.num_out, 1))
        # a weight of 0 counts as the smallest normal one: a token alone keeps its value (w / w = 1),
        # a group of only such tokens takes the plain mean, as Reduction.apply falls back to
        w = (weights if weights.dtype == x.dtype else weights.to(x.dtype)).clamp_min(torch.finfo(x.dtype).tiny)
        if b == 1:
            share = w.new_zeros(1, self.num_out).index_add_(1, flat, w).index_select(1, flat)
        else:
            share = w.new_zeros(rows).index_add_(0, flat, w.reshape(-1)).index_select(0, flat).view(b, t)
        self._add(out, flat, x * (w / share).unsqueeze(-1))
        return out

    def _add(self, out: Tensor, flat: Tensor, src: Tensor) -> None:
        b, t, d = src.shape
        if b == 1:
            out.index_add_(1, flat, src)
        else:  # one flat index_add_: a row per token
            out.view(b * self.num_out, d).index_add_(0, flat, src.reshape(b * t, d))

    def _sizes(self, size: Tensor) -> Tensor:
        return size  # every slot holds a token

    def take_first(self, x: Tensor, fill: float | int | bool | None = 0) -> Tensor:
        """Per output slot, the value of the group's first token (every slot is filled).
        A tensor shared by the rows (batch dimension 1, as rotary embeddings may be) is
        taken per row."""
        b = self.group_ids.shape[0]
        if b == 1:
            return x.index_select(1, self._first_index())
        x = x.expand(b, *x.shape[1:])
        idx = self.first.view(b, self.num_out, *([1] * (x.dim() - 2))).expand(b, self.num_out, *x.shape[2:])
        return x.gather(1, idx)

    def pair_columns(self) -> Tensor:
        """Both tokens of every joined pair, ``(B, 2 * remove)``, in no particular
        order: a token inside a chain comes twice. Every grouped token is among them
        (a row that joins fewer pairs than the most adds some others: their weights
        are their own mass, which a singleton's average cancels)."""
        if self.starts is None:
            left = self.order[:, : self.remove] + self.start if self.start else self.order[:, : self.remove]
        else:  # a token that does not start a group joins the one before: (that token - 1, that token);
            # a row that joins fewer than ``remove`` pairs (rows differ) ends with tokens that start groups
            left = (torch.argsort(self.starts.to(torch.uint8), dim=1, stable=True)[:, : self.remove] - 1).clamp_min_(0)
        return torch.cat([left, left + 1], 1)


def span_chains(scores: Tensor, remove: int, start: int, total: int, max_group: int | None = None) -> SpanChains:
    """Join the ``remove`` best of the adjacent pairs of one span ``[start, start +
    n)`` shared by every row of a ``total``-token sequence; ``scores (B, n - 1)``
    score pair ``p`` (tokens ``start + p`` and ``start + p + 1``). Ties go to the
    earlier pair, as in :func:`segment_topk`; chains form as in :func:`chain_merge`.
    ``max_group``: groups hold at most that many tokens (:func:`bounded_pairs`)."""
    n = scores.shape[1] + 1
    if not 0 <= remove < n:
        raise ValueError(f"cannot remove {remove} tokens from a span of {n}")
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    rank = torch.argsort(order, dim=1)
    if max_group is None:
        starts = rank >= remove  # pair p not chosen: its right token starts a group
    else:
        most = (n - 1) - (n - 1) // max_group
        if remove > most:
            raise ValueError(f"max_group_size={max_group}: cannot remove {remove} of a span's {n} tokens in one layer "
                             f"(groups of at most {max_group} tokens remove at most {most}); raise max_group_size "
                             "or lower flops")
        joined, _ = bounded_pairs(rank, torch.zeros_like(rank), torch.full_like(rank[:, :1], remove), max_group)
        starts = ~joined
    starts = torch.nn.functional.pad(starts, (start + 1, total - start - n), value=True)
    return SpanChains(starts.cumsum(1), order, remove, start, total - remove, None if max_group is None else starts)


@dataclass
class RowSpans:
    """One reducing layer's sizes when every row holds one span (the rows' spans may
    differ in place and length; padding and text around them), planned on the host.

    Integers: ``total`` tokens in, ``num_out`` out (the longest row), ``most`` tokens
    any row removes. Tensors: ``outside (B, total - 1)`` the pairs not inside the
    row's span, ``remove (B, 1)`` tokens per row, ``base (B, 1)`` (the row's first
    slot in the flattened output, less one), ``wanted (B, num_out)`` (the group
    number each slot holds, from 1; less where the slot is padding), ``filled
    (B, num_out)`` (the slot holds a token) and ``lengths (B,)`` (slots filled).
    Rows that keep fewer tokens get padding slots before their tokens
    (``align_right``) or after them."""

    total: int
    num_out: int
    most: int
    align_right: bool
    uniform: bool
    outside: Tensor
    remove: Tensor
    base: Tensor
    wanted: Tensor
    filled: Tensor
    lengths: Tensor

    def repeat(self, times: int) -> "RowSpans":
        """Every row ``times`` times in a row (beam search's copies)."""
        b = self.remove.shape[0]
        first_slot = torch.arange(b, device=self.base.device)[:, None] * self.num_out
        copies = torch.arange(b * times, device=self.base.device)[:, None] * self.num_out
        twice = {name: getattr(self, name).repeat_interleave(times, 0)
                 for name in ("outside", "remove", "wanted", "filled", "lengths")}
        return replace(self, base=(self.base - first_slot).repeat_interleave(times, 0) + copies, **twice)


class RowChains(SpanChains):
    """:class:`SpanChains` for rows whose spans differ (a padded batch): each row joins
    its own ``remove`` best pairs (:func:`row_chains`)."""

    def __init__(self, group_ids: Tensor, order: Tensor, rows: RowSpans):
        super().__init__(group_ids, order, rows.most, 0, rows.num_out)
        self.rows = rows
        self.uniform = rows.uniform
        self._idx: dict[tuple[int, ...], Tensor] = {}

    @property
    def out_lengths(self) -> Tensor:
        return self.rows.lengths

    @property
    def filled(self) -> Tensor:
        return self.rows.filled

    def _flat_dest(self) -> Tensor:
        if self._flat is None:
            self._flat = (self.group_ids + self.rows.base).view(-1)
        return self._flat

    def _first_index(self) -> Tensor:
        if self._first is None:  # a padding slot asks for group <= 0 or past the last: token 0 or clamped
            self._first = torch.searchsorted(self.group_ids, self.rows.wanted).clamp_max_(self.rows.total - 1)
        return self._first

    @property
    def dest(self) -> Tensor:
        rows = torch.arange(self.group_ids.shape[0], device=self.group_ids.device)[:, None]
        return self.group_ids + (self.rows.base - rows * self.num_out)

    def _sizes(self, size: Tensor) -> Tensor:
        return size.clamp_min(1)  # a padding slot holds nothing: it stays 0

    def take_first(self, x: Tensor, fill: float | int | bool | None = 0) -> Tensor:
        """Per output slot, the value of the group's first token; ``fill`` in padding
        slots (``None``: what the gather gives, for values no token reads)."""
        b = self.group_ids.shape[0]
        x = x if x.shape[0] == b else x.expand(b, *x.shape[1:])
        idx = self._first_index()
        if x.dim() > 2:  # one index per slot, spread over the trailing dimensions (shared by same-shaped x)
            idx = self._idx.get(x.shape[2:])
            if idx is None:
                idx = self._idx[x.shape[2:]] = self._first_index().view(b, self.num_out, *([1] * (x.dim() - 2))).expand(
                    b, self.num_out, *x.shape[2:])
        out = x.gather(1, idx)
        if fill is None:
            return out
        mask = self.rows.filled if x.dim() == 2 else self.rows.filled.view(b, self.num_out, *([1] * (x.dim() - 2)))
        return torch.where(mask, out, fill)


def row_chains(scores: Tensor, rows: RowSpans, max_group: int | None = None) -> RowChains:
    """:func:`span_chains` for one span per row: ``scores (B, T - 1)`` of every
    adjacent pair; pairs outside a row's span are never joined."""
    scores = scores if scores.dtype == torch.float32 else scores.float()
    order = torch.argsort(scores.masked_fill(rows.outside, float("-inf")), dim=1, descending=True, stable=True)
    rank = torch.argsort(order, dim=1)  # pairs outside the span rank after every pair inside
    if max_group is None:
        starts = rank >= rows.remove
    else:
        segments = torch.where(rows.outside, -1, 0)
        joined, got = bounded_pairs(torch.where(rows.outside, scores.shape[1], rank), segments, rows.remove, max_group)
        if bool((got < rows.remove).any()):  # a device read, with this option only
            raise ValueError(f"max_group_size={max_group}: a row cannot remove its tokens with groups of at most "
                             f"{max_group} tokens; raise max_group_size or lower flops")
        starts = ~joined
    starts = torch.nn.functional.pad(starts, (1, 0), value=True)
    chains = RowChains(starts.cumsum(1), order, rows)
    if max_group is not None:
        chains.starts = starts
    return chains


def segment_ranks(scores: Tensor, segments: Tensor, largest: bool = True) -> Tensor:
    """Each eligible position's rank inside its span by score (0 = best; ties to
    the earlier position, as :func:`segment_topk` breaks them); ``M`` elsewhere."""
    b, m = scores.shape
    fill = float("-inf") if largest else float("inf")
    order = torch.argsort(scores.float().masked_fill(segments < 0, fill), dim=1, descending=largest, stable=True)
    order = order.gather(1, torch.argsort(segments.gather(1, order), dim=1, stable=True))  # spans together
    seg_sorted = segments.gather(1, order)
    pos = torch.arange(m, device=scores.device).expand(b, m)
    starts = torch.ones_like(seg_sorted, dtype=torch.bool)
    starts[:, 1:] = seg_sorted[:, 1:] != seg_sorted[:, :-1]
    rank = pos - torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=1).values
    rank = torch.where(seg_sorted >= 0, rank, torch.full_like(rank, m))
    return torch.empty_like(rank).scatter_(1, order, rank)


def bounded_pairs(rank: Tensor, pair_segments: Tensor, k: Tensor, max_group: int) -> tuple[Tensor, Tensor]:
    """FastAdaSP's pair selection with groups of at most ``max_group`` tokens.

    ``rank (B, P)``: each pair's rank by score inside its span (``pair_segments``,
    ``-1`` = not a pair of one span); ``k (B, S)``: pairs (tokens) to remove per
    span. The ``j`` best pairs of a span are taken, and every run of consecutive
    taken pairs is cut into groups of ``max_group`` tokens from its left end (its
    ``max_group``-th, ``2 * max_group``-th, ... pair is dropped). What is left
    grows by at most one pair as ``j`` grows, so the smallest ``j`` that leaves
    ``k`` pairs leaves exactly ``k``; a binary search over ``j`` finds it, every
    span at once. Returns the pairs left ``(B, P)`` bool and how many each span
    got ``(B, S)``: fewer than ``k`` only where ``k`` exceeds what groups of
    ``max_group`` allow (``P_s - P_s // max_group`` of a span's ``P_s`` pairs)."""
    if max_group < 2:
        raise ValueError(f"max_group_size must be at least 2 (a group of one merges nothing), got {max_group}")
    b, p = rank.shape
    span = pair_segments.clamp_min(0)
    eligible = pair_segments >= 0
    pos = torch.arange(p, device=rank.device).expand(b, p)
    pairs = torch.zeros_like(k).scatter_add_(1, span, eligible.long())

    def left(j: Tensor) -> tuple[Tensor, Tensor]:
        taken = eligible & (rank < j.gather(1, span))
        first = taken.clone()
        first[:, 1:] &= ~taken[:, :-1]  # a run starts here
        run_start = torch.where(first, pos, torch.zeros_like(pos)).cummax(dim=1).values
        kept = taken & ((pos - run_start + 1) % max_group != 0)
        return kept, torch.zeros_like(k).scatter_add_(1, span, kept.long())

    lo, hi = k.clone(), torch.maximum(pairs, k)
    for _ in range(max(1, p).bit_length()):  # ceil(log2(P + 1)) halvings close every interval
        mid = (lo + hi) // 2
        enough = left(mid)[1] >= k
        hi, lo = torch.where(enough, mid, hi), torch.where(enough, lo, mid + 1)
    return left(hi)


def segment_lengths(segments: Tensor, num_segments: int | None = None) -> Tensor:
    """Tokens per span, ``(B, S)``."""
    s = int(segments.max().item()) + 1 if num_segments is None else num_segments
    s = max(s, 1)
    ones = (segments >= 0).long()
    return ones.new_zeros(segments.shape[0], s + 1).scatter_add_(1, (segments + 1).clamp_min(0), ones)[:, 1:]


def counts_from_ratio(lengths: Tensor, ratio: Tensor | float) -> Tensor:
    """``k = floor(n * r)`` per span, in float64 so it equals Python's
    ``math.floor(n * r)`` used by the budget solver."""
    if isinstance(ratio, Tensor):  # the engine hands its per-forward device copy: no copy here
        r = ratio.to(lengths.device, torch.float64)
    else:
        r = torch.as_tensor(ratio, dtype=torch.float64, device=lengths.device)
    if r.dim() == 1:
        r = r[:, None]
    return torch.floor(lengths.double() * r).long()


def segment_topk(
    scores: Tensor, segments: Tensor, k: Tensor, largest: bool = True, num_segments: int | None = None
) -> Tensor:
    """Mark the ``k[b, s]`` best-scoring eligible positions of every span.

    ``scores (B, M)``, ``segments (B, M)`` (``-1`` = not eligible), ``k (B, S)``.
    Ties go to the earlier position (stable sorts). Returns ``(B, M)`` bool.
    ``num_segments=1`` (known to the caller: a single span) skips the sort
    that groups the spans.
    """
    b, m = scores.shape
    if m == 0:
        return torch.zeros_like(segments, dtype=torch.bool)
    fill = float("-inf") if largest else float("inf")
    s = scores.float().masked_fill(segments < 0, fill)
    order = torch.argsort(s, dim=1, descending=largest, stable=True)
    if num_segments == 1 and k.shape[1] == 1:  # rank = eligible positions before, in score order
        eligible = segments.gather(1, order) >= 0
        chosen = eligible & (eligible.long().cumsum(1) <= k)
        return torch.zeros_like(chosen).scatter_(1, order, chosen)
    # second stable sort groups each span together, keeping score order inside
    order = order.gather(1, torch.argsort(segments.gather(1, order), dim=1, stable=True))
    seg_sorted = segments.gather(1, order)
    pos = torch.arange(m, device=scores.device).expand(b, m)
    starts = torch.ones_like(seg_sorted, dtype=torch.bool)
    starts[:, 1:] = seg_sorted[:, 1:] != seg_sorted[:, :-1]
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=1).values
    rank = pos - first
    kk = k.gather(1, seg_sorted.clamp_min(0)) if k.shape[1] > 0 else torch.zeros_like(rank)
    chosen = (seg_sorted >= 0) & (rank < kk)
    return torch.zeros_like(chosen).scatter_(1, order, chosen)


def pair_segments(segments: Tensor) -> Tensor:
    """Span id of each adjacent pair ``(t, t+1)``, ``-1`` when the two tokens
    are not in the same span. Shape ``(B, T-1)``."""
    left, right = segments[:, :-1], segments[:, 1:]
    return torch.where((left >= 0) & (left == right), left, torch.full_like(left, -1))


def adjacent_similarity(keys: Tensor) -> Tensor:
    """Cosine similarity of adjacent tokens' keys: ``(B, T, dk) -> (B, T-1)``;
    keys per head ``(B, T, H, hd)`` count as their heads concatenated."""
    k = keys if keys.dtype == torch.float32 else keys.float()
    if k.shape[1] < 2:
        return k.new_zeros(k.shape[0], 0)
    if k.dim() > 3:  # heads side by side: a view where a token's heads lie together, else one copy
        k = k.reshape(k.shape[0], k.shape[1], -1)  # (reductions over a strided layout run ~1.5x slower)
    norms = torch.linalg.vector_norm(k, dim=-1).clamp_min(1e-12)  # as F.normalize's eps
    # each pair as a length-2 window (a view): one product and sum per pair and one division,
    # no normalised copy of the keys; the same arithmetic as a dot product of the two slices
    return k.unfold(1, 2, 1).prod(-1).sum(-1) / norms.unfold(1, 2, 1).prod(-1)


def non_overlapping(candidates: Tensor) -> Tensor:
    """Left-to-right non-overlapping subset of candidate pairs (A-ToMe).

    Pair ``t`` joins tokens ``t`` and ``t+1``, so pairs ``t`` and ``t+1``
    overlap. Inside each run of consecutive candidates, the 1st, 3rd, 5th...
    pair is kept, which is exactly what a greedy left-to-right scan keeps.
    """
    b, m = candidates.shape
    pos = torch.arange(m, device=candidates.device).expand(b, m)
    prev = torch.zeros_like(candidates)
    prev[:, 1:] = candidates[:, :-1]
    run_start = candidates & ~prev
    start_pos = torch.where(run_start, pos, torch.zeros_like(pos)).cummax(dim=1).values
    return candidates & ((pos - start_pos) % 2 == 0)


def _build(join_prev: Tensor, drop: Tensor, align_right: bool, lengths: tuple[int, int] | None = None) -> Reduction:
    """Turn per-token decisions into a :class:`Reduction`.

    ``join_prev[b, t]``: token ``t`` joins the group of token ``t-1``;
    ``drop[b, t]``: token ``t`` disappears. ``lengths``: the longest and
    shortest output length when the caller knows them (planned on the host);
    otherwise they are read from the device.
    """
    b, t = join_prev.shape
    starts = ~join_prev & ~drop
    slot = starts.long().cumsum(dim=1) - 1
    out_lengths = starts.sum(dim=1)
    if lengths is not None:
        num_out, fewest = lengths
    else:  # the output's shape depends on the data: the one device-to-host read of a reduction
        num_out, fewest = torch.stack([out_lengths.max(), out_lengths.min()]).tolist() if b > 0 else (0, 0)
    if align_right:
        slot = slot + (num_out - out_lengths)[:, None]
    dest = torch.where(drop, torch.full_like(slot, num_out), slot)
    if lengths is not None:  # a wrong plan sends the overflow to the dump slot, not out of bounds;
        dest = torch.where((dest < 0) | (dest > num_out), num_out, dest)  # the engine checks plans per forward
    group_sizes = torch.zeros(b, num_out + 1, dtype=torch.long, device=dest.device)
    group_sizes.scatter_add_(1, dest, torch.ones_like(dest))
    group_sizes = group_sizes[:, :num_out]
    first = torch.zeros(b, num_out + 1, dtype=torch.long, device=dest.device)
    pos = torch.arange(t, device=dest.device).expand(b, t)
    first.scatter_(1, torch.where(starts, dest, torch.full_like(dest, num_out)), pos)
    return Reduction(dest, out_lengths, num_out, first[:, :num_out], group_sizes > 0, group_sizes, fewest == num_out)


def chain_merge(selected_pairs: Tensor, align_right: bool = False, lengths: tuple[int, int] | None = None) -> Reduction:
    """Merge by selected adjacent pairs, chaining runs (SPEC section 2).

    ``selected_pairs (B, T-1)``: pair ``t`` selected means token ``t+1`` joins
    token ``t``'s group; a run ``t..t+m-1`` forms one group of ``m+1`` tokens.
    ``lengths``: (longest, shortest) output length if known (see :func:`_build`).
    """
    b, m = selected_pairs.shape
    join_prev = torch.zeros(b, m + 1, dtype=torch.bool, device=selected_pairs.device)
    join_prev[:, 1:] = selected_pairs
    return _build(join_prev, torch.zeros_like(join_prev), align_right, lengths)


def evict(drop: Tensor, align_right: bool = False, lengths: tuple[int, int] | None = None) -> Reduction:
    """Drop the marked tokens ``(B, T)``; the others keep their order."""
    return _build(torch.zeros_like(drop), drop, align_right, lengths)


@dataclass
class MergeResult:
    """Output of :func:`weighted_merge`."""

    hidden: Tensor  # (B, T_out, d), padded at the end where samples differ
    reduction: Reduction  # reusable on any other (B, T, ...) tensor
    lengths: Tensor  # (B,) tokens kept per sample


def weighted_merge(
    hidden: Tensor,
    keys: Tensor,
    weights: Tensor | None,
    num_remove: int | Tensor,
    segments: Tensor | None = None,
) -> MergeResult:
    """FastAdaSP's weighted token merge (SPEC section 2), public entry point.

    hidden ``(B, n, d)``, keys ``(B, n, dk)`` (post-RoPE, heads concatenated),
    weights ``(B, n)`` attention mass each token receives, or ``None`` for a
    plain mean (the ``merge_ave`` ablation). ``num_remove`` is an int or a
    ``(B,)`` tensor: exactly that many tokens disappear per sample. The top
    ``num_remove`` adjacent key similarities are selected and chained.
    ``segments`` optionally restricts merging to spans (default: all tokens
    form one span); ``num_remove`` then applies to every span.
    """
    b, n, _ = hidden.shape
    if segments is None:
        segments = torch.zeros(b, n, dtype=torch.long, device=hidden.device)
    k = torch.as_tensor(num_remove, device=hidden.device).long()
    k = k.expand(b) if k.dim() == 0 else k
    lengths = segment_lengths(segments)
    k = k[:, None].expand_as(lengths)
    if bool((k >= lengths.clamp_min(1)).any()) or bool((k < 0).any()):
        raise ValueError(f"num_remove must be in [0, span length - 1]; got {k.tolist()} for spans {lengths.tolist()}")
    pair_seg = pair_segments(segments)
    chosen = segment_topk(adjacent_similarity(keys), pair_seg, k)
    red = chain_merge(chosen)
    return MergeResult(red.apply(hidden, weights), red, red.out_lengths)
