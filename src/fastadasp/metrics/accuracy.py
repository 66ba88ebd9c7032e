"""Accuracy-type metrics: plain accuracy, classification accuracy with a confusion matrix, exact match.

Hypotheses are parsed answers (see `fastadasp.tasks.parsing`); None means the
model's output mapped to nothing ("unparsed"). An unparsed answer counts as
wrong and is reported separately, so a model that stops answering is not
mistaken for one that answers badly.

Comparison rule for `accuracy` and `classification_accuracy`: strings are
compared after `strip()` and `casefold()` (labels and letters are canonical
already; this only forgives case and stray spaces).

`exact_match` (AQA) compares normalised answers (`normalize_answer`):
1. yes/no synonyms: an answer that is only a yes-word ("yes", "yeah", "yep",
   "yup", "true", "correct") or a no-word ("no", "nope", "false", "incorrect"),
   optionally followed by punctuation and more words after that punctuation
   ("Yes, it is.") becomes "yes"/"no". "no one" stays "no one" (no punctuation
   after "no").
2. SQuAD's rule: lower-case, remove punctuation, remove the articles a/an/the,
   collapse whitespace.
A reference may be one answer or a list of acceptable answers (any match counts).
"""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

__all__ = ["accuracy", "classification_accuracy", "exact_match", "normalize_answer"]

_YES = ("yes", "yeah", "yep", "yup", "true", "correct")
_NO = ("no", "nope", "false", "incorrect")
_YES_NO = re.compile(
    r"^\W*(" + "|".join(_YES + _NO) + r")\s*(?:$|[.,!;:]+)", re.IGNORECASE
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    """Normalise a short answer for exact match (yes/no synonyms, then SQuAD's rule; module docstring)."""
    match = _YES_NO.match(text)
    if match:
        return "yes" if match.group(1).lower() in _YES else "no"
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _same(reference: Any, hypothesis: str) -> bool:
    return str(reference).strip().casefold() == hypothesis.strip().casefold()


def _check_lengths(references: Sequence, hypotheses: Sequence) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no samples to score; accuracy is undefined")


def accuracy(references: Sequence[str], hypotheses: Sequence[str | None]) -> dict[str, Any]:
    """Percent of hypotheses equal to their reference (case-insensitive); None is unparsed and wrong."""
    _check_lengths(references, hypotheses)
    correct = sum(h is not None and _same(r, h) for r, h in zip(references, hypotheses))
    return {
        "accuracy": 100.0 * correct / len(references),
        "correct": correct,
        "total": len(references),
        "unparsed": sum(h is None for h in hypotheses),
        "compare": "strip+casefold",
    }


def classification_accuracy(
    references: Sequence[str], hypotheses: Sequence[str | None], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, unweighted accuracy (mean per-class recall) and a confusion matrix.

    Unweighted accuracy averages the recall of each class present in the
    references (the usual ER "UA"; classes absent from the references have no
    recall). The confusion matrix has one row per label (reference) and one
    column per label (prediction) plus a last "unparsed" column. `labels`
    fixes the order; without it the labels are the sorted union of references
    and parsed hypotheses. A reference or hypothesis outside given `labels` is
    an error (parse free text with `LabelAnswer` first).
    """
    _check_lengths(references, hypotheses)
    refs = [str(r).strip().casefold() for r in references]
    hyps = [None if h is None else h.strip().casefold() for h in hypotheses]
    if labels is None:
        label_list = sorted(set(refs) | {h for h in hyps if h is not None})
    else:
        label_list = [str(label).strip().casefold() for label in labels]
        known = set(label_list)
        for kind, values in (("reference", refs), ("hypothesis", hyps)):
            for i, value in enumerate(values):
                if value is not None and value not in known:
                    raise ValueError(
                        f"{kind} {value!r} at index {i} is not one of the labels {label_list}"
                    )
    index = {label: i for i, label in enumerate(label_list)}
    unparsed_col = len(label_list)
    matrix = [[0] * (len(label_list) + 1) for _ in label_list]
    for r, h in zip(refs, hyps):
        matrix[index[r]][unparsed_col if h is None else index[h]] += 1
    recalls = {
        label: matrix[i][i] / sum(matrix[i]) for i, label in enumerate(label_list) if sum(matrix[i])
    }
    correct = sum(matrix[i][i] for i in range(len(label_list)))
    return {
        "accuracy": 100.0 * correct / len(refs),
        "unweighted_accuracy": 100.0 * sum(recalls.values()) / len(recalls),
        "correct": correct,
        "total": len(refs),
        "unparsed": sum(h is None for h in hyps),
        "per_class_recall": {label: 100.0 * r for label, r in recalls.items()},
        "confusion_matrix": {
            "labels": label_list,
            "columns": label_list + ["unparsed"],
            "matrix": matrix,
        },
        "labels_from": "data" if labels is None else "config",
        "compare": "strip+casefold",
    }


def exact_match(
    references: Sequence[str | Sequence[str]],
    hypotheses: Sequence[str | None],
    normalize: bool = True,
) -> dict[str, Any]:
    """Percent of answers that equal a reference after `normalize_answer` (or raw `strip()` if not normalize)."""
    _check_lengths(references, hypotheses)
    norm = normalize_answer if normalize else str.strip
    correct = 0
    for ref, hyp in zip(references, hypotheses):
        if hyp is None:
            continue
        accepted = [ref] if isinstance(ref, str) else list(ref)
        correct += norm(hyp) in {norm(a) for a in accepted}
    return {
        "accuracy": 100.0 * correct / len(references),
        "correct": correct,
        "total": len(references),
        "unparsed": sum(h is None for h in hypotheses),
        "match": "exact",
        "normalize": "yesno+squad" if normalize else "strip",
    }
