"""Whisper's special tokens and decoder prompts, read from the model's own vocabulary.

The English-only and the multilingual checkpoints number their special tokens
differently (tiny.en: end of text 50256, start of transcript 50257; base: 50257,
50258, languages from 50259), so nothing here is a fixed id: every id is looked
up by its token in the checkpoint's vocabulary (CTranslate2's ``vocabulary.txt``
or the Hugging Face tokenizer).

A decoder prompt is ``<|startoftranscript|>`` then, on a multilingual model, an
optional language token, a task token (``<|transcribe|>`` or ``<|translate|>``)
and an optional ``<|notimestamps|>``; or ``<|startoftranscript|>`` alone, which
asks for the language (the next token Whisper is trained to emit), i.e. language
identification. An English-only model takes no language or task token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["AUTO_LANGUAGE", "DecoderPrompt", "WhisperSpecialTokens", "check_language_setting",
           "is_multilingual_vocabulary"]

#: ``model.language=auto``: detect the language from the first decoder step
AUTO_LANGUAGE = "auto"
#: OpenAI's rule (``whisper/model.py``, ``is_multilingual``): the multilingual vocabulary has one more token
_MULTILINGUAL_VOCAB = 51865
_LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3})\|>$")

EOT, SOT, TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS = (
    "<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>")


def is_multilingual_vocabulary(vocab_size: int) -> bool:
    """Whether a Whisper checkpoint with ``vocab_size`` output tokens is multilingual (OpenAI's rule)."""
    return vocab_size >= _MULTILINGUAL_VOCAB


@dataclass(frozen=True)
class DecoderPrompt:
    """A checked decoder prompt: ``ids``, and where its language token is (``None``: it has none)."""

    ids: tuple[int, ...]
    language_slot: int | None
    #: the prompt ends at ``<|startoftranscript|>``: the answer is the language (one restricted step)
    detects_language: bool = False

    def with_language(self, language_id: int) -> tuple[int, ...]:
        """The ids with the language token set (inserted after ``<|startoftranscript|>`` when absent)."""
        if self.language_slot is not None:
            ids = list(self.ids)
            ids[self.language_slot] = language_id
            return tuple(ids)
        return (self.ids[0], language_id, *self.ids[1:])


@dataclass(frozen=True)
class WhisperSpecialTokens:
    """The special ids of one checkpoint, and its languages (``code -> id``; empty when English-only)."""

    eot: int
    sot: int
    translate: int
    transcribe: int
    no_timestamps: int
    languages: Mapping[str, int] = field(default_factory=dict)

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    @property
    def language_ids(self) -> list[int]:
        return list(self.languages.values())

    def code_of(self, token_id: int) -> str:
        return {v: k for k, v in self.languages.items()}[token_id]

    @classmethod
    def from_vocabulary(
        cls, vocab: Mapping[str, int], multilingual: bool, lang_ids: Sequence[int] | None = None, source: str = "?"
    ) -> WhisperSpecialTokens:
        """Look every special token up in ``vocab`` (token -> id). The languages of a
        multilingual model are the ``<|xx|>`` tokens between ``<|startoftranscript|>`` and
        ``<|translate|>``; ``lang_ids`` (CTranslate2's config.json) must name exactly those."""
        missing = [t for t in (EOT, SOT, TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS) if t not in vocab]
        if missing:
            raise ValueError(f"{source}: not a Whisper vocabulary (no {', '.join(missing)})")
        ids = {t: int(vocab[t]) for t in (EOT, SOT, TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS)}
        languages: dict[str, int] = {}
        if multilingual:
            between = sorted((i, t) for t, i in vocab.items() if ids[SOT] < i < ids[TRANSLATE])
            languages = {m.group(1): i for i, t in between if (m := _LANGUAGE_TOKEN.match(t))}
            if lang_ids is not None and sorted(lang_ids) != sorted(languages.values()):
                raise ValueError(f"{source}: lang_ids ({len(lang_ids)} ids) do not name the vocabulary's "
                                 f"{len(languages)} language tokens")
        return cls(ids[EOT], ids[SOT], ids[TRANSLATE], ids[TRANSCRIBE], ids[NO_TIMESTAMPS], languages)

    def parse_prompt(self, ids: Sequence[int], model: str) -> DecoderPrompt:
        """Check a prompt's shape (module docstring) and locate its language token; one-line errors."""
        ids = tuple(int(i) for i in ids)
        text = f"prompt {ids}"
        if not ids or ids[0] != self.sot:
            raise ConfigError(f"{model}: a Whisper {text} must start with <|startoftranscript|> ({self.sot})")
        rest = list(ids[1:])
        if not self.multilingual:
            if any(self.sot < i <= max(self.translate, self.transcribe) for i in rest):
                raise ConfigError(f"{model} is English-only: its {text} may hold no language or task token "
                                  f"(use model.family=whisper_en; model=whisper_base for other languages and "
                                  f"translation)")
            return DecoderPrompt(ids, None)
        if not rest:
            return DecoderPrompt(ids, None, detects_language=True)
        slot = 1 if rest[0] in self.languages.values() else None
        task = rest[1 if slot else 0] if len(rest) > (1 if slot else 0) else None
        if task not in (self.transcribe, self.translate):
            raise ConfigError(f"{model} is multilingual: its {text} needs <|transcribe|> or <|translate|> after "
                              f"the optional language token (use model.family=whisper, the prompts for it)")
        return DecoderPrompt(ids, slot)

    def check_language(self, language: str | None, model: str) -> None:
        """``model.language`` is unset, ``auto`` or one of the model's languages; English-only models take none."""
        if language is None:
            return
        if not self.multilingual:
            raise ConfigError(f"model.language={language}: {model} is English-only and takes no language setting; "
                              f"leave model.language unset (null), or use model=whisper_base for other languages")
        if language != AUTO_LANGUAGE and language not in self.languages:
            shown = ", ".join(list(self.languages)[:8])
            raise ConfigError(f"model.language={language!r} is not one of {model}'s {len(self.languages)} language "
                              f"codes ({shown}, ...) nor 'auto'")



def check_language_setting(language: object) -> str | None:
    """The type of ``model.language`` (before anything loads): null, 'auto' or a lower-case code."""
    if language is None:
        return None
    if not isinstance(language, str) or not language.strip():
        raise ConfigError(f"model.language must be a language code (en, fr, de, ...), 'auto' or null, got {language!r}")
    return language.strip().lower()
