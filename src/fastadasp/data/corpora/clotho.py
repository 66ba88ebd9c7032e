"""Clotho v2 (audio captioning, 5 captions per clip) as extracted.

`root` holds `clotho_captions_<split>.csv` (`file_name,caption_1..caption_5`)
and the clips in `<split>/` (split = development | validation | evaluation).
File names contain spaces and punctuation; the id is the file name itself.
"""

from __future__ import annotations

from pathlib import Path

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_table, require_dir

__all__ = ["load_clotho"]

_CAPTIONS = tuple(f"caption_{i}" for i in range(1, 6))


def load_clotho(
    root: str | Path,
    split: str = "evaluation",
    limit: int | None = None,
    csv_file: str | None = None,
    audio_dir: str | None = None,
) -> list[Sample]:
    """Samples sorted by file name; extra: captions (the 5 references, file order)."""
    check_limit(limit)
    root = require_dir(Path(root).expanduser(), "Clotho root")
    table = root / (csv_file or f"clotho_captions_{split}.csv")
    clips = root / (audio_dir or split)
    samples = []
    for where, row in read_table(table, ("file_name",) + _CAPTIONS):
        name = row["file_name"].strip()
        captions = [row[c].strip() for c in _CAPTIONS]
        empty = [c for c, text in zip(_CAPTIONS, captions) if not text]
        if not name or empty:
            raise CorpusError(f"{where}: empty column(s) {', '.join(empty or ['file_name'])}")
        samples.append(Sample(name, clips / name, None, {"captions": captions}))
    samples.sort(key=lambda s: s.id)
    return apply_limit(samples, limit, table)
