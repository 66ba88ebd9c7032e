"""Answer parsers: map a model's free-text output to the answer a metric compares.

A parser is a callable object `parser(prediction, sample) -> str | None`;
None means the output maps to nothing ("unparsed"), which accuracy metrics
count as wrong and report separately. Every rule is deterministic and
written down here, because an accuracy number means nothing without its
parsing rule.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any, Mapping

from ..data.manifest import Sample
from ..metrics.accuracy import normalize_answer
from .classes import EMOTION_WORDS, class_definition_for

__all__ = [
    "EMOTION_SYNONYMS",
    "ChoiceAnswer",
    "LabelAnswer",
    "LanguageAnswer",
    "ShortAnswer",
    "TextAnswer",
    "YesNoAnswer",
]

_PUNCT_EXCEPT_APOSTROPHE = str.maketrans({c: " " for c in string.punctuation if c != "'"})


def _words(text: str) -> list[str]:
    """Lower-case words; punctuation splits words, apostrophes stay ("isn't")."""
    return text.lower().replace("\u2019", "'").translate(_PUNCT_EXCEPT_APOSTROPHE).split()


def _extra(sample: Sample, key: str) -> Any:
    if key not in sample.extra:
        raise ValueError(f"sample {sample.id!r} has no {key!r} field, which this task's parser needs")
    return sample.extra[key]


class TextAnswer:
    """The output itself, stripped (ASR, ST, captions). Never None: an empty output is an empty answer."""

    def __call__(self, prediction: str, sample: Sample) -> str:
        return prediction.strip()

    def __repr__(self) -> str:
        return "TextAnswer()"


# The generic emotion synonym groups (a custom label set's fallback; see `classes.py`). A group maps to
# whichever of its words is in the sample's label set: "happy" -> "joy" for labels that say "joy".
EMOTION_SYNONYMS: tuple[tuple[str, ...], ...] = tuple(EMOTION_WORDS.values())

_NEGATIONS = {"not", "no", "never", "without", "isn't", "wasn't", "aren't", "don't", "doesn't", "didn't", "nor"}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def _tokens(text: str) -> list[str]:
    """Lower-case words and single punctuation marks (they end a negation's scope)."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


class LabelAnswer:
    """Map free text to one of `sample.extra["labels"]` (ER).

    Which words mean which class follows the dataset's class definition
    (`fastadasp.tasks.classes`, chosen by the sample's label set): for IEMOCAP's
    4 classes "excited" means happy, as the reader merges exc into happy; for
    MELD's 7 labels "happy" means joy. A label set with no definition there uses
    the generic synonym groups (`EMOTION_SYNONYMS`).

    Rule, in order:
    1. Words: lower-case, punctuation removed.
    2. The whole answer is a label -> that label.
    3. Otherwise every word (or multi-word label) that is a label or one of its
       class words (plus `synonyms`: {word: a label, or a class word that
       resolves to a label}) is a mention. A mention negated by one of
       `_NEGATIONS` within the two
       words before it, with no punctuation in between, is dropped: "not happy
       but sad" -> sadness, "not very happy" -> None, but "no doubt, happy" -> joy.
    4. One distinct label among the remaining mentions -> that label; none, or
       two different labels ("happy and sad") -> None (ambiguous, unparsed).
    """

    def __init__(self, synonyms: Mapping[str, str] | None = None):
        self.synonyms = {k.lower(): v.lower() for k, v in (synonyms or {}).items()}

    def _vocabulary(self, labels: list[str]) -> dict[tuple[str, ...], str]:
        """Phrase (as a word tuple) -> label, for the labels of this sample."""
        vocab: dict[tuple[str, ...], str] = {}
        label_set = set(labels)
        definition = class_definition_for(labels)
        if definition is not None:
            vocab.update(definition.phrases())
        else:
            for group in EMOTION_SYNONYMS:
                in_set = [w for w in group if w in label_set]
                if len(in_set) == 1:  # two labels of one group stay distinct labels
                    vocab.update({(w,): in_set[0] for w in group})
        for word, target in self.synonyms.items():
            if target in label_set:
                vocab[tuple(word.split())] = target
            elif (target,) in vocab:
                vocab[tuple(word.split())] = vocab[(target,)]
        vocab.update({tuple(label.split()): label for label in labels})  # a label always means itself
        return vocab

    def __call__(self, prediction: str, sample: Sample) -> str | None:
        labels = [str(label).lower() for label in _extra(sample, "labels")]
        whole = " ".join(_words(prediction))
        if whole in labels:
            return whole
        tokens = _tokens(prediction)
        vocab = self._vocabulary(labels)
        found = set()
        for phrase, label in vocab.items():
            n = len(phrase)
            for i in range(len(tokens) - n + 1):
                if tuple(tokens[i : i + n]) == phrase and not self._negated(tokens, i):
                    found.add(label)
        return found.pop() if len(found) == 1 else None

    @staticmethod
    def _negated(tokens: list[str], i: int) -> bool:
        for token in reversed(tokens[max(0, i - 2) : i]):
            if token in _NEGATIONS:
                return True
            if not token[0].isalnum():  # punctuation ends the negation's scope
                return False
        return False

    def __repr__(self) -> str:
        return f"LabelAnswer(synonyms={self.synonyms or None})"


_YES_WORDS = {"yes", "yeah", "yep", "yup", "correct", "true", "affirmative"}
_NO_WORDS = {"no", "nope", "incorrect", "false", "negative"}
_ANSWER_IS = re.compile(r"\b(?:answer|response)\s*(?:is|:)\s*\W*(\w+)", re.IGNORECASE)
# Speaker-verification phrasings for "Is there only one speaker in the audio clip?".
_ONE_SPEAKER = re.compile(
    r"\b(?<!than )(?:only one|just one|a single|one single|single|one) (?:speaker|person|voice)\b"
    r"|\bthe same (?:speaker|person|voice)\b",
    re.IGNORECASE,
)
_MANY_SPEAKERS = re.compile(
    r"\b(?:two|three|four|2|3|4|multiple|several|many|more than one)(?: different)?"
    r" (?:speakers|people|persons|voices)\b"
    r"|\bmore than one (?:speaker|person|voice)\b"
    r"|\bdifferent (?:speakers|people|persons|voices)\b",
    re.IGNORECASE,
)


class YesNoAnswer:
    """"yes" / "no" from free text (SV: "Is there only one speaker in the audio clip?").

    Rule, in order:
    1. The first word is a yes-word (yes, yeah, yep, yup, correct, true,
       affirmative) -> "yes"; a no-word (no, nope, incorrect, false,
       negative) -> "no". The first word decides: "No, there is only one
       speaker." -> "no".
    2. "the answer is yes/no" / "answer: no" anywhere -> that word.
    3. With `speaker_phrases` (default True, for SV): a sentence about more
       than one speaker ("There are two speakers", "multiple voices",
       "different speakers") -> "no"; about one speaker ("There is only one
       speaker", "a single voice", "the same person") -> "yes"; both or a
       negated one ("not only one speaker") -> None.
    4. Otherwise None.
    """

    def __init__(self, speaker_phrases: bool = True):
        self.speaker_phrases = speaker_phrases

    def __call__(self, prediction: str, sample: Sample) -> str | None:
        words = _words(prediction)
        if not words:
            return None
        for word in (words[0], *(m.group(1).lower() for m in _ANSWER_IS.finditer(prediction))):
            if word in _YES_WORDS:
                return "yes"
            if word in _NO_WORDS:
                return "no"
        if not self.speaker_phrases:
            return None
        text = " ".join(words)
        one, many = bool(_ONE_SPEAKER.search(text)), bool(_MANY_SPEAKERS.search(text))
        negated = bool(re.search(r"\b(?:not|n't|isn't) (?:only |just )?(?:one|a single)\b", text))
        if one and not many and not negated:
            return "yes"
        if many and not one:
            return "no"
        return None

    def __repr__(self) -> str:
        return f"YesNoAnswer(speaker_phrases={self.speaker_phrases})"


_LETTER_ALONE = re.compile(r"^\W*([A-Za-z])\W*$")
_LETTER_LEADING = re.compile(r"^\s*(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[.):])(?:\s|$)")
_LETTER_BRACKETED = re.compile(r"\(([A-Za-z])\)")
_LETTER_STATED = re.compile(
    r"\b(?i:answer|option|choice)(?:\s+is)?\s*:?\s*"
    r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z])\b(?!')|([a-z])(?=\s*(?:[.,;!)]|$)))"
)


