"""Dense clips from single sentences: packing to a duration, seeded pauses, noise at an SNR.

A dense clip holds several sentences of one voice and speed, separated by pauses
we draw (espeak-ng's own silence is removed first, :func:`.speech.render_speech`),
so that its length and the place of its silence are ours to choose. Lengths are
measured, not estimated: sentences are rendered and packed greedily until the
clip's seeded target length (never past ``max_s``, under Whisper's 30 s window),
so no clip needs re-packing afterwards. Everything random (targets, pauses,
leading/trailing silence, noise) comes from ``numpy.random.default_rng([seed, clip
number])``: a clip does not change when another one does.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["SAMPLE_RATE", "WHISPER_WINDOW_S", "Clip", "ClipShape", "SegmentCache", "pack_clips", "assemble", "pink_noise",
           "mix_at_snr", "snr_db", "write_pcm16"]

SAMPLE_RATE = 16000
#: Whisper encodes 30 s windows: a dense clip must fit one
WHISPER_WINDOW_S = 30.0
_FULL_SCALE = 32768.0
_MAX_PCM = 32767 / _FULL_SCALE


@dataclass(frozen=True)
class ClipShape:
    """How clips are drawn: their lengths and where their silence falls (seconds)."""

    min_s: float = 20.0
    max_s: float = 29.8  # under Whisper's 30 s window, with room for rounding
    #: each clip's target length is drawn from this range; packing stops before passing it
    target_s: tuple[float, float] = (22.5, 29.5)
    pause_s: tuple[float, float] = (0.3, 0.9)
    #: silence before the first / after the last sentence: short for most clips, long at one or both
    #: ends for others, so that the padding of Whisper's 30 s window falls in different places
    edge_short_s: tuple[float, float] = (0.05, 0.3)
    edge_long_s: tuple[float, float] = (1.0, 3.0)
    #: chances of a long lead only, a long tail only, both long (else both short)
    edge_layout_p: tuple[float, float, float] = (0.2, 0.2, 0.1)


@dataclass(frozen=True)
class Clip:
    """One packed clip: which sentences (indices), spoken how, with which silences."""

    id: str
    number: int
    voice: str
    speed: int
    sentences: tuple[int, ...]
    pauses_s: tuple[float, ...]  # between consecutive sentences
    lead_s: float
    trail_s: float


def _ms(value: float) -> float:
    """Seconds rounded to the millisecond: what the manifest records is what was rendered."""
    return round(float(value), 3)


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


class SegmentCache:
    """Rendered sentences by (text, voice, speed); missing ones rendered ``workers`` at a time."""

    def __init__(self, render: Callable[[str, str, int], np.ndarray], workers: int = 2) -> None:
        self._render, self._workers = render, max(1, workers)
        self._audio: dict[tuple[str, str, int], np.ndarray] = {}

    def ensure(self, keys: Sequence[tuple[str, str, int]]) -> None:
        missing = [k for k in dict.fromkeys(keys) if k not in self._audio]
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            for key, audio in zip(missing, pool.map(lambda k: self._render(*k), missing)):
                self._audio[key] = audio

    def __getitem__(self, key: tuple[str, str, int]) -> np.ndarray:
        self.ensure([key])
        return self._audio[key]

    def seconds(self, key: tuple[str, str, int]) -> float:
        return len(self[key]) / SAMPLE_RATE


def _edges(rng: np.random.Generator, shape: ClipShape) -> tuple[float, float]:
    lead_only, trail_only, both = shape.edge_layout_p
    layout = rng.choice(4, p=[lead_only, trail_only, both, 1.0 - lead_only - trail_only - both])
    lead_range = shape.edge_long_s if layout in (0, 2) else shape.edge_short_s
    trail_range = shape.edge_long_s if layout in (1, 2) else shape.edge_short_s
    return _ms(rng.uniform(*lead_range)), _ms(rng.uniform(*trail_range))


def pack_clips(texts: Sequence[str], combos: Sequence[tuple[str, int]], cache: SegmentCache, *, seed: int,
               id_prefix: str, shape: ClipShape = ClipShape(), max_clips: int | None = None) -> list[Clip]:
    """Consecutive sentences of ``texts`` packed into clips of ``shape.min_s``-``shape.max_s``.

    Clip ``c`` is spoken with ``combos[c % len(combos)]`` and draws its target length,
    edges and pauses from ``default_rng([seed, c])``. Sentences are added while the clip
    stays within its target (or, below ``min_s``, within ``max_s``); each sentence is used
    at most once, and the last sentences are left out when they cannot fill a clip."""
    if not texts or not combos:
        raise ValueError("pack_clips needs sentences and at least one (voice, speed)")
    clips: list[Clip] = []
    cursor, mean_s = 0, 3.5
    while cursor < len(texts) and (max_clips is None or len(clips) < max_clips):
        number = len(clips)
        voice, speed = combos[number % len(combos)]
        rng = np.random.default_rng([seed, number])
        target = float(rng.uniform(*shape.target_s))
        lead, trail = _edges(rng, shape)
        total, chosen, pauses = lead + trail, [], []
        # render about as many sentences as the target needs at once (in parallel), then go on one by one
        guess = cursor + math.ceil((target - total) / mean_s) + 1
        cache.ensure([(t, voice, speed) for t in texts[cursor:guess]])
        while cursor + len(chosen) < len(texts):
            index = cursor + len(chosen)
            pause = _ms(rng.uniform(*shape.pause_s)) if chosen else 0.0
            longer = total + pause + cache.seconds((texts[index], voice, speed))
            if not (longer <= target or (total < shape.min_s and longer <= shape.max_s)):
                break
            total, chosen = longer, chosen + [index]
            pauses += [pause] if len(chosen) > 1 else []
        if not chosen:
            raise ValueError(f"sentence {cursor} ({texts[cursor][:40]!r}...) alone is longer than {shape.max_s} s "
                             f"with voice {voice} at {speed} wpm")
        if total < shape.min_s:
            if cursor + len(chosen) < len(texts):
                raise ValueError(f"clip {number} cannot reach {shape.min_s} s without passing {shape.max_s} s: "
                                 f"sentence {cursor + len(chosen)} is too long for voice {voice} at {speed} wpm")
            break  # the remaining sentences are too few for one more clip: left out
        mean_s = sum(cache.seconds((texts[i], voice, speed)) for i in chosen) / len(chosen)
        clips.append(Clip(f"{id_prefix}{number:03d}", number, voice, speed, tuple(chosen), tuple(pauses), lead, trail))
        cursor += len(chosen)
    return clips


def assemble(clip: Clip, texts: Sequence[str], cache: SegmentCache) -> np.ndarray:
    """The clip's audio: lead silence, sentences separated by their pauses, trailing silence."""
    parts = [np.zeros(_samples(clip.lead_s), np.float32)]
    for k, index in enumerate(clip.sentences):
        if k:
            parts.append(np.zeros(_samples(clip.pauses_s[k - 1]), np.float32))
        parts.append(cache[(texts[index], clip.voice, clip.speed)])
    parts.append(np.zeros(_samples(clip.trail_s), np.float32))
    return np.concatenate(parts)


