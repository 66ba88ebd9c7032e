"""Qwen2-Audio adapter (``Qwen/Qwen2-Audio-7B``, ``-7B-Instruct``, local folders).

Audio longer than the encoder's 30 s window is split into 30 s clips, each
its own ``<|audio_bos|><|AUDIO|><|audio_eos|>`` in the prompt: every clip is
one reducible span and nothing merges across clips.

``span`` says which tokens a span holds: ``audio`` (default) only the
``<|AUDIO|>`` tokens, so the tags stay text and are never touched; ``paper``
also the ``<|audio_bos|>`` tag before them, as the authors' Qwen-Audio code
sliced it (from the begin tag to the last audio token), so the tag may merge
with the first audio tokens.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from transformers import Qwen2AudioForConditionalGeneration

from .base import prompt_list
from .speech_lm import SpeechLM, spans_from_mask

__all__ = ["Qwen2AudioModel", "AUDIO_PLACEHOLDER", "SPAN_MODES"]

AUDIO_PLACEHOLDER = "<|audio_bos|><|AUDIO|><|audio_eos|>"
SAMPLE_RATE = 16000
SPAN_MODES = ("audio", "paper")


def windows(audio: np.ndarray, seconds: float) -> list[np.ndarray]:
    """Consecutive windows of at most ``seconds`` (the last may be shorter)."""
    size = int(seconds * SAMPLE_RATE)
    return [audio[i : i + size] for i in range(0, max(len(audio), 1), size)]


class Qwen2AudioModel(SpeechLM):
    family = "qwen2_audio"
    model_class = Qwen2AudioForConditionalGeneration
    window_s = 30.0

    def __init__(self, source: str, *args, span: str = "audio", **kwargs):
        if span not in SPAN_MODES:
            raise ValueError(f"qwen2_audio span must be one of {SPAN_MODES}, got {span!r}")
        super().__init__(source, *args, **kwargs)
        self.span = span

    def build_inputs(self, audios: Sequence[np.ndarray], prompt: str | Sequence[str]) -> dict:
        texts, clips = [], []
        for audio, prompt in zip(audios, prompt_list(prompt, len(audios))):
            if prompt.count(AUDIO_PLACEHOLDER) != 1:
                raise ValueError(f"a qwen2_audio prompt needs exactly one {AUDIO_PLACEHOLDER!r}, got {prompt!r}")
            parts = windows(audio, self.window_s)
            texts.append(prompt.replace(AUDIO_PLACEHOLDER, AUDIO_PLACEHOLDER * len(parts)))
            clips.extend(parts)
        return dict(self.processor(text=texts, audio=clips, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                   padding=True))

    def audio_segments(self, inputs: dict) -> Tensor:
        ids = inputs["input_ids"]
        audio = ids == self.model.config.audio_token_id
        if self.span == "paper":  # the begin tag right before each clip's audio tokens joins its span
            bos = self.processor.tokenizer.convert_tokens_to_ids(self.processor.audio_bos_token)
            next_is_audio = torch.zeros_like(audio)
            next_is_audio[:, :-1] = audio[:, 1:]
            audio = audio | ((ids == bos) & next_is_audio)
        return spans_from_mask(audio)
