"""Corpus word error rate with a named text normaliser.

WER numbers are only comparable under the same normalisation, so the
normaliser is an explicit argument and is echoed in the result:

- "whisper_en": OpenAI Whisper's English normaliser, as packaged by
  `whisper_normalizer` (`whisper_normalizer.english.EnglishTextNormalizer`,
  which loads its own British->American spelling map): removes punctuation,
  standardises numbers and British/American spellings. Its output equals
  transformers' copy of the same normaliser fed that map (tests check it).
- "paper": what the FastAdaSP authors did (reference SPEC section 7): strip
  `<|...|>` tags, collapse spaces, drop the space before punctuation,
  lowercase. Punctuation stays, so it is stricter than "whisper_en".
- "none": raw text, whitespace-split.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Sequence

import jiwer

__all__ = ["NORMALIZERS", "normalize", "corpus_wer"]

NORMALIZERS = ("whisper_en", "paper", "none")

_TAG = re.compile(r"<\|[^|>]*\|>")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")


@lru_cache(maxsize=1)
def _whisper_en() -> Callable[[str], str]:
    """Build the Whisper English normaliser once (it loads a ~1,700-entry spelling map)."""
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def _paper(text: str) -> str:
    text = _TAG.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).lower()


def normalize(text: str, normalizer: str = "whisper_en") -> str:
    """Normalise one string with the named normaliser (see module docstring)."""
    if normalizer == "whisper_en":
        return _whisper_en()(text)
    if normalizer == "paper":
        return _paper(text)
    if normalizer == "none":
        return text
    raise ValueError(f"unknown normalizer {normalizer!r}; choose one of {NORMALIZERS}")


def corpus_wer(
    references: Sequence[str], hypotheses: Sequence[str], normalizer: str = "whisper_en"
) -> dict[str, Any]:
    """Corpus WER in percent: total edits over total reference words (not a mean of per-utterance WERs).

    Utterances whose reference normalises to nothing are allowed (their
    hypothesis words count as insertions); a corpus with no reference words at
    all has no defined WER and raises ValueError.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [_SPACES.sub(" ", normalize(r, normalizer)).strip() for r in references]
    hyps = [_SPACES.sub(" ", normalize(h, normalizer)).strip() for h in hypotheses]
    ref_words = sum(len(r.split()) for r in refs)
    if ref_words == 0:
        raise ValueError("the references contain no words after normalisation; WER is undefined")
    out = jiwer.process_words(refs, hyps)
    edits = out.substitutions + out.deletions + out.insertions
    return {
        "wer": 100.0 * edits / ref_words,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "ref_words": ref_words,
        "utterances": len(refs),
        "normalizer": normalizer,
    }
