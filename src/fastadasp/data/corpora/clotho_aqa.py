"""Clotho-AQA (audio question answering) as extracted.

`root` holds `clotho_aqa_<split>.csv` (`file_name,QuestionText,answer,
confidence`) and the clips (folder `audio_files/` by default). The CSV has one
row per annotator (three per question). We keep ONE sample per (file,
question), whose `answer` is the majority answer: answers are compared after
lower-casing and stripping spaces and a trailing period; ties go to the answer
seen first in the file; the first spelling of the winner is kept. With
`confident_only`, rows whose confidence is not "yes" are dropped before the
vote (questions left with no row are dropped). `answers` keeps every counted
annotator answer for metrics that accept any of them.

Sample ids are `<file stem>#<8 hex of sha1(question)>`: unique, and stable
across limit, filtering and row order.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit, read_table, require_dir

__all__ = ["load_clotho_aqa", "normalize_answer"]

_COLUMNS = ("file_name", "QuestionText", "answer", "confidence")


def normalize_answer(answer: str) -> str:
    """The form answers are voted in: lower case, trimmed, no trailing period."""
    return answer.strip().lower().rstrip(".").strip()


def _question_key(question: str) -> str:
    return hashlib.sha1(" ".join(question.split()).encode("utf-8")).hexdigest()[:8]


def load_clotho_aqa(
    root: str | Path,
    split: str = "test",
    limit: int | None = None,
    csv_file: str | None = None,
    audio_dir: str = "audio_files",
    confident_only: bool = False,
) -> list[Sample]:
    """One sample per (file, question), sorted by (file, question); extra: question,
    answer (majority), answers (all annotators'), confidences."""
    check_limit(limit)
    root = require_dir(Path(root).expanduser(), "Clotho-AQA root")
    table = root / (csv_file or f"clotho_aqa_{split}.csv")
    clips = root / audio_dir
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for where, row in read_table(table, _COLUMNS):
        name, question = row["file_name"].strip(), " ".join(row["QuestionText"].split())
        answer, confidence = row["answer"].strip(), row["confidence"].strip().lower()
        empty = [c for c, v in zip(("file_name", "QuestionText", "answer"), (name, question, answer)) if not v]
        if empty:
            raise CorpusError(f"{where}: empty column(s) {', '.join(empty)}")
        if confident_only and confidence != "yes":
            continue
        groups.setdefault((name, question), []).append((answer, confidence))
    samples = []
    for (name, question), rows in sorted(groups.items()):
        answers = [a for a, _ in rows]
        votes = Counter(normalize_answer(a) for a in answers)
        best = max(votes.values())
        winner = next(a for a in answers if votes[normalize_answer(a)] == best)  # first seen wins ties
        extra = {"question": question, "answer": winner, "answers": answers,
                 "confidences": [c for _, c in rows]}
        samples.append(Sample(f"{Path(name).stem}#{_question_key(question)}", clips / name, None, extra))
    return apply_limit(samples, limit, table)
