"""Local JSONL manifests: one utterance per line, validated when loaded.

A manifest is the dataset format every task reads, so a run never needs a
dataset download: `{"id": ..., "audio": ..., "text": ..., <extra fields>}` per
line. Structural problems (bad JSON, missing keys, duplicate ids) fail at load
time with file and line number, before any model time is spent. Missing audio
files do not: they surface per sample through `Sample.load_audio`, so one bad
file costs one sample, not the whole run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .audio import AudioError
from .sample import Sample

__all__ = ["ManifestError", "Sample", "load_manifest", "read_audios", "write_manifest"]

_RESERVED = ("id", "audio", "text")


class ManifestError(ValueError):
    """A manifest is missing or malformed; the message names the file and line."""


def read_audios(samples, sr: int = 16000) -> tuple[list["Sample"], list[np.ndarray], list[dict]]:
    """Read each sample's audio: ``(readable samples, their audio, failures)``.

    A sample whose audio is missing, unreadable, empty or not finite becomes a
    failure ``{"id", "error"}`` with the reason; any other error propagates."""
    ready, audios, failures = [], [], []
    for sample in samples:
        try:
            audios.append(sample.load_audio(sr))
            ready.append(sample)
        except AudioError as exc:
            failures.append({"id": sample.id, "error": str(exc)})
    return ready, audios, failures


def _parse_line(
    raw: str, where: str, base: Path, require_text: bool,
    validate: Callable[[dict[str, Any]], None] | None = None,
) -> Sample:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    required = ("id", "audio", "text") if require_text else ("id", "audio")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in ("id", "audio"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise ManifestError(f"{where}: '{key}' must be a non-empty string, got {obj[key]!r}")
    text = obj.get("text")
    if (text is None and require_text) or (text is not None and not isinstance(text, str)):
        raise ManifestError(f"{where}: 'text' must be a string, got {text!r}")
    if validate is not None:
        try:
            validate(obj)
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from exc
    audio = Path(obj["audio"]).expanduser()
    extra = {k: v for k, v in obj.items() if k not in _RESERVED}
    return Sample(obj["id"], audio if audio.is_absolute() else base / audio, text, extra)


def load_manifest(
    path: str | Path,
    limit: int | None = None,
    *,
    require_text: bool = True,
    validate: Callable[[dict[str, Any]], None] | None = None,
) -> list[Sample]:
    """Load and validate a JSONL manifest; relative audio paths resolve against its folder.

    The whole file is validated even with `limit`, so a quick run with a limit
    catches the same errors as the full run. Blank lines are skipped.
    `require_text=False` lets tasks without transcripts omit `text` (or set null).
    `validate(obj)` checks a task's own fields per line; its ValueError becomes
    a ManifestError naming the file and line.
    """
    path = Path(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    try:
        # JSON Lines are separated by "\n" only: str.splitlines would also split on U+2028/U+0085 inside strings
        lines = [line.removesuffix("\r") for line in path.read_bytes().decode("utf-8").split("\n")]
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    base = path.resolve().parent
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        sample = _parse_line(raw, where, base, require_text, validate)
        if sample.id in first_line:
            raise ManifestError(
                f"{where}: duplicate id {sample.id!r} (first seen on line {first_line[sample.id]})"
            )
        first_line[sample.id] = lineno
        samples.append(sample)
    if not samples:
        raise ManifestError(f"{path}: manifest has no samples")
    return samples if limit is None else samples[:limit]


def write_manifest(path: str | Path, samples: Iterable[Sample]) -> Path:
    """Write samples as a JSONL manifest that `load_manifest` reads back unchanged.

    Audio paths under the manifest's folder are stored relative to it (the
    folder can be moved); others stay absolute. Extras must be JSON values.
    Written to a temporary file and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    for sample in samples:
        clash = [k for k in _RESERVED if k in sample.extra]
        if clash:
            raise ManifestError(f"sample {sample.id!r}: extra field(s) {clash} clash with reserved keys")
        audio = Path(sample.audio_path).resolve()
        audio_str = str(audio.relative_to(base)) if audio.is_relative_to(base) else str(audio)
        row = {"id": sample.id, "audio": audio_str, "text": sample.text, **sample.extra}
        lines.append(json.dumps(row, ensure_ascii=False))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, path)
    return path
