"""Audio Flamingo 3 adapter (``nvidia/audio-flamingo-3-hf`` and local folders).

A second family with the same seam: Whisper-style encoder, MLP projector and a
Qwen2 decoder (natively in transformers 5, its processor needs no extra
packages). Its processor cuts audio into 30 s windows itself and writes one
contiguous run of ``<sound>`` tokens per audio; the adapter splits that run
back into per-window spans so nothing merges across windows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor
from transformers import AudioFlamingo3ForConditionalGeneration

from .base import prompt_list
from .speech_lm import SpeechLM, spans_from_mask, split_runs

__all__ = ["AudioFlamingo3Model"]

SAMPLE_RATE = 16000


class AudioFlamingo3Model(SpeechLM):
    family = "audioflamingo3"
    model_class = AudioFlamingo3ForConditionalGeneration

    @property
    def placeholder(self) -> str:
        return self.processor.audio_token

    def build_inputs(self, audios: Sequence[np.ndarray], prompt: str | Sequence[str]) -> dict:
        prompts = prompt_list(prompt, len(audios))
        for p in prompts:
            if p.count(self.placeholder) != 1:
                raise ValueError(f"an audioflamingo3 prompt needs exactly one {self.placeholder!r}, got {p!r}")
        # padding in text_kwargs only: a top-level padding=True would also pad the audio
        # features to the longest clip instead of the encoder's 30 s
        return dict(self.processor(text=prompts, audio=list(audios), sampling_rate=SAMPLE_RATE,
                                   return_tensors="pt", text_kwargs={"padding": True, "padding_side": "left"}))

    def truncated_seconds(self, audio: np.ndarray) -> float:
        """The processor keeps the first ``max_audio_len`` seconds (600 s) and drops the rest."""
        return max(0.0, len(audio) / SAMPLE_RATE - float(self.processor.max_audio_len))

    def tokens_per_window(self) -> int:
        """Audio tokens of one full encoder window (750 for 30 s)."""
        fe = self.processor.feature_extractor
        frames = int(fe.chunk_length * fe.sampling_rate // fe.hop_length)
        return int(self.processor._get_audio_token_length(np.array([frames]))[0])

    def audio_segments(self, inputs: dict) -> Tensor:
        runs = spans_from_mask(inputs["input_ids"] == self.model.config.audio_token_id)
        return split_runs(runs, self.tokens_per_window())
