"""Shared helpers of the corpus readers: one error type, table and line reading, limits.

Every reader validates the corpus structure when it loads (missing file, column,
unparsable line, empty split) and fails with a `CorpusError` naming the file and
line, before any model time is spent. Audio files are *not* checked here: a
missing clip becomes a per-sample failure when `read_audio` is called.

Lines are split on "\\n" only (a trailing "\\r" is dropped): `str.splitlines()`
also splits on U+0085, U+2028, U+2029, form feed and others, which released
corpora hold inside fields (MELD's utterances hold U+0085). Tables go through
`csv` the way its documentation asks (a stream opened with newline=""), so a
quoted field may span lines; `file:line` is always the physical line where the
row starts.

A reader that leaves out rows on purpose (CoVoST 2 rows whose clip Common Voice
no longer lists) returns a `SampleList` whose `dropped` maps each reason to the
ids left out; `apply_limit` logs them and `fastadasp.run.datasets.load_dataset`
puts their count into the run's dataset info (metrics.json).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from ..manifest import Sample

__all__ = ["CorpusError", "SampleList", "apply_limit", "check_limit", "decode_text", "dropped_summary",
           "read_lines", "read_table", "require_dir", "require_file"]

logger = logging.getLogger(__name__)

#: how many ids of each drop reason the log and metrics.json name
DROPPED_EXAMPLES = 5


class CorpusError(ValueError):
    """A corpus on disk does not have the expected layout; the message names file/line/column."""


class SampleList(list):
    """A reader's samples plus the rows it left out on purpose: `dropped` = {reason: [ids]}.

    A plain list to every caller that only wants samples (slicing gives a list);
    `load_dataset` reads `dropped` so the count reaches metrics.json without the
    runner knowing any corpus.
    """

    def __init__(self, samples: Iterable[Sample] = (), dropped: Mapping[str, Sequence[str]] | None = None):
        super().__init__(samples)
        self.dropped: dict[str, list[str]] = {reason: list(ids) for reason, ids in (dropped or {}).items() if ids}


def dropped_summary(dropped: Mapping[str, Sequence[str]], examples: int = DROPPED_EXAMPLES) -> dict:
    """{"count": N, "reasons": {reason: {"count": n, "examples": [first ids]}}}; {} if none."""
    reasons = {reason: {"count": len(ids), "examples": list(ids[:examples])}
               for reason, ids in dropped.items() if ids}
    return {"count": sum(r["count"] for r in reasons.values()), "reasons": reasons} if reasons else {}


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or null, got {limit}")


def apply_limit(
    samples: list[Sample],
    limit: int | None,
    source: str | Path,
    dropped: Mapping[str, Sequence[str]] | None = None,
) -> SampleList:
    """Reject duplicate ids and empty results, log rows dropped on purpose, then keep
    the first `limit` (already sorted). `dropped` counts the whole split, not the prefix."""
    check_limit(limit)
    if not samples:
        raise CorpusError(f"{source}: no samples found")
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise CorpusError(f"{source}: duplicate sample id {sample.id!r}")
        seen.add(sample.id)
    result = SampleList(samples if limit is None else samples[:limit], dropped)
    summary = dropped_summary(result.dropped)
    if summary:
        detail = "; ".join(f"{r['count']} {reason} (e.g. {', '.join(r['examples'])})"
                           for reason, r in summary["reasons"].items())
        logger.warning("%s: dropped %d of %d rows: %s", source, summary["count"],
                       summary["count"] + len(samples), detail)
    return result


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

    Per line (split on b"\\n" only, so line numbers stay physical), because files
    edited with different tools mix the two (MELD).
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        out = []
        for line in raw.split(b"\n"):
            try:
                out.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(line.decode("cp1252", errors="replace"))
        return "\n".join(out).lstrip("\ufeff")


def read_lines(path: Path, *, errors: str = "strict") -> list[str]:
    """The lines of a UTF-8 text file, split on "\\n" only, a trailing "\\r" dropped.

    Line i of the result is physical line i + 1. Bytes that are not UTF-8 are a
    CorpusError naming the line (with errors="strict").
    """
    raw = require_file(path, "text file").read_bytes()
    try:
        text = raw.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start another
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class _LineTap:
    """The line iterator csv reads from, keeping the lines of the row being read."""

    def __init__(self, lines: Iterable[str]):
        self._lines = iter(lines)
        self.row: list[str] = []

    def __iter__(self) -> "_LineTap":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.row.append(line)
        return line


def _rows(text: str, path: Path, **dialect) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) per row; csv's own errors become CorpusErrors.

    A quoted field left open swallows the rest of the file into one row, which
    csv (non-strict) returns as if it were fine; such a row is an error here.
    """
    tap = _LineTap(io.StringIO(text, newline=""))
    reader = csv.reader(tap, **dialect)
    end = 0
    while True:
        start = end + 1
        tap.row.clear()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CorpusError(f"{path}:{start}: malformed row ({exc})") from None
        end = reader.line_num
        if end > start and dialect.get("quoting") != csv.QUOTE_NONE:
            try:
                for _ in csv.reader(list(tap.row), strict=True, **dialect):
                    pass
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise CorpusError(f"{path}:{start}: a quoted field opened on this line is never closed "
                                      f"(it runs to the end of the file, line {end})") from None
        yield start, end, fields


def read_table(
    path: Path,
    required: Sequence[str],
    *,
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
    escapechar: str | None = None,
) -> Iterable[tuple[str, dict[str, str]]]:
    """Yield ("file:line", row) for a CSV/TSV with a header, after checking its columns.

    "line" is the physical line where the row starts, also when a quoted field
    spans lines. Rows with a different number of fields than the header are
    errors, not silently padded: they mean the file was cut or mis-quoted.
    """
    require_file(path, "table")
    text = decode_text(path.read_bytes())
    rows = _rows(text, path, delimiter=delimiter, quoting=quoting, escapechar=escapechar)
    try:
        _, _, header = next(rows)
    except StopIteration:
        raise CorpusError(f"{path}: empty file (no header)") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise CorpusError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    for start, end, fields in rows:
        where = f"{path}:{start}"
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            spans = f" (the row spans lines {start}-{end}: an unmatched quote or escape?)" if end > start else ""
            raise CorpusError(f"{where}: expected {len(header)} fields, got {len(fields)}{spans}")
        yield where, dict(zip(header, fields))
