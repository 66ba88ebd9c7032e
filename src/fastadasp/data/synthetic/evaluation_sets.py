"""Evaluation sets large and varied enough to separate reduction methods (issues 17 and 18).

- ``demo_dense_large``: 60+ English clips of 20-30 s (25+ minutes) from the 378 sentences
  of ``sentences/en_dense.txt``, each sentence in one clip only, 8 espeak-ng voices x 3 speeds,
  seeded pauses of 0.3-0.9 s between sentences and, for some clips, long silence at the start,
  the end or both, so that the padding of Whisper's 30 s window differs from clip to clip.
  The 16 clips of ``demo_dense`` (2 voices, 48 sentences) were too few to say how sure a
  comparison is.
- ``demo_dense_large_noisy``: the same clips (same ids) with pink noise at 10 dB SNR.
- ``demo_multilingual``: French, Spanish, German, Italian and Portuguese from the
  ``sentences/<lang>.tsv`` pairs, two voices and two speeds per language, as single
  sentences (``form=sentences``) or dense clips of 20-30 s (``form=dense``, the default:
  Whisper base hallucinates on one sentence in a 30 s window). Every sample carries its
  transcript (``text``), English ``translation``, ``source_language``, ``target_language``
  (``en``) and ``language``, for ``task=asr``, ``task=st task.pair=<lang>_en``.
- ``demo_lid``: the five languages pooled for ``task=lid`` (``label``, ``labels``).

Voices and speeds were chosen by measurement (Whisper tiny.en and base, full tokens): the
English ones give about the WER of ``demo_dense`` (11% pooled with tiny.en); per language the
two voices and speeds that left Whisper base well above chance (``+f3`` variants were worse
everywhere). Every voice is checked to render audio of its own
(:func:`.speech.check_voices_distinct`): espeak-ng ignores some variants silently.

Every sentence is checked against the Transfer-Entropy calibration set (``demo_calib``)
before a build: calibration must never see evaluation text. Seeds are fixed and recorded
per clip, so two builds write the same bytes.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..corpora._common import CorpusError
from .clips import SAMPLE_RATE, WHISPER_WINDOW_S, Clip, ClipShape, SegmentCache, assemble, mix_at_snr, pack_clips, pink_noise, \
    write_pcm16
from .demo_sets import CALIBRATION_SENTENCES, SetContent, _read_stamp, build_owned_set, recipe_hash
from .speech import check_tools, check_voices_distinct, render_speech

__all__ = [
    "SENTENCE_DIR", "DENSE_LARGE_VOICES", "DENSE_LARGE_SPEEDS", "DENSE_LARGE_SEED", "DENSE_LARGE_SHAPE", "NOISE_SEED", "NOISE_SNR_DB",
    "LANGUAGES", "LANGUAGE_VOICES", "LANGUAGE_SPEEDS", "MULTILINGUAL_SEED", "MULTILINGUAL_SHAPE", "FORMS", "SyntheticSetError",
    "read_sentences", "read_pairs", "check_disjoint_from_calibration", "build_dense_large",
    "build_dense_large_noisy", "build_multilingual", "build_lid", "dense_large_samples",
    "dense_large_noisy_samples", "multilingual_samples", "lid_samples",
]

SENTENCE_DIR = Path(__file__).resolve().parent / "sentences"
_FORMAT_VERSION = 1  # bump when rendering or packing changes, to rebuild old folders

DENSE_LARGE_VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-gb-x-rp", "en+m1", "en-us+m3", "en+f2", "en-us+f3",
                                       "en-gb-x-gbclan")
DENSE_LARGE_SPEEDS: tuple[int, ...] = (130, 150, 170)
#: sentence order: ``default_rng(DENSE_LARGE_SEED).permutation``; clip c's lengths and pauses:
#: ``default_rng([DENSE_LARGE_SEED, c])``
DENSE_LARGE_SEED = 1800
#: clip c's noise: ``default_rng([NOISE_SEED, c])`` (recorded per clip as ``noise_seed``)
NOISE_SEED = 1801
NOISE_SNR_DB = 10.0
NOISE_LOW_HZ = 20.0

LANGUAGES: tuple[str, ...] = ("de", "es", "fr", "it", "pt")
LANGUAGE_VOICES: dict[str, tuple[str, str]] = {
    "de": ("de", "de+m3"), "es": ("es-419", "es"), "fr": ("fr", "fr+m3"), "it": ("it", "it+m3"), "pt": ("pt-br", "pt"),
}
LANGUAGE_SPEEDS: dict[str, tuple[int, int]] = {"de": (110, 130), "es": (130, 150), "fr": (110, 130),
                                               "it": (110, 130), "pt": (110, 130)}
#: language l's sentence order: ``default_rng([MULTILINGUAL_SEED, LANGUAGES.index(l)]).permutation``;
#: its dense clip c: ``default_rng([MULTILINGUAL_SEED + 1 + LANGUAGES.index(l), c])``
MULTILINGUAL_SEED = 1700
FORMS: tuple[str, ...] = ("dense", "sentences")
#: English clips: targets of 22.5-29.5 s (63 clips, 25.6 minutes from 376 sentences)
DENSE_LARGE_SHAPE = ClipShape()
#: shorter targets than English: Italian and Portuguese have 26 sentences, enough for 5 clips of 20-24 s
MULTILINGUAL_SHAPE = ClipShape(target_s=(20.3, 23.0))
#: silence around a single-sentence utterance (seconds)
_SENTENCE_EDGE_S = 0.25
_WAV_DIR = "wavs"
_DEFAULT_WORKERS = os.cpu_count() or 2


class SyntheticSetError(CorpusError):
    """A synthetic set cannot be built as asked (unknown language or form, bad sentence file, overlap
    with the calibration set)."""


# ------------------------------------------------------------------------------------------- material


def read_sentences(path: Path = SENTENCE_DIR / "en_dense.txt") -> list[str]:
    """One sentence per line (blank lines refused: they would shift every index)."""
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        raise SyntheticSetError(f"{path}:{blank[0]}: blank line in a sentence file")
    return lines


def read_pairs(language: str, path: Path | None = None) -> list[tuple[str, str]]:
    """``(sentence, English translation)`` pairs of ``sentences/<language>.tsv``."""
    path = path or SENTENCE_DIR / f"{language}.tsv"
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").rstrip("\n").split("\n"), 1):
        fields = line.split("\t")
        if len(fields) != 2 or not all(f.strip() for f in fields):
            raise SyntheticSetError(f"{path}:{n}: expected 'sentence<TAB>English translation', got {line[:60]!r}")
        pairs.append((fields[0], fields[1]))
    return pairs


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def check_disjoint_from_calibration(texts: Iterable[str], set_name: str) -> None:
    """Refuse a set that shares a sentence (case and punctuation ignored) with the held-out
    Transfer-Entropy calibration set ``demo_calib``: calibration must never see evaluation text."""
    held_out = {_normalise(s) for s in CALIBRATION_SENTENCES}
    shared = [t for t in texts if _normalise(t) in held_out]
    if shared:
        raise SyntheticSetError(f"{set_name} shares {len(shared)} sentence(s) with the calibration set demo_calib "
                                f"(first: {shared[0]!r}); remove them from the set's sentences")


def _check_language(language: str | None, form: str) -> None:
    if language is None or language == "auto":
        raise SyntheticSetError(
            f"demo_multilingual needs a language: give dataset.language (one of {', '.join(LANGUAGES)}); it follows "
            "task.pair with task=st (e.g. task.pair=es_en) and model.language when that names one")
    if language not in LANGUAGES:
        raise SyntheticSetError(
            f"demo_multilingual has no {language!r} speech: dataset.language must be one of {', '.join(LANGUAGES)} "
            "(with task=st it follows task.pair, e.g. task.pair=es_en; English speech: dataset=demo_dense_large)")
    if form not in FORMS:
        raise SyntheticSetError(f"unknown form {form!r}: dataset.form must be one of {', '.join(FORMS)}")


# ---------------------------------------------------------------------------------------- rendering


def _render(text: str, voice: str, speed: int) -> np.ndarray:
    return render_speech(text, voice=voice, speed=speed, sr=SAMPLE_RATE)


def _combos(voices: Sequence[str], speeds: Sequence[int]) -> list[tuple[str, int]]:
    """Clip c gets voice c % V and speed (c // V) % S: every V * S clips cover all pairs."""
    return [(voices[c % len(voices)], int(speeds[(c // len(voices)) % len(speeds)]))
            for c in range(len(voices) * len(speeds))]


def _clip_row(clip: Clip, texts: Sequence[str], cache: SegmentCache) -> dict:
    speech = sum(cache.seconds((texts[i], clip.voice, clip.speed)) for i in clip.sentences)
    return {"id": clip.id, "audio": f"{_WAV_DIR}/{clip.id}.wav", "text": " ".join(texts[i] for i in clip.sentences),
            "voice": clip.voice, "speed": clip.speed, "sentence_index": list(clip.sentences),
            "duration_s": round(speech + sum(clip.pauses_s) + clip.lead_s + clip.trail_s, 3),
            "pauses_s": list(clip.pauses_s), "lead_s": clip.lead_s, "trail_s": clip.trail_s}


def _clip_writer(clips: Sequence[Clip], rows: list[dict], texts: Sequence[str], cache: SegmentCache,
                 workers: int) -> Callable[[Path], None]:
    """Writes each clip's wav in parallel and records the gain it needed (1.0 unless it would clip);
    a clip past Whisper's 30 s window (impossible by packing) is refused rather than written."""
    def write_audio(wav_dir: Path) -> None:
        def one(k: int) -> None:
            audio = assemble(clips[k], texts, cache)
            if len(audio) > WHISPER_WINDOW_S * SAMPLE_RATE:
                raise RuntimeError(f"clip {clips[k].id} is {len(audio) / SAMPLE_RATE:.2f} s, past {WHISPER_WINDOW_S} s")
            rows[k]["gain"] = round(write_pcm16(wav_dir / f"{clips[k].id}.wav", audio), 6)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(one, range(len(clips))))
    return write_audio


# ------------------------------------------------------------------------------------ English dense


def build_dense_large(out_dir: str | Path, *, sentences: Sequence[str] | None = None,
                      voices: Sequence[str] = DENSE_LARGE_VOICES, speeds: Sequence[int] = DENSE_LARGE_SPEEDS,
                      seed: int = DENSE_LARGE_SEED, max_clips: int | None = None, shape: ClipShape = DENSE_LARGE_SHAPE,
                      force: bool = False, workers: int = _DEFAULT_WORKERS, require_demo_name: bool = False,
                      set_name: str = "demo_dense_large") -> Path:
    """The large English dense set (module docstring) into ``out_dir``; returns its manifest.
    ``sentences``/``max_clips`` build a slice (tests); a second call with the same arguments
    returns at once."""
    texts = list(sentences) if sentences is not None else read_sentences()
    check_disjoint_from_calibration(texts, set_name)
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(texts))]
    shuffled = [texts[i] for i in order]
    recipe = recipe_hash({"v": _FORMAT_VERSION, "set": set_name, "texts": texts, "voices": list(voices),
                          "speeds": list(speeds), "seed": seed, "max_clips": max_clips, "shape": repr(shape)})

    def prepare() -> SetContent:
        check_tools()
        check_voices_distinct(voices)
        cache = SegmentCache(_render, workers)
        clips = pack_clips(shuffled, _combos(voices, speeds), cache, seed=seed, id_prefix="dl_", shape=shape,
                           max_clips=max_clips)
        rows = [{**_clip_row(c, shuffled, cache), "sentence_index": [order[i] for i in c.sentences], "language": "en"}
                for c in clips]
        return SetContent(rows, _clip_writer(clips, rows, shuffled, cache, workers))

    return build_owned_set(out_dir, set_name=set_name, recipe=recipe, prepare=prepare, force=force,
                           require_demo_name=require_demo_name, id_prefix="dl")


def _read_complete_stamp(folder: Path, set_name: str) -> dict:
    stamp = _read_stamp(folder) if folder.is_dir() else None
    if not (stamp is not None and stamp["set"] == set_name and stamp.get("complete") is True):
        raise SyntheticSetError(f"{folder} holds no complete {set_name} set: build it first "
                                f"(python scripts/build_demo_set.py --set {set_name} --out {folder})")
    return stamp


def build_dense_large_noisy(out_dir: str | Path, clean_dir: str | Path, *, snr_db: float = NOISE_SNR_DB,
                            seed: int = NOISE_SEED, force: bool = False, workers: int = _DEFAULT_WORKERS,
                            require_demo_name: bool = False, clean_set: str = "demo_dense_large") -> Path:
    """The clips of the built clean set in ``clean_dir`` mixed with pink noise (20 Hz-8 kHz) at
    ``snr_db`` over each whole clip's mean power; clip c's noise from ``default_rng([seed, c])``.
    A mixture that would clip is scaled down as a whole (``gain`` in its row)."""
    from ..manifest import load_manifest

    clean_dir = Path(clean_dir)
    stamp = _read_complete_stamp(clean_dir, clean_set)
    recipe = recipe_hash({"v": _FORMAT_VERSION, "clean": stamp["files"], "snr_db": float(snr_db), "seed": seed,
                          "noise": "pink", "low_hz": NOISE_LOW_HZ})

    def prepare() -> SetContent:
        import soundfile as sf

        clean = load_manifest(clean_dir / "manifest.jsonl")
        rows = [{"id": s.id, "audio": f"{_WAV_DIR}/{s.id}.wav", "text": s.text,
                 **{k: v for k, v in s.extra.items() if k != "gain"}, "clean_gain": s.extra.get("gain", 1.0),
                 "noise": "pink", "noise_band_hz": [NOISE_LOW_HZ, SAMPLE_RATE / 2], "snr_db": float(snr_db),
                 "noise_seed": [seed, k]} for k, s in enumerate(clean)]

        def one(k: int, wav_dir: Path) -> None:
            pcm, rate = sf.read(str(clean[k].audio_path), dtype="int16")
            if rate != SAMPLE_RATE or pcm.ndim != 1:
                raise SyntheticSetError(f"{clean[k].audio_path}: expected 16 kHz mono, got {rate} Hz, shape {pcm.shape}")
            speech = pcm.astype(np.float32) / 32768.0
            mixture = mix_at_snr(speech, pink_noise(len(speech), np.random.default_rng([seed, k]), NOISE_LOW_HZ), snr_db)
            rows[k]["gain"] = round(write_pcm16(wav_dir / f"{clean[k].id}.wav", mixture), 6)

        def write_audio(wav_dir: Path) -> None:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                list(pool.map(lambda k: one(k, wav_dir), range(len(clean))))

        return SetContent(rows, write_audio)

    return build_owned_set(out_dir, set_name=f"{clean_set}_noisy", recipe=recipe, prepare=prepare, force=force,
                           require_demo_name=require_demo_name, id_prefix="dl")


# ------------------------------------------------------------------------------------ multilingual


def _language_content(language: str, form: str, pairs: Sequence[tuple[str, str]], max_items: int | None,
                      shape: ClipShape, workers: int) -> tuple[list[dict], Callable[[Path], None]]:
    """Rows and writer of one language's set (renders in memory; nothing written yet)."""
    number = LANGUAGES.index(language)
    voices, speeds = LANGUAGE_VOICES[language], LANGUAGE_SPEEDS[language]
    check_voices_distinct(voices)
    order = [int(i) for i in np.random.default_rng([MULTILINGUAL_SEED, number]).permutation(len(pairs))]
    texts, translations = [pairs[i][0] for i in order], [pairs[i][1] for i in order]
    cache = SegmentCache(_render, workers)
    if form == "dense":
        clips = pack_clips(texts, _combos(voices, speeds), cache, seed=MULTILINGUAL_SEED + 1 + number,
                           id_prefix=f"{language}_dense_", shape=shape, max_clips=max_items)
    else:
        chosen = range(len(texts) if max_items is None else min(max_items, len(texts)))
        combos = _combos(voices, speeds)
        clips = [Clip(f"{language}_sent_{i:03d}", i, *combos[i % len(combos)], (i,), (), _SENTENCE_EDGE_S,
                      _SENTENCE_EDGE_S) for i in chosen]
        cache.ensure([(texts[c.number], c.voice, c.speed) for c in clips])
    rows = [{**_clip_row(c, texts, cache), "sentence_index": [order[i] for i in c.sentences],
             "translation": " ".join(translations[i] for i in c.sentences), "language": language,
             "source_language": language, "target_language": "en", "form": form} for c in clips]
    return rows, _clip_writer(clips, rows, texts, cache, workers)


def _multilingual_recipe(language: str, form: str, pairs: Sequence[tuple[str, str]], max_items: int | None,
                         shape: ClipShape) -> dict:
    return {"v": _FORMAT_VERSION, "language": language, "form": form, "pairs": [list(p) for p in pairs],
            "voices": list(LANGUAGE_VOICES[language]), "speeds": list(LANGUAGE_SPEEDS[language]),
            "seed": MULTILINGUAL_SEED, "max_items": max_items, "shape": repr(shape)}


def build_multilingual(out_dir: str | Path, language: str | None, form: str = "dense", *,
                       pairs: Sequence[tuple[str, str]] | None = None, max_items: int | None = None,
                       shape: ClipShape = MULTILINGUAL_SHAPE, force: bool = False, workers: int = _DEFAULT_WORKERS,
                       require_demo_name: bool = False) -> Path:
    """One language's set (``form`` dense clips or single sentences) into ``out_dir``."""
    _check_language(language, form)
    pairs = list(pairs) if pairs is not None else read_pairs(language)
    check_disjoint_from_calibration([t for pair in pairs for t in pair], f"demo_multilingual ({language})")

    def prepare() -> SetContent:
        check_tools()
        return SetContent(*_language_content(language, form, pairs, max_items, shape, workers))

    return build_owned_set(out_dir, set_name=f"demo_multilingual_{language}_{form}",
                           recipe=recipe_hash(_multilingual_recipe(language, form, pairs, max_items, shape)),
                           prepare=prepare, force=force, require_demo_name=require_demo_name, id_prefix=language)


def build_lid(out_dir: str | Path, form: str = "dense", *, languages: Sequence[str] = LANGUAGES,
              max_items_per_language: int | None = None, shape: ClipShape = MULTILINGUAL_SHAPE, force: bool = False,
              workers: int = _DEFAULT_WORKERS, require_demo_name: bool = False) -> Path:
    """The languages' sets pooled for language identification: the same audio as
    ``demo_multilingual`` (same ids), interleaved by language so that ``limit`` keeps every
    language, each sample with ``label`` (its language) and ``labels`` (the set's languages)."""
    for language in languages:
        _check_language(language, form)
    labels = sorted(languages)
    material = {language: read_pairs(language) for language in labels}
    for language, pairs in material.items():
        check_disjoint_from_calibration([t for pair in pairs for t in pair], f"demo_lid ({language})")
    recipe = recipe_hash({"lid": [_multilingual_recipe(lang, form, material[lang], max_items_per_language, shape)
                                  for lang in labels]})

    def prepare() -> SetContent:
        check_tools()
        parts = [_language_content(lang, form, material[lang], max_items_per_language, shape, workers) for lang in labels]
        rows = [{**row, "label": row["language"], "labels": labels}
                for round_ in _round_robin([rows for rows, _ in parts]) for row in round_]

        def write_audio(wav_dir: Path) -> None:
            for _, write in parts:
                write(wav_dir)
            gains = {row["id"]: row["gain"] for part_rows, _ in parts for row in part_rows}
            for row in rows:
                row["gain"] = gains[row["id"]]

        return SetContent(rows, write_audio)

    return build_owned_set(out_dir, set_name=f"demo_lid_{form}", recipe=recipe, prepare=prepare, force=force,
                           require_demo_name=require_demo_name, id_prefix="lid")


def _round_robin(groups: Sequence[Sequence[dict]]) -> list[list[dict]]:
    """Rounds of one item per group (groups of different lengths: the shorter ones stop)."""
    return [[g[k] for g in groups if k < len(g)] for k in range(max(map(len, groups), default=0))]


# ---------------------------------------------------------------------------- dataset configs


def dense_large_samples(root: str | Path, limit: int | None = None) -> list:
    """``dataset=demo_dense_large``: built on first use, only into a folder the builder owns."""
    from ..manifest import load_manifest

    return load_manifest(build_dense_large(root, require_demo_name=True), limit=limit)


def dense_large_noisy_samples(root: str | Path, clean_root: str | Path, snr_db: float = NOISE_SNR_DB,
                              limit: int | None = None) -> list:
    """``dataset=demo_dense_large_noisy``: the clean set built first (in ``clean_root``), then mixed."""
    from ..manifest import load_manifest

    build_dense_large(clean_root, require_demo_name=True)
    return load_manifest(build_dense_large_noisy(root, clean_root, snr_db=snr_db, require_demo_name=True), limit=limit)


def multilingual_samples(root: str | Path, language: str | None, form: str = "dense", limit: int | None = None) -> list:
    """``dataset=demo_multilingual dataset.language=fr [dataset.form=sentences]``."""
    from ..manifest import load_manifest

    return load_manifest(build_multilingual(root, language, form, require_demo_name=True), limit=limit)


def lid_samples(root: str | Path, form: str = "dense", limit: int | None = None) -> list:
    """``dataset=demo_lid``: the five languages pooled, ``label``/``labels`` for ``task=lid``."""
    from ..manifest import load_manifest

    return load_manifest(build_lid(root, form, require_demo_name=True), limit=limit)
