"""Miniature copies of every supported corpus, written in the corpus's REAL layout.

No corpus can be downloaded on our machines, yet each reader must be tested on
the files and quirks users actually have: FLAC + trans.txt (LibriSpeech), mp3 +
QUOTE_NONE TSVs (CoVoST 2), mp4 with an AAC 48 kHz stereo track and a
mixed-encoding CSV (MELD), odd file names and 5 captions (Clotho), annotator
rows (Clotho-AQA), idXXXXX/VIDEO/NNNNN.wav (VoxCeleb1), EmoEvaluation label
files (IEMOCAP), and the released quirks that broke readers before: U+0085 inside
MELD utterances, CoVoST 2's `train_covost` rows and a clip missing from Common
Voice's `validated.tsv` (`build_covost2(full_tsv=True)`), an X->en pair
(`pair="fr_en"`), a VoxCeleb1 trial list (`build_voxceleb(trials=True)`).
Speech is rendered with espeak-ng and sox (as the demo set is), other sounds
with sox's synth, compressed formats with soundfile (mp3) and PyAV (mp4/AAC).
Every builder is deterministic (sox -R fixes dither), writes 2-6 clips of 1-3 s,
and returns a `CorpusFixture` saying what a reader must give back.

Used by tests (tests/test_corpora.py and the runner's) and by
scripts/build_fixtures.py, which writes them all into one folder.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np
import soundfile as sf

from ..data.corpora.covost2 import NOT_IN_VALIDATED
from ..data.synthetic.demo_sets import SENTENCES
from ..data.synthetic.speech import check_tools, run_tool
from ..data.synthetic.speech import speak as _speak

__all__ = [
    "CorpusFixture", "BUILDERS", "build_all", "speak", "build_long_wav",
    "build_librispeech", "build_covost2", "build_meld", "build_clotho", "build_clotho_aqa",
    "build_voxceleb", "build_iemocap", "build_sqa_manifest", "build_hf",
]


@dataclass(frozen=True)
class CorpusFixture:
    """What a builder wrote: the dataset config name, the `root` to pass, the other
    loader arguments, per sample id the fields a reader must return, the task
    (configs/task/<task>.yaml) the corpus is evaluated with, and the rows the
    reader must leave out on purpose (reason -> ids, as `SampleList.dropped`)."""

    name: str
    root: Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: str = "asr"
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def overrides(self) -> list[str]:
        """run.py overrides that select this corpus (`dataset=<name> dataset.root=...`)."""
        key = "path" if self.name in ("manifest", "sqa", "hf") else "root"
        return [f"dataset={self.name}", f"dataset.{key}={self.root}",
                *(f"dataset.{k}={_hydra_value(v)}" for k, v in self.kwargs.items())]


def _hydra_value(value: Any) -> str:
    """A Hydra override literal: [a,b] lists, {k:v} dicts, null, true/false, plain scalars."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    return str(value)


# ---------------------------------------------------------------- audio makers

def speak(text: str, out: str | Path, *, voice: str = "en-us", speed: int = 165,
          sr: int = 16000, channels: int = 1) -> Path:
    """Render `text` with espeak-ng, converted by sox to `out` (wav/flac by suffix)."""
    return _speak(text, out, voice=voice, speed=speed, sr=sr, channels=channels)


def synth(out: str | Path, sox_synth: list[str], *, seconds: float = 2.0, sr: int = 44100) -> Path:
    """A non-speech sound: `sox -n out synth <seconds> <sox_synth...>` (e.g. ["pinknoise"])."""
    check_tools()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run_tool(["sox", "-R", "-n", "-r", str(sr), "-c", "1", "-b", "16", str(out),
          "synth", str(seconds), *sox_synth, "vol", "0.5"])
    return out


