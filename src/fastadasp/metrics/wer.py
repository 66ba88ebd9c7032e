"""Corpus word (or character) error rate with a named text normaliser.

WER numbers are only comparable under the same normalisation, so the
normaliser is an explicit argument and is echoed in the result:

- "whisper_en": OpenAI Whisper's English normaliser, as packaged by
  `whisper_normalizer` (`whisper_normalizer.english.EnglishTextNormalizer`,
  which loads its own British->American spelling map): removes punctuation,
  standardises numbers and British/American spellings. Its output equals
  transformers' copy of the same normaliser fed that map (tests check it).
- "whisper_basic": Whisper's basic normaliser for other languages
  (`whisper_normalizer.basic.BasicTextNormalizer`, what Whisper's paper uses for
  non-English text): lower case, bracketed spans and punctuation removed,
  diacritics kept. It knows no language's numbers or spellings.
- "auto": per sample by its language: "whisper_en" for English, "whisper_basic"
  for every other language.
- "paper": what the FastAdaSP authors did (reference SPEC section 7): strip
  `<|...|>` tags, collapse spaces, drop the space before punctuation,
  lowercase. Punctuation stays, so it is stricter than "whisper_en".
- "none": raw text, whitespace-split.

Units: "word" (WER), "char" (CER: characters after normalisation, spaces not
counted, as Whisper's evaluation splits them) or "auto": characters for the
languages written without spaces between words (`CHARACTER_LANGUAGES`: Chinese,
Japanese, Thai, ...; Whisper's paper reports CER for them), words otherwise.

A sample's language, which "auto" needs, is in this order: its own
(`languages[i]`, the sample's `language` field), the run's (`language`: the
language the model was told), English. The result counts where the languages
came from, so a German sample scored as English cannot pass unnoticed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import jiwer

__all__ = ["CHARACTER_LANGUAGES", "NORMALIZERS", "UNITS", "corpus_wer", "language_code", "normalize"]

NORMALIZERS = ("whisper_en", "whisper_basic", "auto", "paper", "none")
UNITS = ("word", "char", "auto")
#: languages written without spaces between words: scored by characters under unit="auto"
CHARACTER_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})
#: the language of a sample that names none, when the run names none either (the prompts ask for English)
DEFAULT_LANGUAGE = "en"

_TAG = re.compile(r"<\|[^|>]*\|>")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")


@lru_cache(maxsize=1)
def _whisper_en() -> Callable[[str], str]:
    """Build the Whisper English normaliser once (it loads a ~1,700-entry spelling map)."""
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


@lru_cache(maxsize=1)
def _whisper_basic() -> Callable[[str], str]:
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def _paper(text: str) -> str:
    text = _TAG.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).lower()


def language_code(tag: Any) -> str | None:
    """A language tag's primary subtag in lower case ("es-419" -> "es", "zh_CN" -> "zh");
    None for no language (None, empty, "auto": the model was left to detect it)."""
    if tag is None:
        return None
    code = str(tag).strip().lower().replace("_", "-").split("-")[0]
    return None if code in ("", "auto", "none", "null") else code


def _resolved(normalizer: str, language: str | None) -> str:
    if normalizer != "auto":
        return normalizer
    return "whisper_en" if (language or DEFAULT_LANGUAGE) == "en" else "whisper_basic"


def normalize(text: str, normalizer: str = "whisper_en", language: str | None = None) -> str:
    """Normalise one string with the named normaliser (see module docstring); ``language``
    picks the normaliser of "auto" (English when None)."""
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {normalizer!r}; choose one of {NORMALIZERS}")
    name = _resolved(normalizer, language_code(language))
    if name == "whisper_en":
        return _whisper_en()(text)
    if name == "whisper_basic":
        return _SPACES.sub(" ", _whisper_basic()(text)).strip()
    if name == "paper":
        return _paper(text)
    return text


def _units(text: str, unit: str) -> str:
    """Space-separated scoring units: the words, or every character but spaces (grapheme clusters)."""
    if unit == "char":
        import regex

        return " ".join(regex.findall(r"\X", _SPACES.sub("", text)))
    return _SPACES.sub(" ", text).strip()


def _counts(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, int]:
    ref_words = sum(len(r.split()) for r in refs)
    if not refs:
        return {"substitutions": 0, "deletions": 0, "insertions": 0, "hits": 0, "ref_words": 0}
    out = jiwer.process_words(list(refs), list(hyps))
    return {"substitutions": out.substitutions, "deletions": out.deletions, "insertions": out.insertions,
            "hits": out.hits, "ref_words": ref_words}


def _edits_by_sample(refs: Sequence[str], hyps: Sequence[str]) -> list[int]:
    """Each sample's substitutions + deletions + insertions (jiwer aligns sample by sample)."""
    spans = {"substitute": 0, "delete": 0, "insert": 1}  # edits counted on the reference side, or the hypothesis's
    out = jiwer.process_words(list(refs), list(hyps))
    return [sum((c.hyp_end_idx - c.hyp_start_idx) if spans[c.type] else (c.ref_end_idx - c.ref_start_idx)
                for c in chunks if c.type in spans) for chunks in out.alignments]


