"""What one forward (or one ``generate()``) carries through the blocks.

Shared by the reducer, which advances it, and the policies, which read it to
build per-layer masks and positions; a module of its own so that neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ..reduction.ops import Reduction

__all__ = ["ReductionState"]


@dataclass
class ReductionState:
    """Per-forward (or per-generate) state shared by all blocks."""

    segments: Tensor  # (B, T) span id or -1
    valid: Tensor  # (B, T) bool, False = padding
    positions: Tensor | None  # (B, T) position of each (group's first) token
    ratios: Tensor  # (B, num_layers) float64
    seeds: Tensor  # (B,) int64
    device_ratios: Tensor | None = None  # ratios on the activations' device, copied once per forward
    align_right: bool = False
    padded: bool = False  # some row has padding (known on the host: no device read per layer)
    num_segments: int = 1  # span ids 0..num_segments-1
    active_layers: frozenset[int] = frozenset()  # layers where some row's ratio is > 0 (host-side)
    planned: dict[int, tuple[int, int]] = field(default_factory=dict)  # layer -> (longest, shortest) output, host-side
    mode: str = "prefill"  # then "decode" once the last layer has run the prefill
    tokens: list[Tensor] = field(default_factory=list)  # tokens entering layer l, (B,)
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

    def advance(self, layer: int, red: Reduction) -> None:
        self.segments = red.take_first(self.segments, fill=-1)
        self.valid = red.take_first(self.valid, fill=False)
        self.positions = red.take_first(self.positions, fill=0)
        self.reductions[layer] = red
        self.padded = self.padded or not red.uniform  # shorter rows are padded up to the longest
        kept = self.valid.sum(1)
        for later in range(layer + 1, len(self.tokens)):
            self.tokens[later] = kept