def pink_noise(n: int, rng: np.random.Generator, low_hz: float = 20.0) -> np.ndarray:
    """``n`` samples of Gaussian noise with a 1/f power spectrum from ``low_hz`` to Nyquist
    (nothing below: sub-audio rumble would count toward the SNR without masking speech),
    scaled to unit mean power. Shaped over the next power of two (an FFT of a prime length is
    ten times slower) and cut to ``n``."""
    size = 1 << max(0, n - 1).bit_length()
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, d=1.0 / SAMPLE_RATE)
    gain = np.zeros_like(freqs)
    band = freqs >= low_hz
    gain[band] = 1.0 / np.sqrt(freqs[band])
    noise = np.fft.irfft(spectrum * gain, size)[:n]
    return noise / np.sqrt(np.mean(noise**2))


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """10 log10 of mean signal power over mean noise power."""
    return float(10.0 * np.log10(np.mean(np.square(signal, dtype=np.float64)) / np.mean(np.square(noise, dtype=np.float64))))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, target_db: float) -> np.ndarray:
    """``clean + noise`` with the noise scaled so that mean(clean^2) / mean(noise^2) is ``target_db``
    (the whole clip's power, silences included)."""
    scale = math.sqrt(np.mean(np.square(clean, dtype=np.float64)) / np.mean(np.square(noise, dtype=np.float64))
                      / 10.0 ** (target_db / 10.0))
    return (clean.astype(np.float64) + scale * noise).astype(np.float32)


def write_pcm16(path: Path, audio: np.ndarray) -> float:
    """Write ``audio`` as 16 kHz mono 16-bit PCM, atomically; return the gain applied (1.0, or
    less when the peak would clip: the whole clip is scaled down instead)."""
    import soundfile as sf

    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    gain = 1.0 if peak <= _MAX_PCM else _MAX_PCM / peak
    pcm = np.clip(np.rint(audio.astype(np.float64) * gain * _FULL_SCALE), -32768, 32767).astype(np.int16)
    tmp = path.with_name(f".{path.stem}.16k.wav")  # a scratch name the demo-set builder knows
    sf.write(str(tmp), pcm, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)
    return gain
