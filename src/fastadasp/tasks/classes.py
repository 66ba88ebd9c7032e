"""Class definitions of the labelled datasets: which answer words mean which class (ER).

A dataset's classes are defined on two sides: its reader maps the corpus's raw
labels to classes (IEMOCAP's 4-class protocol merges ``exc`` into ``happy``,
``FOUR_CLASS`` in ``data/corpora/iemocap.py``), and the answer parser must map a
model's words to the same classes (an answer "excited" is ``happy`` there). This
module is the one place where the answer side is defined, per dataset, and it
is derived from the reader's own constants wherever the reader defines classes,
so the two sides cannot drift apart:

- MELD (``MELD_LABELS``, 7 classes): each label gets its emotion's words;
  "excited" is no MELD class and maps to nothing.
- IEMOCAP 4-class (``IEMOCAP_LABELS``): each raw label's words go to the class
  the reader's ``FOUR_CLASS`` maps it to (neu, hap + exc -> happy, ang, sad); the
  dropped labels' words (frustrated, surprised, ...) map to nothing.

``LabelAnswer`` picks the definition whose label set equals the sample's
``labels`` (order and case ignored), so a manifest exported from a reader, and a
run re-scored from its rows, parse alike. A label set with no definition here
(a custom dataset) falls back to the generic emotion synonym groups
(``EMOTION_WORDS``). tests/test_task_settings.py checks every labelled reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

__all__ = ["EMOTION_WORDS", "ClassDefinition", "class_definition_for", "class_definitions"]

#: emotion -> words that name it (the generic synonym groups; the first word is the group's name)
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "joy": ("joy", "joyful", "joyous", "happy", "happiness", "happily", "glad", "cheerful"),
    "sadness": ("sadness", "sad", "sadly", "unhappy", "sorrow", "sorrowful"),
    "anger": ("anger", "angry", "angrily", "mad", "furious"),
    "surprise": ("surprise", "surprised", "surprising", "amazed", "astonished"),
    "fear": ("fear", "fearful", "scared", "afraid", "frightened", "terrified"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "neutral": ("neutral", "neutrality", "calm"),
    "frustration": ("frustration", "frustrated"),
    "excitement": ("excited", "excitement", "exciting"),
}

#: IEMOCAP's raw EmoEvaluation labels -> the emotion they name (oth/xxx name none)
_IEMOCAP_RAW_EMOTION = {"neu": "neutral", "hap": "joy", "exc": "excitement", "ang": "anger", "sad": "sadness",
                        "fru": "frustration", "sur": "surprise", "fea": "fear", "dis": "disgust"}
#: MELD's labels -> the emotion they name
_MELD_EMOTION = {"neutral": "neutral", "joy": "joy", "sadness": "sadness", "anger": "anger",
                 "surprise": "surprise", "fear": "fear", "disgust": "disgust"}


@dataclass(frozen=True)
class ClassDefinition:
    """A dataset's classes and, per class, the answer words (phrases) that mean it."""

    dataset: str
    labels: tuple[str, ...]
    words: Mapping[str, tuple[str, ...]]

    def phrases(self) -> dict[tuple[str, ...], str]:
        """Phrase (as a word tuple) -> class; every label also means itself."""
        table = {tuple(word.split()): label for label, words in self.words.items() for word in words}
        table.update({tuple(label.split()): label for label in self.labels})
        return table

    def matches(self, labels: Iterable[str]) -> bool:
        return _label_key(labels) == _label_key(self.labels)


def _label_key(labels: Iterable[str]) -> frozenset[str]:
    return frozenset(str(label).strip().casefold() for label in labels)


def _classes_from_raw(dataset: str, label_map: Mapping[str, str], labels: Sequence[str],
                      raw_emotion: Mapping[str, str]) -> ClassDefinition:
    """Words per class from a reader's raw-label -> class map: a class gets the words of
    every raw label merged into it, so the answer side merges exactly as the reference side."""
    words: dict[str, tuple[str, ...]] = {label: () for label in labels}
    for raw, label in label_map.items():
        emotion = raw_emotion.get(raw)
        if emotion is not None:
            words[label] = tuple(dict.fromkeys(words[label] + EMOTION_WORDS[emotion]))
    return ClassDefinition(dataset, tuple(labels), words)


@lru_cache(maxsize=1)
def class_definitions() -> tuple[ClassDefinition, ...]:
    """Every labelled dataset's class definition (imported lazily from the readers' constants)."""
    from ..data.corpora.iemocap import FOUR_CLASS, IEMOCAP_LABELS
    from ..data.corpora.meld import MELD_LABELS

    return (
        _classes_from_raw("meld", {label: label for label in MELD_LABELS}, MELD_LABELS, _MELD_EMOTION),
        _classes_from_raw("iemocap", FOUR_CLASS, IEMOCAP_LABELS, _IEMOCAP_RAW_EMOTION),
    )


def class_definition_for(labels: Iterable[str]) -> ClassDefinition | None:
    """The definition whose label set equals `labels` (order and case ignored), or None."""
    key = _label_key(labels)
    return next((d for d in class_definitions() if _label_key(d.labels) == key), None)
