"""What one forward (or one ``generate()``) carries through the blocks.

Shared by the reducer, which advances it, and the policies, which read it to
build per-layer masks and positions; a module of its own so that neither
imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import Tensor

from ..reduction.budget import TokenLayout
from ..reduction.ops import Reduction, RowSpans

__all__ = ["ReductionState", "plan_shared_span", "shared_span_layout", "plan_row_spans", "planned_tokens"]


@dataclass
class ReductionState:
    """Per-forward (or per-generate) state shared by all blocks."""

    segments: Tensor  # (B, T) span id or -1
    valid: Tensor  # (B, T) bool, False = padding
    positions: Tensor | None  # (B, T) position of each (group's first) token; None where no policy needs them
    ratios: Tensor  # (B, num_layers) float64
    seeds: Tensor  # (B,) int64
    device_ratios: Tensor | None = None  # ratios on the activations' device, copied once per forward
    align_right: bool = False
    padded: bool = False  # some row has padding (known on the host: no device read per layer)
    num_segments: int = 1  # span ids 0..num_segments-1
    active_layers: frozenset[int] = frozenset()  # layers where some row's ratio is > 0 (host-side)
    planned: dict[int, tuple[int, int]] = field(default_factory=dict)  # layer -> (longest, shortest) output, host-side
    #: layer -> (start, stop, remove) of the one span every row shares (same layout, no padding), host-side
    span_plan: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: layer -> each row's span and sizes, when every row has one span but they differ (a padded batch)
    row_plan: dict[int, RowSpans] = field(default_factory=dict)
    #: layer -> (span ids, validity) after it, made once per forward where the plans above know them
    layout_plan: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    mode: str = "prefill"  # then "decode" once the last layer has run the prefill
    tokens: list[Tensor] = field(default_factory=list)  # tokens entering layer l, (B,)
    tokens_planned: bool = False  # ``tokens`` hold the host plan: reductions need not count them
    plan_unchecked: bool = False  # a compiled prefill left the check of the host plan for afterwards
    cache_valid: dict[int, Tensor] = field(default_factory=dict)  # layer -> (B, c_l) bool, grows in decode
    prompt_valid: dict[int, Tensor] = field(default_factory=dict)  # layer -> (B, prompt part of c_l) bool
    kv_keep: dict[int, Tensor] = field(default_factory=dict)  # layer -> (B, H, c_l) bool (H2O)
    reductions: dict[int, Reduction] = field(default_factory=dict)
    last_position: Tensor | None = None  # (B,) position of the last prompt token
    extra: dict = field(default_factory=dict)  # policy-owned cache (masks, rotary)

    @property
    def reduced(self) -> bool:
        return bool(self.reductions)

    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    def expand(self, times: int) -> None:
        """Beam search repeats each sample ``times`` times before prefill."""
        for name in ("segments", "valid", "positions", "ratios", "device_ratios", "seeds"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.repeat_interleave(times, dim=0))
        self.tokens = [t.repeat_interleave(times, dim=0) for t in self.tokens]
        self.row_plan = {layer: rows.repeat(times) for layer, rows in self.row_plan.items()}
        self.layout_plan = {layer: tuple(t.repeat_interleave(times, dim=0) for t in layout)
                            for layer, layout in self.layout_plan.items()}
        self.extra.pop("ratio_columns", None)

    def plan_sizes(self) -> list[int]:
        """The host plan's sizes, flat: what a compiled forward takes as dynamic
        integers (:meth:`use_plan_sizes`), so one graph serves every length."""
        spans = [size for layer in sorted(self.span_plan) for size in self.span_plan[layer]]
        rows = [size for layer in sorted(self.row_plan) for size in _row_sizes(self.row_plan[layer])]
        return spans + rows + [size for layer in sorted(self.planned) for size in self.planned[layer]]

    def use_plan_sizes(self, sizes: Sequence[int]) -> None:
        """Put back the sizes of :meth:`plan_sizes` (inside a compiled forward: as symbols)."""
        spans, rows, planned = sorted(self.span_plan), sorted(self.row_plan), sorted(self.planned)
        self.span_plan = {layer: tuple(sizes[3 * i : 3 * i + 3]) for i, layer in enumerate(spans)}
        offset = 3 * len(spans)
        self.row_plan = {layer: replace(self.row_plan[layer], **dict(zip(_ROW_SIZES, sizes[offset + 3 * i:])))
                         for i, layer in enumerate(rows)}
        offset += 3 * len(rows)
        self.planned = {layer: tuple(sizes[offset + 2 * i : offset + 2 * i + 2]) for i, layer in enumerate(planned)}

    def ratio_column(self, layer: int) -> Tensor:
        """This layer's ratio per row on the device, ``(B,)``: the columns are split
        once per forward, not sliced per layer."""
        columns = self.extra.get("ratio_columns")
        if columns is None:
            columns = self.extra["ratio_columns"] = self.device_ratios.unbind(1)
        return columns[layer]

    def advance(self, layer: int, red: Reduction) -> None:
        """The sequence after ``red``: span ids, validity and positions of each
        group's first token. Where every row keeps all its tokens valid (no
        padding before, none made), validity is a prefix of the old one; where the
        host planned the layout, span ids and validity are the plan's."""
        layout = self.layout_plan.get(layer)
        if layout is not None and layout[1].shape[1] == red.num_out:  # span ids and validity from the host plan
            # (a method whose counts break its plan gets its own layout; the plan check then names it)
            self.segments, self.valid = layout
        else:
            self.segments = red.take_first(self.segments, fill=-1)
            self.valid = self.valid[:, : red.num_out] if not self.padded and red.uniform else red.take_first(
                self.valid, fill=False)
        if self.positions is not None:
            self.positions = red.take_first(self.positions, fill=0)
        self.reductions[layer] = red
        self.padded = self.padded or not red.uniform  # shorter rows are padded up to the longest
        if not self.tokens_planned:
            kept = self.valid.sum(1)
            for later in range(layer + 1, len(self.tokens)):
                self.tokens[later] = kept


