"""Shared helpers of the corpus readers: one error type, table reading, limits.

Every reader validates the corpus structure when it loads (missing file, column,
unparsable line, empty split) and fails with a `CorpusError` naming the file and
line, before any model time is spent. Audio files are *not* checked here: a
missing clip becomes a per-sample failure when `read_audio` is called.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

from ..manifest import Sample

__all__ = ["CorpusError", "apply_limit", "check_limit", "read_table", "require_dir", "require_file"]


class CorpusError(ValueError):
    """A corpus on disk does not have the expected layout; the message names file/line/column."""


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or null, got {limit}")


def apply_limit(samples: list[Sample], limit: int | None, source: str | Path) -> list[Sample]:
    """Reject duplicate ids and empty results, then keep the first `limit` (already sorted)."""
    check_limit(limit)
    if not samples:
        raise CorpusError(f"{source}: no samples found")
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise CorpusError(f"{source}: duplicate sample id {sample.id!r}")
        seen.add(sample.id)
    return samples if limit is None else samples[:limit]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise CorpusError(f"{what} not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CorpusError(f"{what} not found: {path}")
    return path


def decode_text(raw: bytes) -> str:
    """UTF-8 (BOM stripped); lines that are not UTF-8 are read as cp1252.

    Per line, because files edited with different tools mix the two (MELD).
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        lines = raw.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(line.decode("cp1252", errors="replace"))
        return "\n".join(out).lstrip("\ufeff")


def read_table(
    path: Path,
    required: Sequence[str],
    *,
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
    escapechar: str | None = None,
) -> Iterable[tuple[str, dict[str, str]]]:
    """Yield ("file:line", row) for a CSV/TSV with a header, after checking its columns.

    Rows with a different number of fields than the header are errors, not
    silently padded: they mean the file was cut or mis-quoted.
    """
    require_file(path, "table")
    text = decode_text(path.read_bytes())
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting, escapechar=escapechar)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CorpusError(f"{path}: empty file (no header)") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise CorpusError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    for fields in reader:
        where = f"{path}:{reader.line_num}"
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            raise CorpusError(f"{where}: expected {len(header)} fields, got {len(fields)}")
        yield where, dict(zip(header, fields))