class ChoiceAnswer:
    """The letter of a multiple-choice answer (SQA): "A", "B", ...; choices in `sample.extra["choices"]`.

    Rule, in order (letters beyond the number of choices are ignored):
    1. The whole answer is a letter: "B", "b", "(b)", "B.", "[B]".
    2. Marked letters: a leading "B. a dog", "(B) a dog", "B) ...", "B: ...";
       "Answer: B", "The answer is B.", "option C"; any bracketed "(B)".
       One distinct letter -> it (the letter wins over any choice text);
       different letters ("(A) or (B)") -> None (ambiguous). A bare leading
       "A" followed by a word ("A dog barks") is an article, not a letter.
    3. Choice text: the normalised answer (`normalize_answer`) equals one
       choice's -> its letter; else the choices whose text occurs in the
       answer as whole words, dropping any that is part of a longer found
       choice ("hot dog" beats "dog"); one left -> its letter, else None.
    """

    def __call__(self, prediction: str, sample: Sample) -> str | None:
        choices = [str(c) for c in _extra(sample, "choices")]
        valid = {chr(ord("A") + i) for i in range(len(choices))}

        def letter(*groups: str | None) -> str | None:
            found = next((g for g in groups if g), None)
            return found.upper() if found and found.upper() in valid else None

        alone = _LETTER_ALONE.match(prediction)
        if alone and letter(alone.group(1)):
            return letter(alone.group(1))
        leading = _LETTER_LEADING.match(prediction)
        stated = {letter(*leading.groups())} if leading else set()
        stated |= {letter(*m.groups()) for m in _LETTER_STATED.finditer(prediction)}
        stated |= {letter(m.group(1)) for m in _LETTER_BRACKETED.finditer(prediction)}
        stated -= {None}
        if stated:
            return stated.pop() if len(stated) == 1 else None
        answer = normalize_answer(prediction)
        normalised = [normalize_answer(c) for c in choices]
        if answer in normalised and normalised.count(answer) == 1:
            return chr(ord("A") + normalised.index(answer))
        padded = f" {answer} "
        found = [i for i, c in enumerate(normalised) if c and f" {c} " in padded]
        maximal = [i for i in found if not any(j != i and f" {normalised[i]} " in f" {normalised[j]} " for j in found)]
        return chr(ord("A") + maximal[0]) if len(maximal) == 1 else None

    def __repr__(self) -> str:
        return "ChoiceAnswer()"