def plan_shared_span(
    segments: Tensor, valid: Tensor, layouts: Sequence[TokenLayout], ratios: Tensor, layers: frozenset[int]
) -> dict[int, tuple[int, int, int]]:
    """``layer -> (start, stop, remove)`` when every row has the same single span
    at the same place, no padding and the same ratios (a batch of one, or of
    equal windows): each reducing layer then removes ``floor(n * r)`` of the
    span's ``n`` tokens, and the span keeps its start. Empty otherwise. Reads
    the layout from the device once per forward."""
    if not layers or len(set(layouts)) != 1 or len(layouts[0].spans) != 1 or not bool(valid.all()):
        return {}
    if not bool((ratios == ratios[:1]).all()) or not bool((segments == segments[:1]).all()):
        return {}
    audio = segments[0] >= 0
    n = layouts[0].spans[0]
    start = int(audio.long().argmax())
    if not bool(audio[start : start + n].all()):
        return {}
    total, plan = segments.shape[1], {}
    for layer in sorted(layers):
        remove = math.floor(n * float(ratios[0, layer]))
        plan[layer] = (start, start + n, remove)
        n, total = n - remove, total - remove
    return plan


def shared_span_layout(
    plan: dict[int, tuple[int, int, int]], segments: Tensor, valid: Tensor
) -> dict[int, tuple[Tensor, Tensor]]:
    """``layer -> (span ids, validity)`` after each layer of a shared-span plan: the
    span ``[start, stop - remove)`` keeps its id, everything stays valid."""
    b, total = segments.shape
    span_id = segments[:, plan[min(plan)][0] : plan[min(plan)][0] + 1] if plan else None
    pos = torch.arange(total, device=segments.device)
    out = {}
    for layer, (start, stop, remove) in sorted(plan.items()):
        total -= remove
        inside = (pos[:total] >= start) & (pos[:total] < stop - remove)
        out[layer] = (torch.where(inside, span_id, -1), valid[:, :total])
    return out


_ROW_SIZES = ("total", "num_out", "most")


def _row_sizes(rows: RowSpans) -> list[int]:
    return [getattr(rows, name) for name in _ROW_SIZES]


