"""Readers for corpora in the layouts they ship in (no conversion step).

One small module per layout; each exposes `load_<name>(root, split=..., limit=None, ...)`
returning `list[Sample]` with the canonical fields (text, translation, label/labels,
captions, question/answer, choices) and is referenced by `configs/dataset/<name>.yaml`.
"""

from ._common import CorpusError

__all__ = ["CorpusError"]
