"""Metrics: each returns a dict whose first numeric key is the headline value and which names its settings."""

from .accuracy import accuracy, classification_accuracy, exact_match, normalize_answer
from .bleu import corpus_bleu
from .captions import caption_scores
from .wer import corpus_wer

__all__ = [
    "accuracy",
    "caption_scores",
    "classification_accuracy",
    "corpus_bleu",
    "corpus_wer",
    "exact_match",
    "normalize_answer",
]