def _as_channels(wav: Path, sr: int, channels: int) -> np.ndarray:
    """(channels, n) float32 of a wav converted by sox."""
    with tempfile.TemporaryDirectory() as tmp:
        conv = Path(tmp) / "c.wav"
        run_tool(["sox", "-R", str(wav), "-r", str(sr), "-c", str(channels), "-b", "16", str(conv)])
        data, _ = sf.read(str(conv), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


def write_mp3(wav: Path, out: Path, sr: int = 48000) -> Path:
    """mp3 (MPEG layer III via libsndfile/LAME), as Common Voice ships clips."""
    mono = _as_channels(wav, sr, 1)[0]
    sf.write(str(out), mono, sr, format="MP3", subtype="MPEG_LAYER_III")
    return out


def write_mp4(wav: Path, out: Path, sr: int = 48000) -> Path:
    """An mp4 like MELD's: a tiny mpeg4 video stream and an AAC stereo track at 48 kHz."""
    audio = _as_channels(wav, sr, 2)
    fps = 5
    with av.open(str(out), "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = container.add_stream("aac", rate=sr)
        sound.layout = "stereo"
        for i in range(max(1, int(audio.shape[1] / sr * fps))):
            image = np.full((32, 32, 3), (40 * i) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        size = sound.codec_context.frame_size or 1024
        for start in range(0, audio.shape[1], size):
            chunk = np.ascontiguousarray(audio[:, start:start + size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = sr, start, Fraction(1, sr)
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return out


# ---------------------------------------------------------------- corpora

def build_librispeech(out: str | Path) -> CorpusFixture:
    """`LibriSpeech/test-clean/SPK/CHAPTER/*.flac` + `SPK-CHAPTER.trans.txt` (2 speakers, 3 utts).

    Speaker 121 sorts before 1089 as a number but after it as a string: the
    reader's order is checked against the integer order.
    """
    root = Path(out) / "LibriSpeech"
    utterances = {
        "1089-134686-0000": "he hoped there would be stew for dinner",
        "1089-134686-0001": "the lamp shone on the wooden table",
        "121-127105-0000": "she closed the window before the rain",
    }
    chapters: dict[Path, list[str]] = {}
    for utt, text in utterances.items():
        spk, chapter, _ = utt.split("-")
        folder = root / "test-clean" / spk / chapter
        speak(text, folder / f"{utt}.flac", voice="en-us" if spk == "1089" else "en-gb+f3")
        chapters.setdefault(folder, []).append(f"{utt} {text.upper()}")
    for folder, lines in chapters.items():
        (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("\n".join(lines) + "\n")
    order = sorted(utterances, key=lambda u: tuple(int(x) for x in u.split("-")))
    expected = {u: {"text": utterances[u].upper(), "speaker": u.split("-")[0]} for u in order}
    return CorpusFixture("librispeech", root, {"split": "test-clean"}, expected)


# (clip number, source sentence, translation) per pair; sentences hold bare quotes as the release does
_COVOST2_ROWS: dict[str, tuple[tuple[str, str], list[tuple[str, str, str]]]] = {
    "en_de": (("en-us", "en-gb+f3"), [
        ("19000002", 'He said "good morning" to everyone.', 'Er sagte "guten Morgen" zu allen.'),
        ("19000001", "The shop closes at six.", "Der Laden schließt um sechs."),
        ("19000003", "It's a \"small\" town, isn't it?", "Es ist eine \"kleine\" Stadt, nicht wahr?"),
    ]),
    "fr_en": (("fr", "fr+f3"), [
        ("19000002", 'Il a dit "bonjour" à tout le monde.', 'He said "hello" to everyone.'),
        ("19000001", "Le magasin ferme à six heures.", "The shop closes at six."),
        ("19000003", "C'est une petite ville, n'est-ce pas ?", "It's a small town, isn't it?"),
    ]),
}
#: the extra rows of the released TSV: (clip number, split, listed in validated.tsv)
_COVOST2_RELEASE_EXTRA = [("18000001", "train", True), ("18000002", "train_covost", True),
                          ("19000004", "test", False)]
_CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"


def build_covost2(out: str | Path, *, full_tsv: bool = False, pair: str = "en_de") -> CorpusFixture:
    """Common Voice `clips/*.mp3` of the source language + the pair's CoVoST 2 TSV (pair: en_de or
    fr_en). Sentences hold bare quotes.

    Default: the split script's `covost_v2.<pair>.test.tsv`. `full_tsv=True`: the release as
    downloaded, `covost_v2.<pair>.tsv` (path, sentence, translation, split) with a `train` and a
    `train_covost` row (both split=train) and a test row whose clip Common Voice's `validated.tsv`
    (also written, with its own columns) does not list: the reader must drop it (`dropped`).
    """
    voices, rows = _COVOST2_ROWS[pair]
    source, target = pair.split("_")
    folder = "covost2" if (pair, full_tsv) == ("en_de", False) else f"covost2_{pair}{'_released' if full_tsv else ''}"
    root = Path(out) / folder

    def clip(number: str) -> str:
        return f"common_voice_{source}_{number}.mp3"

    with tempfile.TemporaryDirectory() as tmp:
        for i, (number, sentence, _) in enumerate(rows):
            wav = speak(sentence, Path(tmp) / f"{i}.wav", voice=voices[i % 2])
            (root / "clips").mkdir(parents=True, exist_ok=True)
            write_mp3(wav, root / "clips" / clip(number))
    client = "a1b2c3d4"
    dropped: dict[str, list[str]] = {}
    if full_tsv:
        extra = [(number, f"Sentence {number}.", f"Translation {number}.", split, listed)
                 for number, split, listed in _COVOST2_RELEASE_EXTRA]
        table = [(n, s, t, "test", True) for n, s, t in rows] + extra
        lines = ["path\tsentence\ttranslation\tsplit"] + [f"{clip(n)}\t{s}\t{t}\t{sp}" for n, s, t, sp, _ in table]
        (root / f"covost_v2.{pair}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        validated = [_CV_HEADER] + [f"{client}\t{clip(n)}\t{s}\t2\t0\t\t\t" for n, s, _, _, listed in table if listed]
        (root / "validated.tsv").write_text("\n".join(validated) + "\n", encoding="utf-8")
        dropped = {NOT_IN_VALIDATED: [Path(clip(n)).stem for n, _, _, sp, listed in table
                                      if sp == "test" and not listed]}
    else:
        lines = ["path\tsentence\ttranslation\tclient_id"] + [f"{clip(n)}\t{s}\t{t}\t{client}" for n, s, t in rows]
        (root / f"covost_v2.{pair}.test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {Path(clip(n)).stem: {"text": s, "translation": t, "source_language": source,
                                     "target_language": target}
                for n, s, t in sorted(rows)}
    return CorpusFixture("covost2", root, {"pair": pair, "split": "test"}, expected, task="st", dropped=dropped)


def build_meld(out: str | Path) -> CorpusFixture:
    """`MELD.Raw/test_sent_emo.csv` + `output_repeated_splits_test/dia{D}_utt{U}.mp4`.

    The CSV reproduces the release's quirks: rows out of order, a quoted field
    with a comma, doubly-decoded UTF-8 ("heâ\\x80\\x99s"), one line in cp1252, CRLF
    line ends, and U+0085 inside an utterance (the CSVs released before late 2020:
    `str.splitlines` breaks the row there), read back as an ellipsis.
    """
    root = Path(out) / "MELD.Raw"
    videos = root / "output_repeated_splits_test"
    videos.mkdir(parents=True, exist_ok=True)
    # (dialogue, utterance, clean text, text as stored, speaker, emotion, sentiment)
    rows = [
        (1, 0, "I’m fine, thanks.", None, "Ross", "Sadness", "negative"),
        (0, 0, "Oh my God, he’s lost it.", "Oh my God, he’s lost it.".encode("utf-8").decode("latin-1"),
         "Monica", "surprise", "positive"),
        (0, 1, "Yeah, right!", None, "Chandler", "joy", "positive"),
        (2, 0, "Wait… what?", "Wait\u0085 what?", "Joey", "fear", "negative"),
    ]
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
    lines: list[bytes] = [header.encode()]
    with tempfile.TemporaryDirectory() as tmp:
        for sr_no, (dia, utt, clean, stored, speaker, emotion, sentiment) in enumerate(rows, 1):
            spoken = clean.replace("’", "'").replace("…", ",")
            wav = speak(spoken, Path(tmp) / f"{dia}_{utt}.wav", voice="en-us", speed=170)
            write_mp4(wav, videos / f"dia{dia}_utt{utt}.mp4")
            text = stored if stored is not None else clean
            line = (f'{sr_no},"{text}",{speaker},{emotion},{sentiment},{dia},{utt},3,19,'
                    '"00:14:15,055","00:14:17,183"')
            # the first row is stored in cp1252 (byte 0x92 for ’), the rest in UTF-8
            lines.append(line.encode("cp1252" if sr_no == 1 else "utf-8"))
    (root / "test_sent_emo.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    labels = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]
    expected = {f"dia{d}_utt{u}": {"text": clean, "label": emo.lower(), "labels": labels, "speaker": spk}
                for d, u, clean, _, spk, emo, _ in sorted(rows)}
    return CorpusFixture("meld", root, {"split": "test"}, expected, task="er")


def build_clotho(out: str | Path) -> CorpusFixture:
    """`clotho_captions_evaluation.csv` + `evaluation/*.wav` (sox-made sounds, 44.1 kHz),
    with a comma and quotes in file names and captions as in the release."""
    root = Path(out) / "clotho"
    clips = {
        "rain on roof, heavy.wav": (["pinknoise"], [
            "Rain falls steadily on a metal roof.", "Heavy rain is pouring down outside.",
            'A steady "shh" of rain, with no other sounds.', "Water drums on a surface without stopping.",
            "A storm of rain hits the roof continuously."]),
        "Beep_tone 440Hz.wav": (["sine", "440"], [
            "A single electronic tone plays without change.", "A steady beep sounds for a while.",
            "An electronic device emits a constant pitch.", "A high tone hums, flat and unchanging.",
            "A machine makes one long beeping sound."]),
        "wind-low.wav": (["brownnoise", "tremolo", "0.5", "60"], [
            "Wind blows softly and rises and falls.", "A low rumble of wind comes and goes.",
            "Gusts of wind pass by, strong then weak.", "A deep, windy noise swells slowly.",
            "The wind whooshes in slow waves."]),
    }
    lines = ["file_name,caption_1,caption_2,caption_3,caption_4,caption_5"]
    for name, (recipe, captions) in clips.items():
        synth(root / "evaluation" / name, recipe)
        lines.append(",".join(_csv_field(x) for x in [name, *captions]))
    (root / "clotho_captions_evaluation.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {name: {"captions": captions} for name, (_, captions) in sorted(clips.items())}
    return CorpusFixture("clotho", root, {"split": "evaluation"}, expected, task="ac")


def _csv_field(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value


# (file, question, [(answer, confidence) per annotator])
_AQA_ROWS = [
    ("rain on roof.wav", "Is it raining?", [("yes", "yes"), ("yes", "yes"), ("no", "no")]),
    ("rain on roof.wav", "What is making the sound?", [("rain", "yes"), ("Water", "maybe"), ("Rain.", "yes")]),
    ("tones.wav", "How many beeps are there?", [("three", "yes"), ("two", "no"), ("2", "no")]),
    ("tones.wav", "Is a person speaking?", [("no", "no"), ("no", "maybe"), ("yes", "no")]),
]


def build_clotho_aqa(out: str | Path) -> CorpusFixture:
    """`clotho_aqa_test.csv` (3 annotator rows per question) + `audio_files/*.wav`.

    Questions cover a clear majority, a majority over spellings ("rain"/"Rain."),
    a three-way tie (first answer wins) and an all-unconfident question (dropped
    with confident_only); `aqa_expected(confident_only=True)` gives that variant.
    """
    root = Path(out) / "clotho_aqa"
    synth(root / "audio_files" / "rain on roof.wav", ["pinknoise"])
    synth(root / "audio_files" / "tones.wav", ["sine", "880", "tremolo", "1.5", "100"], seconds=2.0)
    lines = ["file_name,QuestionText,answer,confidence"]
    for name, question, answers in _AQA_ROWS:
        lines += [",".join(_csv_field(x) for x in (name, question, a, c)) for a, c in answers]
    (root / "clotho_aqa_test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CorpusFixture("clotho_aqa", root, {"split": "test"}, aqa_expected(confident_only=False), task="aqa")


def aqa_expected(confident_only: bool) -> dict[str, dict[str, Any]]:
    """The samples the Clotho-AQA fixture must give, keyed by "file|question" (ids are hashed)."""
    winners = {  # computed by hand from _AQA_ROWS
        False: {"Is it raining?": "yes", "What is making the sound?": "rain",
                "How many beeps are there?": "three", "Is a person speaking?": "no"},
        True: {"Is it raining?": "yes", "What is making the sound?": "rain",
               "How many beeps are there?": "three"},
    }[confident_only]
    return {f"{name}|{q}": {"question": q, "answer": winners[q]}
            for name, q, _ in sorted(_AQA_ROWS, key=lambda r: (r[0], r[1])) if q in winners}


# a VoxCeleb1 trial list in the official format (veri_test2.txt): label 1 = same speaker
_SV_TRIALS = [
    ("1", "id10270/5r0dWxy17C8/00001.wav", "id10270/Zf2bXfIUB2A/00002.wav"),
    ("0", "id10270/5r0dWxy17C8/00001.wav", "id10271/Zf2bXfIUB2A/00002.wav"),
    ("1", "id10271/5r0dWxy17C8/00001.wav", "id10271/Zf2bXfIUB2A/00002.wav"),
    ("0", "id10271/5r0dWxy17C8/00001.wav", "id10272/5r0dWxy17C8/00001.wav"),
    ("1", "id10272/Zf2bXfIUB2A/00002.wav", "id10272/5r0dWxy17C8/00001.wav"),
    ("0", "id10272/Zf2bXfIUB2A/00002.wav", "id10270/Zf2bXfIUB2A/00002.wav"),
]


def build_voxceleb(out: str | Path, *, trials: bool = False) -> CorpusFixture:
    """`vox1_test_wav/wav/idXXXXX/VIDEO/NNNNN.wav` (as the zip extracts): 3 speakers
    (3 espeak-ng voices) x 2 utterances of about 1 s, and `vox1_test_wav/veri_test2.txt`,
    a 6-line trial list in the official format (3 same-speaker, 3 two-speaker trials).

    Default: the built set (n=4, seed 0; its samples are seeded, so `expected` is empty).
    `trials=True`: the set from the trial list (every trial: n=null), whose `expected`
    gives each trial's answer, speakers and sources.
    """
    root = Path(out) / "vox1_test_wav"
    speakers = {"id10270": "en-us", "id10271": "en-gb+f3", "id10272": "en-us+m3"}
    words = ["one moment please", "thank you so much", "see you later", "good evening",
             "it is cold today", "right away"]
    i = 0
    for spk, voice in speakers.items():
        for video, name in (("5r0dWxy17C8", "00001.wav"), ("Zf2bXfIUB2A", "00002.wav")):
            speak(words[i], root / "wav" / spk / video / name, voice=voice, speed=180)
            i += 1
    trial_list = root / "veri_test2.txt"
    trial_list.write_text("".join(f"{label} {a} {b}\n" for label, a, b in _SV_TRIALS), encoding="utf-8")
    if not trials:
        return CorpusFixture("voxceleb_sv", root, {"n": 4, "seed": 0}, {}, task="sv")
    expected = {f"trial{line:06d}": {"answer": "yes" if label == "1" else "no",
                                     "speakers": list(dict.fromkeys([a.split("/")[0], b.split("/")[0]])),
                                     "sources": [a, b]}
                for line, (label, a, b) in enumerate(_SV_TRIALS, start=1)}
    return CorpusFixture("voxceleb_sv", root, {"trials": str(trial_list), "n": None, "seed": 0}, expected, task="sv")


def build_iemocap(out: str | Path) -> CorpusFixture:
    """`IEMOCAP_full_release/Session{1,5}/dialog/EmoEvaluation/*.txt` + `sentences/wav/...`.

    Session 5 has neu, exc (-> happy), fru (dropped), ang, sad, hap; Session 1 one
    utterance (excluded by the default sessions=[5]); a macOS `._` file as in the
    release; transcriptions for one dialog.
    """
    root = Path(out) / "IEMOCAP_full_release"
    dialogs = {
        (5, "Ses05F_impro01"): [("Ses05F_impro01_F000", "neu", "I am waiting for my number."),
                                ("Ses05F_impro01_M000", "exc", "We got the tickets!"),
                                ("Ses05F_impro01_F001", "fru", None),
                                ("Ses05F_impro01_M001", "ang", "Stop doing that.")],
        (5, "Ses05M_script01_1"): [("Ses05M_script01_1_F000", "sad", "I miss him."),
                                   ("Ses05M_script01_1_M000", "hap", "What a lovely day.")],
        (1, "Ses01F_impro01"): [("Ses01F_impro01_F000", "neu", "Excuse me.")],
    }
    mapping = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
    expected: dict[str, dict[str, Any]] = {}
    for (session, dialog), utts in dialogs.items():
        base = root / f"Session{session}"
        evals = base / "dialog" / "EmoEvaluation"
        evals.mkdir(parents=True, exist_ok=True)
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        transcript = []
        for k, (utt, emo, text) in enumerate(utts):
            wav = base / "sentences" / "wav" / dialog / f"{utt}.wav"
            if text is None:
                synth(wav, ["brownnoise"], seconds=1.0, sr=16000)
            else:
                speak(text, wav, voice="en-us+f2" if utt.rsplit("_", 1)[1][0] == "F" else "en-us", speed=170)
            start = 2.5 * k + 1.0
            lines += [f"[{start:.4f} - {start + 2.0:.4f}]\t{utt}\t{emo}\t[2.5000, 3.0000, 2.5000]",
                      f"C-E1:\t{emo.capitalize()};\t()", "A-E3:\tval 3; act 3; dom  3;\t()", ""]
            transcript.append(f"{utt} [{start:08.4f}-{start + 2.0:08.4f}]: {text or 'Hmm.'}")
            if session == 5 and emo in mapping:
                expected[utt] = {"label": mapping[emo], "labels": ["neutral", "happy", "angry", "sad"],
                                 "text": text if dialog == "Ses05F_impro01" else None}
        (evals / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        if dialog == "Ses05F_impro01":
            trans_dir = base / "dialog" / "transcriptions"
            trans_dir.mkdir(parents=True, exist_ok=True)
            (trans_dir / f"{dialog}.txt").write_text("\n".join(["M: [BREATHING]", *transcript]) + "\n")
    (root / "Session5" / "dialog" / "EmoEvaluation" / "._Ses05F_impro01.txt").write_bytes(b"\x00\x05\x16\x07\xff")
    return CorpusFixture("iemocap", root, {"sessions": [5]}, dict(sorted(expected.items())), task="er")


def build_sqa_manifest(out: str | Path) -> CorpusFixture:
    """An SQA manifest: question, 4 choices, answer letter, spoken passage per item."""
    root = Path(out) / "sqa"
    items = [
        ("sqa_000", "The meeting starts at nine in the morning.", "When does the meeting start?",
         ["At eight", "At nine", "At ten", "At noon"], "B"),
        ("sqa_001", "Anna took the bus because her car was broken.", "Why did Anna take the bus?",
         ["Her car was broken", "She likes buses", "It was raining", "The train was late"], "A"),
    ]
    rows = []
    for sid, passage, question, choices, answer in items:
        speak(passage, root / "wavs" / f"{sid}.wav", voice="en-us", speed=165)
        rows.append({"id": sid, "audio": f"wavs/{sid}.wav", "question": question, "choices": choices,
                     "answer": answer, "transcript": passage})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    expected = {sid: {"question": q, "choices": c, "answer": a} for sid, _, q, c, a in items}
    return CorpusFixture("sqa", root / "manifest.jsonl", {}, expected, task="sqa")


def build_hf(out: str | Path) -> CorpusFixture:
    """A `save_to_disk` dataset: an Audio column (FLAC bytes, mp3 bytes, and a local
    path that save_to_disk embeds), text, and a ClassLabel emotion column. Needs the
    `datasets` package."""
    import datasets

    root = Path(out) / "hf_tiny"
    texts = ["the cat sat on the mat", "open the door please", "time to go home"]
    emotions = ["happy", "sad"]
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            wav = speak(text, Path(tmp) / f"{i}.wav", voice="en-us", speed=170)
            if i == 0:
                flac = speak(text, Path(tmp) / f"{i}.flac", voice="en-us", speed=170)
                cells.append({"bytes": flac.read_bytes(), "path": f"{i}.flac"})
            elif i == 1:
                mp3 = write_mp3(wav, Path(tmp) / f"{i}.mp3")
                cells.append({"bytes": mp3.read_bytes(), "path": f"{i}.mp3"})
            else:
                keep = root.parent / "hf_tiny_files" / f"{i}.wav"
                keep.parent.mkdir(parents=True, exist_ok=True)
                keep.write_bytes(wav.read_bytes())
                cells.append({"bytes": None, "path": str(keep)})
        # Built with Audio's storage type, then cast: datasets 5 encodes Audio cells
        # through torchcodec, which does not import here; casting storage does not.
        features = datasets.Features({
            "key": datasets.Value("string"),
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "sentence": datasets.Value("string"), "emotion": datasets.ClassLabel(names=emotions)})
        table = datasets.Dataset.from_dict(
            {"key": [f"utt{i}" for i in range(3)], "audio": cells, "sentence": texts, "emotion": [0, 1, 0]},
            features=features).cast_column("audio", datasets.Audio())
        table.save_to_disk(str(root))
    kwargs = {"split": "test", "id_column": "key", "text_column": "sentence",
              "fields": {"label": "emotion"}}
    expected = {f"utt{i}": {"text": t, "label": emotions[[0, 1, 0][i]]} for i, t in enumerate(texts)}
    return CorpusFixture("hf", root, kwargs, expected)


def build_long_wav(out: str | Path, seconds: float = 75.0, *, voice: str = "en-us",
                   speed: int = 150) -> tuple[Path, str]:
    """A `seconds`-long 16 kHz wav of demo sentences (0.3 s apart), silence-padded to
    the exact length; returns (path, transcript) for long-audio runner tests."""
    out = Path(out)
    sr, gap = 16000, np.zeros(int(0.3 * 16000), dtype=np.float32)
    target = int(round(seconds * sr))
    parts: list[np.ndarray] = []
    said: list[str] = []
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(SENTENCES * 4):
            wav = speak(sentence, Path(tmp) / f"{i}.wav", voice=voice, speed=speed)
            audio, _ = sf.read(str(wav), dtype="float32")
            piece = np.concatenate([gap, audio]) if parts else audio
            if total + len(piece) > target:
                break
            parts.append(piece)
            said.append(sentence)
            total += len(piece)
    audio = np.concatenate(parts + [np.zeros(target - total, dtype=np.float32)])
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), audio, sr, subtype="PCM_16")
    return out, " ".join(said)


BUILDERS: dict[str, Callable[[Path], CorpusFixture]] = {
    "librispeech": build_librispeech,
    "covost2": build_covost2,
    "meld": build_meld,
    "clotho": build_clotho,
    "clotho_aqa": build_clotho_aqa,
    "voxceleb_sv": build_voxceleb,
    "iemocap": build_iemocap,
    "sqa": build_sqa_manifest,
    "hf": build_hf,
}


def build_all(out: str | Path, names: list[str] | None = None) -> dict[str, CorpusFixture]:
    """Build the named (default: all) miniature corpora under `out`."""
    unknown = sorted(set(names or []) - set(BUILDERS))
    if unknown:
        raise ValueError(f"unknown fixture(s) {unknown}; choose from {sorted(BUILDERS)}")
    return {name: BUILDERS[name](Path(out)) for name in (names or BUILDERS)}
