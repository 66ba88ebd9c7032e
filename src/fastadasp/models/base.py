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

__all__ = ["Generation", "SpeechModel", "prompt_list"]


def prompt_list(prompt: str | Sequence[str], n: int) -> list[str]:
    """One prompt per audio from a shared prompt or a per-audio list."""
    if isinstance(prompt, str):
        return [prompt] * n
    prompts = list(prompt)
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} audios")
    return prompts


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
    #: True: for a task without a prompt for this family, the adapter receives the task's ``default``
    #: prompt, a plain instruction without any model's tokens, and puts it into the model's format
    #: itself (chat template, audio placeholder); False: such a task is refused before the model loads
    uses_default_prompt: bool = False
    #: model config keys that change speed or memory but never a prediction (left out of a run's identity,
    #: so a run can resume with another value)
    throughput_settings: frozenset[str] = frozenset()

    @property
    @abstractmethod
    def stack_spec(self) -> StackSpec:
        """Shapes of the stack that reduction acts on (for FLOPs)."""

    @classmethod
    def peek_stack_spec(cls, **model_config) -> StackSpec | None:
        """The reduced stack's shapes from the model's config alone, before any
        weights load (so an infeasible budget fails in seconds, not after loading
        a 7B model); ``None`` when the config cannot be read without loading."""
        return None

    @classmethod
    def check_prompt(cls, prompt: str, **model_config) -> None:
        """Refuse (ConfigError) a task prompt that contradicts the model's settings,
        before any weights load; the runner calls it with the first sample's prompt."""

    @abstractmethod
    def generate(
        self,
        audios: Sequence[np.ndarray],
        prompt: str | Sequence[str],
        method: ReductionMethod,
        budget: Budget,
        max_new_tokens: int,
        sample_keys: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Generate for a batch of 16 kHz mono waveforms under a reduction.

        ``prompt``: one prompt for the whole batch, or one per audio (tasks
        whose prompt holds the sample's question). Audio longer than the
        model's window is never cut silently: the adapter covers all of it
        (windows) or reports ``truncated_s`` in ``Generation.extra``."""
