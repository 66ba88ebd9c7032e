"""espeak-ng and sox: the two system tools that render every synthetic set and fixture.

One place for the commands, so every builder renders speech the same way
(espeak-ng writes 22.05 kHz; sox converts, with ``-R`` so any dither is
seeded and a rebuild writes the same bytes).

:func:`speak` writes one utterance as a file (the demo sets, fixtures);
:func:`render_speech` returns one sentence as samples without espeak-ng's own
silence, for builders that place every pause themselves (the dense clips of
:mod:`.evaluation_sets`). :func:`check_voices_distinct` refuses voice names
that espeak-ng silently maps onto another voice: in espeak-ng 1.51 ``en-gb+f3``,
``en-gb+f2`` and ``fr-fr+f3`` render byte-identical audio to ``en-gb`` and ``fr``
(the variant is dropped without a warning)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..corpora._common import CorpusError

__all__ = ["PROBE_SENTENCE", "VoiceError", "check_tools", "check_voices_distinct", "espeak_wav", "render_speech",
           "run_tool", "speak"]

#: what :func:`check_voices_distinct` renders with every voice (short: the check costs a few milliseconds a voice)
PROBE_SENTENCE = "Seven quiet sailors painted the blue boat."
#: level applied before resampling, so that no resampled peak reaches full scale
_HEADROOM = 0.8


class VoiceError(CorpusError):
    """An espeak-ng voice name that does not give the voice it names (an ignored variant, a duplicate)."""


def check_tools() -> None:
    """Fail with the install command when espeak-ng or sox is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found on PATH; synthetic speech needs both: "
            "apt-get install espeak-ng sox (or make system-deps)"
        )


def run_tool(cmd: list[str], stdin: bytes | None = None) -> bytes:
    """Run a command and return its stdout; a failure raises with the command and its stderr."""
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr}")
    return proc.stdout


def speak(text: str, out: str | Path, *, voice: str = "en-us", speed: int = 165,
          sr: int = 16000, channels: int = 1) -> Path:
    """Render ``text`` with espeak-ng into ``out`` (format by suffix), 16-bit, atomically."""
    check_tools()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw, conv = Path(tmp) / "raw.wav", Path(tmp) / f"conv{out.suffix}"
        run_tool(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text])
        run_tool(["sox", "-R", str(raw), "-r", str(sr), "-c", str(channels), "-b", "16", str(conv)])
        os.replace(conv, out)
    return out


def espeak_wav(text: str, voice: str, speed: int) -> bytes:
    """espeak-ng's own output for ``text``: a 16-bit mono WAV (22.05 kHz) as bytes."""
    return run_tool(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text])


def render_speech(text: str, *, voice: str, speed: int, sr: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng as float32 mono samples at ``sr``, without espeak-ng's
    leading and trailing silence (its exact zero samples; about 0.4 s at the end), so the
    caller decides every pause. Resampled by sox to 32-bit float: no dither, same bytes on
    every call. espeak-ng's peaks come close to full scale (0.996 for es-419), which the
    resampler overshoots and sox clips, so the level is lowered by 2 dB first (``vol 0.8``)."""
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(espeak_wav(text, voice, speed)), dtype="int16")
    voiced = np.flatnonzero(samples)
    if voiced.size == 0:
        raise RuntimeError(f"espeak-ng rendered silence for {text!r} (voice {voice}, speed {speed})")
    trimmed = np.ascontiguousarray(samples[voiced[0]: voiced[-1] + 1])
    raw = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", str(rate), "-"]
    out = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sr), "-"]
    resampled = run_tool(["sox", "-R", *raw, *out, "vol", str(_HEADROOM)], stdin=trimmed.tobytes())
    return np.frombuffer(resampled, dtype=np.float32).copy()


def check_voices_distinct(voices: Sequence[str], probe: str = PROBE_SENTENCE, speed: int = 150,
                          render: Callable[[str, str, int], bytes] = espeak_wav) -> None:
    """Refuse voices that do not sound like what they name: a ``voice+variant`` whose audio
    equals its base voice's (espeak-ng dropped the variant without a word) or two names that
    render the same audio. One probe sentence per voice, compared by hash."""
    bases = [v.split("+", 1)[0] for v in voices if "+" in v]
    digests = {v: hashlib.sha256(render(probe, v, speed)).hexdigest() for v in dict.fromkeys([*voices, *bases])}
    for voice in voices:
        base, _, variant = voice.partition("+")
        if variant and digests[voice] == digests[base]:
            raise VoiceError(f"espeak-ng ignores the variant '+{variant}' of voice {voice!r}: it renders the same "
                             f"audio as {base!r}; choose another voice (e.g. 'en+{variant}' or 'en-us+{variant}' "
                             f"instead of 'en-gb+{variant}')")
    first: dict[str, str] = {}
    for voice in voices:
        if digests[voice] in first and first[digests[voice]] != voice:
            raise VoiceError(f"voices {first[digests[voice]]!r} and {voice!r} render the same audio in espeak-ng: "
                             "keep one of them")
        first.setdefault(digests[voice], voice)
