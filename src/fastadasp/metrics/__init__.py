"""Metrics: each returns a dict whose first numeric key is the headline value and which names its settings.

`accuracy` here is the module `fastadasp.metrics.accuracy`, not its function of
the same name: re-exporting the function would hide the module, and Hydra's
`_target_: fastadasp.metrics.accuracy.exact_match` would then fail to resolve.
Use `fastadasp.metrics.accuracy.accuracy` for plain accuracy.
"""

from . import accuracy
from .accuracy import answer_accuracy, classification_accuracy, exact_match, normalize_answer
from .bleu import bleu_metric, corpus_bleu
from .captions import caption_scores
from .wer import corpus_wer

__all__ = [
    "accuracy",
    "answer_accuracy",
    "bleu_metric",
    "caption_scores",
    "classification_accuracy",
    "corpus_bleu",
    "corpus_wer",
    "exact_match",
    "normalize_answer",
]
