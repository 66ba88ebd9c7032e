"""The one record every dataset reader returns and every task reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import read_audio

__all__ = ["Sample"]


@dataclass(frozen=True)
class Sample:
    """One utterance: absolute audio path, reference text (None if the task has none), extras."""

    id: str
    audio_path: Path
    text: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def load_audio(self, sr: int = 16000) -> np.ndarray:
        """Read this sample's audio as float32 mono at `sr` (raises AudioError)."""
        return read_audio(self.audio_path, target_sr=sr)