def _rate(counts: dict[str, int]) -> float | None:
    edits = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    return 100.0 * edits / counts["ref_words"] if counts["ref_words"] else None


def corpus_wer(
    references: Sequence[str],
    hypotheses: Sequence[str],
    normalizer: str = "whisper_en",
    unit: str = "word",
    language: str | None = None,
    languages: Sequence[str | None] | None = None,
    per_sample: bool = False,
) -> dict[str, Any]:
    """Corpus error rate in percent: total edits over total reference units (not a mean of
    per-utterance rates); words, or characters (module docstring).

    ``language``: the run's language (what the model was told; None or "auto" = none);
    ``languages``: each sample's own (None where a sample has none). They choose the normaliser
    and the unit of "auto" per sample. Utterances whose reference normalises to nothing are
    allowed (their hypothesis units count as insertions); a corpus with no reference units at
    all has no defined rate and raises ValueError.

    ``normalizer`` in the result is the normaliser(s) actually used ("whisper_en",
    "whisper_en+whisper_basic", ...); with a language-dependent setting the result also names
    the setting, the languages scored (``languages``), where they came from (``language_from``:
    sample, setting or default) and a per-language breakdown when there are several.
    ``per_sample``: also each sample's edits and reference units (``per_sample``: {"edits",
    "ref_words"}), which sum to the corpus counts (bootstrap intervals: fastadasp.metrics.samplewise).
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {normalizer!r}; choose one of {NORMALIZERS}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {UNITS}")
    if languages is not None and len(languages) != len(references):
        raise ValueError(f"{len(references)} references but {len(languages)} sample languages")
    run_language = language_code(language)
    own = [language_code(x) for x in (languages if languages is not None else [None] * len(references))]
    sample_languages = [x or run_language or DEFAULT_LANGUAGE for x in own]
    sources = Counter("sample" if x else "setting" if run_language else "default" for x in own)
    used = [_resolved(normalizer, lang) for lang in sample_languages]
    units = [("char" if lang in CHARACTER_LANGUAGES else "word") if unit == "auto" else unit
             for lang in sample_languages]
    refs = [_units(normalize(r, name), u) for r, name, u in zip(references, used, units)]
    hyps = [_units(normalize(h, name), u) for h, name, u in zip(hypotheses, used, units)]
    counts = _counts(refs, hyps)
    if counts["ref_words"] == 0:
        raise ValueError("the references contain no words after normalisation; WER is undefined")
    edits_by_sample = _edits_by_sample(refs, hyps) if per_sample else None
    out: dict[str, Any] = {
        "wer": _rate(counts),
        **counts,
        "utterances": len(refs),
        "normalizer": "+".join(dict.fromkeys(used)),
        "unit": "+".join(dict.fromkeys(units)),
    }
    if normalizer == "auto" or unit == "auto" or languages is not None or run_language is not None:
        by_language = Counter(sample_languages)
        out.update({"normalizer_setting": normalizer, "unit_setting": unit, "languages": dict(by_language),
                    "language_from": dict(sources)})
        if len(by_language) > 1:
            out["per_language"] = {}
            for lang in by_language:
                pick = [i for i, x in enumerate(sample_languages) if x == lang]
                part = _counts([refs[i] for i in pick], [hyps[i] for i in pick])
                out["per_language"][lang] = {"wer": _rate(part), "ref_words": part["ref_words"],
                                             "utterances": len(pick), "unit": units[pick[0]]}
    if edits_by_sample is not None:
        out["per_sample"] = {"edits": edits_by_sample, "ref_words": [len(r.split()) for r in refs]}
    return out
