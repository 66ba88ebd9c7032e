"""Spoken multiple-choice QA (SQA) as a JSONL manifest, validated per line.

No SQA corpus ships in one common layout, so its format is our manifest with
three required fields: `question` (text), `choices` (a list of >= 2 texts, in
letter order) and `answer` (the correct letter: "A" for choices[0], ...).
`{"id": "q1", "audio": "q1.wav", "question": "...", "choices": ["...", "..."], "answer": "B"}`
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from ..manifest import Sample, load_manifest

__all__ = ["load_sqa_manifest", "validate_sqa"]


def validate_sqa(obj: dict[str, Any]) -> None:
    """Raise ValueError naming the field when a line is not a well-formed SQA item."""
    question, choices, answer = obj.get("question"), obj.get("choices"), obj.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"'question' must be a non-empty string, got {question!r}")
    if (not isinstance(choices, list) or not 2 <= len(choices) <= 26
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise ValueError(f"'choices' must be a list of 2 to 26 non-empty strings, got {choices!r}")
    letters = string.ascii_uppercase[: len(choices)]
    if not isinstance(answer, str) or len(answer) != 1 or answer not in letters:
        raise ValueError(f"'answer' must be one of {', '.join(letters)} (the letter of a choice), got {answer!r}")


def load_sqa_manifest(path: str | Path, limit: int | None = None) -> list[Sample]:
    """Load an SQA manifest (file order); `text` is optional (a transcript if known)."""
    return load_manifest(path, limit=limit, require_text=False, validate=validate_sqa)
