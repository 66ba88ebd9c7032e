"""Audio duration from the file header, without decoding (for length-sorted batching)."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

__all__ = ["audio_duration"]


def audio_duration(path: str | Path) -> float:
    """Seconds of audio in ``path``; ``0.0`` when the file is missing or unreadable
    (such a sample fails later with its reason; here it only sorts first)."""
    path = Path(path)
    if not path.is_file():
        return 0.0
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return container.duration / 1_000_000  # av.time_base
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, ValueError):
        return 0.0
    return 0.0
