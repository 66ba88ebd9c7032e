"""MELD (Friends utterances, 7 emotions) as extracted: `MELD.Raw/`.

`<split>_sent_emo.csv` lists utterances (`Sr No.,Utterance,Speaker,Emotion,
Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime`); the clip
of row (D, U) is `<video dir>/dia{D}_utt{U}.mp4` (AAC 48 kHz stereo inside,
read by PyAV). The released CSVs mix encodings and carry UTF-8 text that was
once decoded as Latin-1/cp1252 ("youâ\\x80\\x99re"): both are repaired so the
transcripts compare cleanly. The CSVs released before late 2020 hold U+0085 inside
utterances (31 test rows): rows are split on line breaks only (`read_table`), and
the character is then read as cp1252's ellipsis by `fix_mojibake`, before the
text is stripped (str.strip would take a final U+0085 for white space).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_table, require_dir

__all__ = ["MELD_LABELS", "load_meld", "fix_mojibake"]

MELD_LABELS = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]
_SPLITS = {
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
    "train": ("train_sent_emo.csv", "train_splits"),
}
_REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def _byte_char(b: int, encoding: str) -> str:
    return bytes([b]).decode(encoding, errors="ignore")


# A UTF-8 lead byte followed by continuation bytes, each shown as its Latin-1
# or cp1252 character: the signature of doubly-decoded UTF-8.
_CONT = "".join(sorted({c for b in range(0x80, 0xC0)
                         for c in (_byte_char(b, "latin-1"), _byte_char(b, "cp1252")) if c}))
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][{re.escape(_CONT)}]+")
_C1 = re.compile("[\u0080-\u009f]")


def _char_byte(ch: str) -> bytes:
    try:
        return ch.encode("cp1252")
    except UnicodeEncodeError:
        return ch.encode("latin-1")


def fix_mojibake(text: str) -> str:
    """Undo UTF-8-read-as-cp1252/Latin-1 runs; map stray C1 controls through cp1252.

    A run is replaced only when its bytes decode as UTF-8, so genuine accented
    text ("café") is left alone.
    """

    def repair(match: re.Match[str]) -> str:
        run = match.group(0)
        try:
            return b"".join(_char_byte(c) for c in run).decode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            return run

    text = _MOJIBAKE.sub(repair, text)
    return _C1.sub(lambda m: _byte_char(ord(m.group(0)), "cp1252") or m.group(0), text)


def _int(row: dict[str, str], column: str, where: str) -> int:
    try:
        return int(row[column].strip())
    except ValueError:
        raise CorpusError(f"{where}: column {column} must be an integer, got {row[column]!r}") from None


def load_meld(
    root: str | Path,
    split: str = "test",
    limit: int | None = None,
    csv_file: str | None = None,
    video_dir: str | None = None,
) -> list[Sample]:
    """Samples of one MELD split, sorted by (dialogue, utterance).

    label = lower-case emotion (one of MELD_LABELS), text = the utterance,
    extra: labels, speaker, sentiment, dialogue_id, utterance_id.
    """
    check_limit(limit)
    if split not in _SPLITS and (csv_file is None or video_dir is None):
        raise ValueError(f"unknown MELD split {split!r}: use one of {sorted(_SPLITS)} "
                         "or give csv_file and video_dir")
    root = require_dir(Path(root).expanduser(), "MELD root (MELD.Raw)")
    default_csv, default_videos = _SPLITS.get(split, (None, None))
    table = root / (csv_file or default_csv)
    videos = root / (video_dir or default_videos)
    keyed = []
    for where, row in read_table(table, _REQUIRED):
        dialogue, utterance = _int(row, "Dialogue_ID", where), _int(row, "Utterance_ID", where)
        label = row["Emotion"].strip().lower()
        if label not in MELD_LABELS:
            raise CorpusError(f"{where}: column Emotion: unknown label {row['Emotion']!r} "
                              f"(expected one of {MELD_LABELS})")
        sample_id = f"dia{dialogue}_utt{utterance}"
        extra = {"label": label, "labels": list(MELD_LABELS), "speaker": fix_mojibake(row["Speaker"]).strip(),
                 "sentiment": row.get("Sentiment", "").strip().lower(),
                 "dialogue_id": dialogue, "utterance_id": utterance}
        sample = Sample(sample_id, videos / f"{sample_id}.mp4", fix_mojibake(row["Utterance"]).strip(), extra)
        keyed.append(((dialogue, utterance), sample))
    if not keyed:
        raise CorpusError(f"{table}: no rows")
    keyed.sort(key=lambda item: item[0])
    return apply_limit([s for _, s in keyed], limit, table)
