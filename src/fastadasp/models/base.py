"""The adapter seam: what the runner needs from a model family.

An adapter is the only per-model code: it loads the model, turns audio and a
task prompt into inputs, names the blocks the engine reduces, and generates.
The runner calls :meth:`SpeechModel.generate` and never looks inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..engine import Budget
from ..reduction import ReductionMethod, StackSpec

__all__ = ["Generation", "SpeechModel"]


@dataclass
class Generation:
    """One sample's output and what it cost."""

    text: str
    tokens: list[int]
    flops_realized: float  # analytic FLOPs reduction of the reduced stack (prefill)
    tokens_per_layer: list[int]  # tokens entering each layer of the reduced stack (+ output)
    hit_max_new_tokens: bool = False
    repetition_loop: bool = False
    extra: dict = field(default_factory=dict)


class SpeechModel(ABC):
    """A speech model family behind one interface."""

    #: key into a task's per-model prompts
    family: str
    #: human-readable identity (checkpoint name or path) for metrics.json
    name: str

    @property
    @abstractmethod
    def stack_spec(self) -> StackSpec:
        """Shapes of the stack that reduction acts on (for FLOPs)."""

    @abstractmethod
    def generate(
        self,
        audios: Sequence[np.ndarray],
        prompt: str,
        method: ReductionMethod,
        budget: Budget,
        max_new_tokens: int,
        sample_keys: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Generate for a batch of 16 kHz mono waveforms under a reduction."""
