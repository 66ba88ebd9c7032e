"""Accuracy-type metrics: plain accuracy, classification accuracy with a confusion matrix, exact match.

Hypotheses are parsed answers (see `fastadasp.tasks.parsing`); None means the
model's output mapped to nothing ("unparsed"). An unparsed answer counts as
wrong and is reported separately, so a model that stops answering is not
mistaken for one that answers badly.

Comparison rule for `accuracy` and `classification_accuracy`: strings are
compared after `strip()` and `casefold()` (labels and letters are canonical
already; this only forgives case and stray spaces).

`exact_match` and `answer_accuracy` (AQA) compare normalised answers
(`normalize_answer`), the same rule on both sides:
1. yes/no synonyms: an answer that is only a yes-word ("yes", "yeah", "yep",
   "yup", "true", "correct") or a no-word ("no", "nope", "false", "incorrect"),
   optionally followed by punctuation and more words after that punctuation
   ("Yes, it is.") becomes "yes"/"no". "no one" stays "no one" (no punctuation
   after "no").
2. SQuAD's rule: lower-case, remove punctuation, remove the articles a/an/the,
   collapse whitespace. Digit groups ("1,000") and decimals ("2.5") survive.
3. Numbers: English cardinal number words become digits ("two" -> "2",
   "twenty-one" -> "21", "a hundred and five" -> "105", "three birds" ->
   "3 birds"); digit strings lose leading zeros ("02" -> "2"). Ordinals
   ("second"), "once"/"twice" and the "one" of "no one" stay words.
A reference may be one answer or a list of acceptable answers (any match counts).
"""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

__all__ = ["accuracy", "answer_accuracy", "classification_accuracy", "exact_match", "normalize_answer"]

_YES = ("yes", "yeah", "yep", "yup", "true", "correct")
_NO = ("no", "nope", "false", "incorrect")
_YES_NO = re.compile(
    r"^\W*(" + "|".join(_YES + _NO) + r")\s*(?:$|[.,!;:]+)", re.IGNORECASE
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
#: names the `normalize_answer` rule in results
NORMALIZE_RULE = "yesno+squad+numbers"
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"thousand": 1000, "million": 1000000}
_DIGIT_GROUP = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_DECIMAL_MARK = "\u00b7"  # keeps "2.5" through punctuation removal (not in string.punctuation)