def plan_row_spans(
    segments: Tensor, valid: Tensor, layouts: Sequence[TokenLayout], ratios: Tensor, layers: frozenset[int],
    align_right: bool,
) -> tuple[dict[int, RowSpans], dict[int, tuple[Tensor, Tensor]]]:
    """``(layer -> RowSpans, layer -> (span ids, validity) after it)`` when every row
    holds at most one span and its valid tokens in one block (the rows may differ:
    a padded batch), for methods that remove ``floor(n * r)`` tokens of the span per
    layer; empty otherwise. Right-aligned rows (left-padded decoder prompts) move
    right by the slots they leave empty. Reads the layout once per forward; every
    layer's tensors go to the device in one copy."""
    b, total = segments.shape
    if not layers or any(len(layout.spans) > 1 for layout in layouts):
        return {}, {}
    pos = torch.arange(total, device=segments.device)
    audio = segments >= 0
    lengths = [layout.spans[0] if layout.spans else 0 for layout in layouts]
    counts = valid.sum(1).tolist()
    starts, first_valid = audio.long().argmax(1).tolist(), valid.long().argmax(1).tolist()
    bounds = torch.tensor([[s, s + n, v, v + c] for s, n, v, c in zip(starts, lengths, first_valid, counts)],
                          device=segments.device)
    blocks = torch.stack([(pos >= bounds[:, i : i + 1]) & (pos < bounds[:, i + 1 : i + 2]) for i in (0, 2)])
    if not bool((blocks == torch.stack([audio, valid])).all()):
        return {}, {}  # a span or the valid tokens with a gap
    span_ids = segments.gather(1, torch.tensor(starts, device=segments.device)[:, None]).cpu()
    pieces, plans = [], []
    for layer in sorted(layers):
        remove = torch.tensor([math.floor(n * r) for n, r in zip(lengths, ratios[:, layer].tolist())])
        kept = total - remove
        num_out = int(kept.max())
        shift = num_out - kept if align_right else torch.zeros_like(kept)
        start, n = torch.tensor(starts)[:, None], torch.tensor(lengths)[:, None]
        pair = torch.arange(total - 1)
        outside = (pair < start) | (pair >= start + n - 1)
        slots = torch.arange(num_out)
        filled = slots >= shift[:, None] if align_right else slots < kept[:, None]
        base = torch.arange(b) * num_out + shift - 1
        starts = [s + int(sh) for s, sh in zip(starts, shift)]  # where the row's span and valid block go
        first_valid = [v + int(sh) for v, sh in zip(first_valid, shift)]
        lengths = [n - int(k) for n, k in zip(lengths, remove)]
        counts = [c - int(k) for c, k in zip(counts, remove)]
        new_start, new_n = torch.tensor(starts)[:, None], torch.tensor(lengths)[:, None]
        span_after = torch.where((slots >= new_start) & (slots < new_start + new_n), span_ids, -1)
        first, count = torch.tensor(first_valid)[:, None], torch.tensor(counts)[:, None]
        valid_after = (slots >= first) & (slots < first + count)
        pieces += [outside.long().view(-1), remove, base, (slots + 1 - shift[:, None]).view(-1), filled.long().view(-1),
                   kept, span_after.view(-1), valid_after.long().view(-1)]
        plans.append((layer, total, num_out, int(remove.max()), bool((kept == num_out).all())))
        total = num_out
    flat = torch.cat(pieces).to(segments.device).split([p.numel() for p in pieces])  # one copy
    rows, layout = {}, {}
    for i, (layer, t, num_out, most, uniform) in enumerate(plans):
        outside, remove, base, wanted, filled, kept, span_after, valid_after = flat[8 * i : 8 * i + 8]
        rows[layer] = RowSpans(t, num_out, most, align_right, uniform, outside.view(b, t - 1).bool(),
                               remove.view(b, 1), base.view(b, 1), wanted.view(b, num_out),
                               filled.view(b, num_out).bool(), kept)
        layout[layer] = (span_after.view(b, num_out), valid_after.view(b, num_out).bool())
    return rows, layout


def planned_tokens(layouts: Sequence[TokenLayout], ratios: Tensor, device: torch.device) -> list[Tensor]:
    """Tokens entering each layer (and leaving the last), per row, for methods that
    remove exactly ``floor(n * r)`` per span: one host-to-device copy per forward."""
    from ..reduction.budget import simulate_tokens

    counts = torch.tensor([simulate_tokens(layout, row) for layout, row in zip(layouts, ratios.tolist())],
                          dtype=torch.long).to(device)
    return list(counts.unbind(1))
