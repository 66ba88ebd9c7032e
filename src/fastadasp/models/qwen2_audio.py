"""Qwen2-Audio adapter (``Qwen/Qwen2-Audio-7B``, ``-7B-Instruct``, local folders).

Audio longer than the encoder's 30 s window is split into 30 s clips, each
its own ``<|audio_bos|><|AUDIO|><|audio_eos|>`` in the prompt: every clip is
one reducible span and nothing merges across clips.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor
from transformers import Qwen2AudioForConditionalGeneration

from .speech_lm import SpeechLM, spans_from_mask

__all__ = ["Qwen2AudioModel", "AUDIO_PLACEHOLDER"]

AUDIO_PLACEHOLDER = "<|audio_bos|><|AUDIO|><|audio_eos|>"
SAMPLE_RATE = 16000


def windows(audio: np.ndarray, seconds: float) -> list[np.ndarray]:
    """Consecutive windows of at most ``seconds`` (the last may be shorter)."""
    size = int(seconds * SAMPLE_RATE)
    return [audio[i : i + size] for i in range(0, max(len(audio), 1), size)]


class Qwen2AudioModel(SpeechLM):
    family = "qwen2_audio"
    model_class = Qwen2AudioForConditionalGeneration
    window_s = 30.0

    def build_inputs(self, audios: Sequence[np.ndarray], prompt: str) -> dict:
        if prompt.count(AUDIO_PLACEHOLDER) != 1:
            raise ValueError(f"a qwen2_audio prompt needs exactly one {AUDIO_PLACEHOLDER!r}, got {prompt!r}")
        texts, clips = [], []
        for audio in audios:
            parts = windows(audio, self.window_s)
            texts.append(prompt.replace(AUDIO_PLACEHOLDER, AUDIO_PLACEHOLDER * len(parts)))
            clips.extend(parts)
        return dict(self.processor(text=texts, audio=clips, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                   padding=True))

    def audio_segments(self, inputs: dict) -> Tensor:
        return spans_from_mask(inputs["input_ids"] == self.model.config.audio_token_id)
