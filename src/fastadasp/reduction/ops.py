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

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Reduction",
    "segment_lengths",
    "counts_from_ratio",
    "segment_topk",
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

    def take_first(self, x: Tensor, fill: float | int | bool = 0) -> Tensor:
        """Per output slot, the value of the group's first token (positions,
        segment ids, validity); ``fill`` in padding slots."""
        b = x.shape[0]
        idx = self.first.view(b, self.num_out, *([1] * (x.dim() - 2))).expand(b, self.num_out, *x.shape[2:])
        out = x.gather(1, idx)
        mask = self.filled.view(b, self.num_out, *([1] * (x.dim() - 2)))
        return torch.where(mask, out, fill)  # a Python scalar: no host-to-device copy


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
    """Cosine similarity of adjacent tokens' keys: ``(B, T, dk) -> (B, T-1)``."""
    k = keys.float()
    norms = torch.linalg.vector_norm(k, dim=-1).clamp_min(1e-12)  # as F.normalize's eps
    # fused dot products and one division per pair: no normalised copy of the keys
    return torch.linalg.vecdot(k[:, :-1], k[:, 1:]) / (norms[:, :-1] * norms[:, 1:])


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
