"""LibriSpeech as extracted: `LibriSpeech/<split>/SPK/CHAPTER/SPK-CHAPTER-UTT.flac`.

Each chapter folder has `SPK-CHAPTER.trans.txt` with `UTT-ID TRANSCRIPT` per line
(upper-case, no punctuation), split on "\n" only (CRLF copies read the same).
Samples are sorted by (speaker, chapter, utterance)
as integers, the order of the official lists.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_lines, require_dir

__all__ = ["load_librispeech"]

_UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def _split_dir(root: Path, split: str) -> Path:
    """`root/split`, or root itself when it is already the split folder."""
    if (root / split).is_dir():
        return root / split
    if root.name == split and root.is_dir():
        return root
    require_dir(root, "LibriSpeech root")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise CorpusError(f"split {split!r} not found under {root} (found: {', '.join(found) or 'nothing'})")


def load_librispeech(root: str | Path, split: str = "test-clean", limit: int | None = None) -> list[Sample]:
    """Samples of one LibriSpeech split; text = transcript, extra: speaker, chapter."""
    check_limit(limit)
    split_dir = _split_dir(Path(root).expanduser(), split)
    keyed: list[tuple[tuple[int, int, int], Sample]] = []
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        prefix = trans.name[: -len(".trans.txt")]
        for lineno, line in enumerate(read_lines(trans), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            match = _UTT_ID.match(utt_id)
            if match is None or not text.strip():
                raise CorpusError(f"{trans}:{lineno}: expected 'SPK-CHAPTER-UTT TRANSCRIPT', got {line!r}")
            if not utt_id.startswith(prefix + "-"):
                raise CorpusError(f"{trans}:{lineno}: utterance {utt_id} does not belong to {prefix}")
            speaker, chapter, utt = (int(g) for g in match.groups())
            sample = Sample(utt_id, trans.parent / f"{utt_id}.flac", text.strip(),
                            {"speaker": str(speaker), "chapter": str(chapter)})
            keyed.append(((speaker, chapter, utt), sample))
    if not keyed:
        raise CorpusError(f"{split_dir}: no SPK/CHAPTER/*.trans.txt transcripts found")
    keyed.sort(key=lambda item: item[0])
    return apply_limit([s for _, s in keyed], limit, split_dir)