def _below_hundred(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """(value, next index) of "seven", "seventeen", "seventy", "seventy seven" at words[i]."""
    word = words[i] if i < len(words) else None
    if word in _TENS:
        after = words[i + 1] if i + 1 < len(words) else None
        if after in _SMALL and 1 <= _SMALL[after] <= 9:
            return _TENS[word] + _SMALL[after], i + 2
        return _TENS[word], i + 1
    if word in _SMALL:
        return _SMALL[word], i + 1
    return None


def _below_thousand(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """Adds "N hundred [and] M" (a bare "hundred" is 100: "a hundred" has lost its article)."""
    head = _below_hundred(words, i)
    if head is None:
        if i >= len(words) or words[i] != "hundred":
            return None
        value, j = 100, i + 1
    elif head[1] < len(words) and words[head[1]] == "hundred" and 1 <= head[0] <= 9:
        value, j = head[0] * 100, head[1] + 1
    else:
        return head
    k = j + 1 if j < len(words) and words[j] == "and" and _below_hundred(words, j + 1) else j
    rest = _below_hundred(words, k)
    return (value + rest[0], rest[1]) if rest is not None else (value, j)


def _number_at(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """(value, next index) of the longest cardinal written in words at words[i], or None."""
    total, j, found = 0, i, False
    while True:
        part = _below_thousand(words, j)
        end = part[1] if part is not None else j
        if end < len(words) and words[end] in _SCALES and (part is None or part[0] >= 1):
            total += (part[0] if part is not None else 1) * _SCALES[words[end]]
            j, found = end + 1, True
            continue
        if part is not None:
            return total + part[0], part[1]
        return (total, j) if found else None


def _numbers_to_digits(words: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(words):
        pronoun = words[i] == "one" and i > 0 and words[i - 1] == "no"  # "no one" is nobody, not "no 1"
        number = None if pronoun else _number_at(words, i)
        if number is not None:
            out.append(str(number[0]))
            i = number[1]
        else:
            word = words[i]
            out.append(str(int(word)) if word.isdigit() and word.isascii() else word)
            i += 1
    return out


def normalize_answer(text: str) -> str:
    """Normalise a short answer for exact match (yes/no synonyms, SQuAD's rule, numbers as digits; module docstring)."""
    match = _YES_NO.match(text)
    if match:
        return "yes" if match.group(1).lower() in _YES else "no"
    text = _DECIMAL.sub(_DECIMAL_MARK, _DIGIT_GROUP.sub("", text.lower())).translate(_PUNCT)
    words = _ARTICLES.sub(" ", text).split()
    return " ".join(_numbers_to_digits(words)).replace(_DECIMAL_MARK, ".")


def _same(reference: Any, hypothesis: str) -> bool:
    return str(reference).strip().casefold() == hypothesis.strip().casefold()


def _check_lengths(references: Sequence, hypotheses: Sequence) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no samples to score; accuracy is undefined")


def _counts(references: Sequence, hypotheses: Sequence, correct: int) -> dict[str, Any]:
    """The keys every accuracy starts with: percent correct, correct, total and unparsed (None) counts."""
    return {
        "accuracy": 100.0 * correct / len(references),
        "correct": correct,
        "total": len(references),
        "unparsed": sum(h is None for h in hypotheses),
    }


def accuracy(references: Sequence[str], hypotheses: Sequence[str | None]) -> dict[str, Any]:
    """Percent of hypotheses equal to their reference (case-insensitive); None is unparsed and wrong."""
    _check_lengths(references, hypotheses)
    correct = sum(h is not None and _same(r, h) for r, h in zip(references, hypotheses))
    return {**_counts(references, hypotheses, correct), "compare": "strip+casefold"}


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
    return {**_counts(references, hypotheses, correct), "match": "exact",
            "normalize": NORMALIZE_RULE if normalize else "strip"}


def answer_accuracy(
    references: Sequence[str],
    hypotheses: Sequence[str | None],
    annotator_answers: Sequence[Sequence[str] | None] | None = None,
) -> dict[str, Any]:
    """Short-answer accuracy (Clotho-AQA) against the majority answer, any annotator's, and per answer type.

    - `accuracy` (primary): the answer equals the majority answer (`references`).
    - `accuracy_any_annotator`: it equals the majority answer or any of the
      sample's `annotator_answers` (every annotator's answer; a sample without
      them counts against its majority answer only, and `annotator_answers_missing`
      says how many); None, with the reason, when no annotator answers reached
      the metric at all.
    - `accuracy_yes_no` / `accuracy_open`: `accuracy` over the samples whose
      majority answer is yes/no, and over the rest (the Clotho-AQA paper reports
      the binary and the single-word questions separately); None for an empty subset.
    Every comparison uses `normalize_answer` on both sides; None is unparsed and wrong.
    """
    _check_lengths(references, hypotheses)
    if annotator_answers is not None and len(annotator_answers) != len(references):
        raise ValueError(f"{len(references)} references but {len(annotator_answers)} annotator answer lists")
    refs = [normalize_answer(str(r)) for r in references]
    hyps = [None if h is None else normalize_answer(h) for h in hypotheses]
    right = [h is not None and h == r for r, h in zip(refs, hyps)]

    def percent(flags: Sequence[bool]) -> float | None:
        return 100.0 * sum(flags) / len(flags) if flags else None

    yes_no = [r in ("yes", "no") for r in refs]
    out: dict[str, Any] = {
        "accuracy": percent(right),
        "accuracy_any_annotator": None,
        "accuracy_yes_no": percent([ok for ok, yn in zip(right, yes_no) if yn]),
        "accuracy_open": percent([ok for ok, yn in zip(right, yes_no) if not yn]),
        "correct": sum(right),
        "total": len(refs),
        "yes_no_total": sum(yes_no),
        "open_total": len(refs) - sum(yes_no),
        "unparsed": sum(h is None for h in hyps),
    }
    given = [a for a in (annotator_answers or []) if a]
    if not given:
        out["accuracy_any_annotator_unavailable"] = (
            "no annotator answers reached the metric (the task's `answers` field, recorded in each row)"
        )
    else:
        accepted = [{r, *(normalize_answer(str(x)) for x in (a or ()))} for r, a in zip(refs, annotator_answers)]
        out["accuracy_any_annotator"] = percent([h is not None and h in ok for h, ok in zip(hyps, accepted)])
        out["correct_any_annotator"] = sum(h is not None and h in ok for h, ok in zip(hyps, accepted))
        out["annotator_answers_missing"] = sum(not a for a in annotator_answers)
    out.update({"match": "exact", "normalize": NORMALIZE_RULE})
    return out
