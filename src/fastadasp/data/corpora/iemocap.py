"""IEMOCAP (dyadic sessions, categorical emotions) as released: `IEMOCAP_full_release/`.

Labels come from `SessionN/dialog/EmoEvaluation/<dialog>.txt`, whose summary
lines read `[START - END]<TAB>UTT_ID<TAB>EMO<TAB>[V, A, D]`; the clip is
`SessionN/sentences/wav/<dialog>/<UTT_ID>.wav`; the transcript, when
`SessionN/dialog/transcriptions/<dialog>.txt` is present, is its
`UTT_ID [START-END]: text` line. The usual 4-class setting:
neu -> neutral, hap and exc -> happy (merged), ang -> angry, sad -> sad; every
other label (fru, sur, fea, dis, oth, xxx) is dropped. Default sessions=[5]:
the test fold of leave-one-session-out. Files are split into lines on "\n" only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_lines, require_dir

__all__ = ["FOUR_CLASS", "IEMOCAP_LABELS", "load_iemocap"]

FOUR_CLASS: dict[str, str] = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
IEMOCAP_LABELS = ["neutral", "happy", "angry", "sad"]
_TRANSCRIPT = re.compile(r"^(?P<utt>\S+) \[[\d.]+-[\d.]+\]: ?(?P<text>.*)$")
_LINE = re.compile(
    r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<emo>\S+)\t"
    r"\[(?P<v>[\d.]+), (?P<a>[\d.]+), (?P<d>[\d.]+)\]\s*$"
)


def _transcripts(path: Path) -> dict[str, str]:
    """UTT_ID -> text from a transcription file; lines of other shapes are not utterances."""
    if not path.is_file():
        return {}
    found = (_TRANSCRIPT.match(line) for line in read_lines(path, errors="replace"))
    return {m["utt"]: m["text"].strip() for m in found if m is not None}


def load_iemocap(
    root: str | Path,
    sessions: Sequence[int] = (5,),
    limit: int | None = None,
    label_map: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
) -> list[Sample]:
    """Samples of the given sessions sorted by utterance id.

    text = transcript (None without transcriptions/), label = mapped class,
    extra: labels, original_label, session, speaker
    (e.g. "Ses05F"), vad ([valence, arousal, dominance]), start_s, end_s.
    """
    check_limit(limit)
    mapping = dict(FOUR_CLASS if label_map is None else label_map)
    label_set = list(labels) if labels is not None else list(dict.fromkeys(mapping.values()))
    unknown = sorted(set(mapping.values()) - set(label_set))
    if unknown:
        raise ValueError(f"label_map targets {unknown} are not in labels {label_set}")
    root = require_dir(Path(root).expanduser(), "IEMOCAP root (IEMOCAP_full_release)")
    samples = []
    for session in sessions:
        session_dir = require_dir(root / f"Session{int(session)}", f"IEMOCAP session {session}")
        eval_dir = require_dir(session_dir / "dialog" / "EmoEvaluation", "EmoEvaluation folder")
        files = sorted(p for p in eval_dir.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise CorpusError(f"{eval_dir}: no label files (*.txt)")
        for path in files:
            dialog = path.stem
            texts = _transcripts(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt")
            for lineno, line in enumerate(read_lines(path, errors="replace"), 1):
                if not line.startswith("["):
                    continue  # per-annotator lines (C-E1:, A-E2:), headers, blanks
                match = _LINE.match(line)
                if match is None:
                    raise CorpusError(f"{path}:{lineno}: expected "
                                      f"'[START - END]\\tUTT_ID\\tEMO\\t[V, A, D]', got {line!r}")
                utt, emo = match["utt"], match["emo"]
                if not utt.startswith(dialog):
                    raise CorpusError(f"{path}:{lineno}: utterance {utt} does not belong to dialog {dialog}")
                if emo not in mapping:
                    continue
                extra = {"label": mapping[emo], "labels": list(label_set), "original_label": emo,
                         "session": int(session), "speaker": utt[:5] + utt.rsplit("_", 1)[-1][0],
                         "vad": [float(match["v"]), float(match["a"]), float(match["d"])],
                         "start_s": float(match["start"]), "end_s": float(match["end"])}
                wav = session_dir / "sentences" / "wav" / dialog / f"{utt}.wav"
                samples.append(Sample(utt, wav, texts.get(utt), extra))
    samples.sort(key=lambda s: s.id)
    return apply_limit(samples, limit, root)