class ShortAnswer:
    """A normalised short answer (AQA), with the same `normalize_answer` rule as `exact_match`; empty -> None."""

    def __call__(self, prediction: str, sample: Sample) -> str | None:
        return normalize_answer(prediction) or None

    def __repr__(self) -> str:
        return "ShortAnswer()"


#: names in their own language that speech LLMs answer with, beyond Whisper's English names
_ENDONYMS = {
    "deutsch": "de", "français": "fr", "francais": "fr", "español": "es", "espanol": "es", "castellano": "es",
    "italiano": "it", "português": "pt", "portugues": "pt", "nederlands": "nl", "русский": "ru", "中文": "zh",
    "日本語": "ja", "한국어": "ko", "polski": "pl", "català": "ca", "catala": "ca",
}
_LANGUAGE_TAG = re.compile(r"<\|([a-z]{2,3})\|>")
_LANGUAGE_CODE = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]+)*")  # "de", "es-419", "zh_cn"
_ANY_SCRIPT_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # words of any script, and single punctuation marks


@lru_cache(maxsize=1)
def _language_table() -> tuple[dict[str, str], frozenset[str]]:
    """(name -> code, every code): Whisper's language table (its 99+ languages, English names and
    aliases such as "castilian" or "mandarin", from transformers) plus a few endonyms."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    names = {name.lower(): code for name, code in TO_LANGUAGE_CODE.items()}
    names.update(_ENDONYMS)
    return names, frozenset(LANGUAGES)


def _primary(tag: str) -> str:
    return tag.strip().lower().replace("_", "-").split("-")[0]


def language_of(text: str) -> str | None:
    """The language code a label or a whole answer names: a code ("de", "es-419", "<|de|>") or a
    name ("German", "Deutsch"); None for anything else."""
    names, codes = _language_table()
    text = text.strip().lower()
    tag = _LANGUAGE_TAG.fullmatch(text) or _LANGUAGE_CODE.fullmatch(text)
    if tag:
        return tag.group(1) if tag.group(1) in codes else None
    whole = " ".join(_words(text))
    return names.get(whole) or (whole if whole in codes else None)


class LanguageAnswer:
    """A language from free text, as one of `sample.extra["labels"]` (LID).

    Labels may be codes ("de", "es-419") or names ("German"); the answer is the label
    as spelled in the set. Rule, in order:
    1. A Whisper language tag (`<|de|>`) anywhere -> that language (Whisper's own answer
       is the bare code, which rule 2 reads).
    2. The whole answer is a code or a language name ("de", "German.", "Deutsch") -> it.
    3. Otherwise every language *name* in the answer is a mention ("It sounds like German");
       bare codes are not ("it", "no" are English words). A mention negated by one of
       `_NEGATIONS` within the two words before it, with no punctuation in between, is
       dropped ("not French but German" -> German). One distinct language -> it; none or
       several -> None.
    4. The language maps to the label whose code is the same (primary subtags compared:
       "es" matches "es-419"); none -> None (a language outside the set, counted unparsed).
       A sample without `labels` gets the code itself.
    Names are Whisper's language table (English names and aliases) plus a few endonyms.
    """

    def _mentions(self, prediction: str) -> set[str]:
        tag = _LANGUAGE_TAG.search(prediction.lower())
        if tag:
            return {tag.group(1)}
        whole = language_of(prediction)
        if whole is not None:
            return {whole}
        names, _ = _language_table()
        tokens = _ANY_SCRIPT_TOKEN.findall(prediction.lower().replace("\u2019", "'"))
        found = set()
        for i, token in enumerate(tokens):
            for phrase in (" ".join(tokens[i:i + 2]), token):  # two-word names first ("haitian creole")
                if phrase in names and not LabelAnswer._negated(tokens, i):
                    found.add(names[phrase])
                    break
        return found

    def __call__(self, prediction: str, sample: Sample) -> str | None:
        found = self._mentions(prediction)
        if len(found) != 1:
            return None
        code = found.pop()
        labels = sample.extra.get("labels")
        if labels is None:
            return code
        matches = [str(label) for label in labels if (language_of(str(label)) or _primary(str(label))) == code]
        return matches[0] if len(matches) == 1 else None

    def __repr__(self) -> str:
        return "LanguageAnswer()"
