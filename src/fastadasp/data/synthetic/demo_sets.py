"""A small synthetic English ASR set rendered locally with espeak-ng and sox.

No speech dataset can be downloaded on our machines, yet token-reduction
experiments need real audio with known transcripts. espeak-ng gives varied,
repeatable speech (voices x speeds) on which Whisper tiny.en still makes
errors (18% corpus WER at full tokens), so there is headroom to measure
degradation. Voices were chosen by measurement: other espeak-ng variants
(en-us+m3, en-gb+m7, en-gb+f2, en-us+f1...) swung between 15% and 36% WER
from one sentence subset to the next, which would make the set a test of
espeak's intelligibility rather than of token reduction.

Note: the two VOICES are really two male voices. espeak-ng (1.51 here) drops the
``+f3`` variant of ``en-gb`` without a warning: ``en-gb+f3`` renders byte-identical
audio to ``en-gb``. The shipped sets keep these names (their content and scores stay
comparable); the newer sets (:mod:`.evaluation_sets`) check every voice with
:func:`.speech.check_voices_distinct` and refuse a variant that is ignored.

The sentences are our own: 6-15 words, numbers spelled out, no contractions,
no hyphenated compounds and no words with British/American spelling variants,
so that reference text and model output compare the same way under both WER
normalisers (the Whisper one and the paper's lowercase-only one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from .speech import check_tools, speak

from ..corpora._common import CorpusError

__all__ = ["SENTENCES", "VOICES", "SPEEDS", "DemoItem", "DemoFolderError", "STAMP_FILE", "demo_plan", "dense_plan",
           "build_demo_set", "demo_samples", "dense_demo_samples", "CALIBRATION_SENTENCES", "calibration_plan",
           "calibration_samples", "SetContent", "build_owned_set", "recipe_hash"]

SENTENCES: tuple[str, ...] = (
    "The old lighthouse keeper climbed the stairs every evening before sunset.",
    "Please remember to water the tomato plants while we are away.",
    "Our train leaves the station at seven in the morning.",
    "She bought three loaves of bread and a jar of honey.",
    "The committee will announce its decision after the summer holidays.",
    "A cold wind swept across the empty parking lot last night.",
    "He spent twenty minutes searching for his keys under the sofa.",
    "The museum opens its new exhibition on ancient maps next week.",
    "Children were laughing and splashing in the shallow water all afternoon.",
    "Could you turn down the music while I finish this phone call?",
    "The bakery on the corner sells fresh bread every single morning.",
    "Scientists measured the temperature of the lake at four different depths.",
    "My grandmother keeps a small garden full of herbs and flowers.",
    "The bus was late again, so we decided to walk home.",
    "Two small boats drifted slowly along the rocky shore.",
    "Heavy rain is expected across the northern valleys tomorrow afternoon.",
    "The teacher asked everyone to read the first chapter by Friday.",
    "A friendly dog followed us all the way to the village square.",
    "They painted the kitchen walls a soft shade of yellow.",
    "The library will be closed for repairs until the end of the month.",
    "I think the meeting should start a little earlier on Monday.",
    "Fresh snow covered the mountain road and slowed the traffic.",
    "The pilot told the passengers to stay in their seats.",
    "We counted eleven bright stars above the quiet farmhouse.",
    "His brother fixed the broken bicycle wheel in less than an hour.",
    "The soup needs more salt and a little black pepper.",
    "Several birds gathered on the wire outside my bedroom window.",
    "The students built a simple robot that could follow a line.",
    "Nobody noticed the clock had stopped until the guests arrived.",
    "The river rises quickly in spring when the snow begins to melt.",
    "She wrote a long letter to her cousin who lives abroad.",
    "Please leave your muddy boots by the door before coming inside.",
    "The hotel offers a quiet room with a view of the sea.",
    "A single candle lit the narrow hallway during the storm.",
    "The farmer sold nine baskets of apples at the market.",
    "We should pack extra water because the hike is quite long.",
    "The orchestra rehearsed the final piece until late in the evening.",
    "Her new job starts on the first day of next month.",
    "The old bridge was repaired after the flood last autumn.",
    "He always drinks a cup of tea before going to bed.",
    "The doctor said the test results would arrive in two days.",
    "A tall tree fell across the road during the night.",
    "Our friends are planning a picnic by the lake on Sunday.",
    "The printer ran out of paper in the middle of the report.",
    "Five students volunteered to clean the beach on Saturday morning.",
    "The chef cut the vegetables into thin strips for the salad.",
    "Every winter the pond freezes and people skate across it.",
    "The quiet town changed a lot after the factory closed.",
)
#: held-out sentences (none of them in SENTENCES) for calibration, e.g. Transfer-Entropy layer
#: selection, so calibration never sees the evaluation text
CALIBRATION_SENTENCES: tuple[str, ...] = (
    "The gardener planted a row of young pear trees along the fence.",
    "A light fog rolled in from the harbour just after midnight.",
    "Our neighbours invited us to dinner on the first warm evening of spring.",
    "The engineer checked every bolt on the crane before the lift.",
    "Thousands of people gathered in the park to watch the fireworks.",
    "The old piano in the hall has not been tuned for years.",
    "He carried the heavy boxes up four flights of stairs.",
    "The market stall sold honey, cheese and fresh eggs from the farm.",
    "A young fox crossed the field and vanished into the woods.",
    "The radio announcer read the weather report twice that morning.",
    "Please close the windows before the rain starts this evening.",
    "The baker wakes at four to prepare the dough for the day.",
    "Seven sailors repaired the torn sail while the ship waited in port.",
    "The choir sang softly as the lights dimmed in the church.",
    "We followed a narrow path that climbed toward the waterfall.",
    "The clerk stamped the form and handed it back with a smile.",
)
VOICES: tuple[str, ...] = ("en-us", "en-gb+f3")
SPEEDS: tuple[int, ...] = (130, 145, 160)  # espeak-ng words per minute

_FORMAT_VERSION = 1  # bump when rendering commands change, to invalidate old builds
_MANIFEST = "manifest.jsonl"
_WAV_DIR = "wavs"
#: written by the builder into every folder it owns; nothing else marks a folder as the builder's
STAMP_FILE = ".fastadasp_demo_set.json"
_LEGACY_HASH_FILE = ".build_hash"  # the stamp of builds before STAMP_FILE (plan hash only)
#: a new or empty folder is claimed for a demo set only when its name contains this (dataset configs)
DEMO_NAME_MARK = "demo"
#: what a user who points a demo dataset at their own folder most likely wanted instead
_OWN_DATA_HINT = "to evaluate your own recordings use dataset=manifest dataset.path=<your manifest.jsonl>"


class DemoFolderError(CorpusError):
    """The demo set would be built into a folder the builder does not own (a user's folder)."""


@dataclass(frozen=True)
class DemoItem:
    """One utterance to render: its id, transcript, espeak-ng voice and speed."""

    id: str
    text: str
    voice: str
    speed: int


def demo_plan(
    sentences: Sequence[str] = SENTENCES,
    voices: Sequence[str] = VOICES,
    speeds: Sequence[int] = SPEEDS,
) -> list[DemoItem]:
    """Assign each sentence one voice and speed, cycling so all combinations appear.

    Sentence i gets voice i % V and speed (i // V) % S: every run of V * S
    sentences covers all voice/speed pairs (2 x 3 by default).
    """
    if not sentences or not voices or not speeds:
        raise ValueError("sentences, voices and speeds must all be non-empty")
    nv, ns = len(voices), len(speeds)
    return [
        DemoItem(f"demo_{i:03d}", text, voices[i % nv], int(speeds[(i // nv) % ns]))
        for i, text in enumerate(sentences)
    ]


#: dense set: clips of about 20-30 s, several sentences each, so that most of Whisper's 1,500
#: encoder positions carry speech (the 4 s demo clips leave about 85% of them padding, and
#: reduction then mostly merges silence)
DENSE_SENTENCES_PER_CLIP = 6
DENSE_SPEED = 150
DENSE_MAX_S = 30.0


def dense_plan(sentences: Sequence[str] = SENTENCES, voices: Sequence[str] = VOICES,
               per_clip: int = DENSE_SENTENCES_PER_CLIP, speed: int = DENSE_SPEED) -> list[DemoItem]:
    """Clips of ``per_clip`` consecutive sentences, one set of clips per voice;
    each voice starts its grouping at another offset, so no clip repeats
    another's sentence sequence (2 voices x 8 clips by default)."""
    n = len(sentences)
    items = []
    for v, voice in enumerate(voices):
        offset = (v * per_clip // len(voices)) % n
        order = [sentences[(offset + i) % n] for i in range(n)]
        for c in range(n // per_clip):
            text = " ".join(order[c * per_clip : (c + 1) * per_clip])
            items.append(DemoItem(f"dense_{v}{c:02d}", text, voice, speed))
    return items


def _plan_hash(plan: list[DemoItem]) -> str:
    payload = json.dumps({"v": _FORMAT_VERSION, "items": [asdict(p) for p in plan]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _render(item: DemoItem, wav_dir: Path) -> None:
    """One item as ``wav_dir/<id>.wav``: 16 kHz mono 16-bit, written atomically (seeded dither,
    so a rebuild writes the same bytes)."""
    speak(item.text, wav_dir / f"{item.id}.wav", voice=item.voice, speed=item.speed)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` (links included, never followed) as a posix path relative
    to it; folders themselves are not listed, so a tree of empty folders holds nothing."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        found += [(rel / name).as_posix() for name in filenames + links]
    return sorted(found)


def _is_scratch(rel: str) -> bool:
    """Files a build writes for a moment (renders, the manifest and the stamp before their
    atomic rename); one interrupted hard enough leaves them behind."""
    return bool(re.fullmatch(rf"{_WAV_DIR}/\.[^/]+\.(22k|16k)\.wav|\.{_MANIFEST}\.tmp|{re.escape(STAMP_FILE)}\.tmp", rel))


def _describe(files: list[str], limit: int = 3) -> str:
    shown = ", ".join(files[:limit])
    return f"{shown}, ... ({len(files)} files)" if len(files) > limit else shown


def _refuse_foreign(root: Path, foreign: list[str], from_config: bool,
                    what: str = "files the demo-set builder did not write") -> DemoFolderError:
    own_manifest = root / _MANIFEST
    use = (f"to evaluate the recordings it holds use dataset=manifest dataset.path={own_manifest}"
           if _MANIFEST in foreign else _OWN_DATA_HINT)
    return DemoFolderError(
        f"{root} holds {what} ({_describe(foreign)}); "
        f"the builder never writes into or cleans a folder it does not own: {use}; for the demo set "
        + (f"leave dataset.root at its default or give a new folder whose name contains '{DEMO_NAME_MARK}'"
           if from_config else "give a new or empty folder"))


def _read_stamp(root: Path) -> dict | None:
    path = root / STAMP_FILE
    if not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DemoFolderError(f"{path}: the demo-set stamp is unreadable ({exc}); nothing was changed: if {root} "
                              "holds only the demo set, remove it and run again to rebuild it") from exc
    files = stamp.get("files") if isinstance(stamp, dict) else None
    if not (isinstance(files, dict) and isinstance(stamp.get("set"), str)
            and all(re.fullmatch(rf"{_MANIFEST}|{_WAV_DIR}/[^/.][^/]*\.wav", f) for f in files)):
        raise DemoFolderError(f"{path}: the demo-set stamp lacks 'set' or lists files the builder never writes; "
                              f"nothing was changed: if {root} holds only the demo set, remove it and run again "
                              "to rebuild it")
    return stamp


def _legacy_stamp(root: Path, files: list[str], set_name: str, id_prefix: str, from_config: bool) -> dict | None:
    """A folder built before the stamp existed (it holds ``.build_hash``) read as a stamp, when
    every file in it has a name that build wrote; its file hashes are unknown (None)."""
    if _LEGACY_HASH_FILE not in files:
        return None
    wav = re.compile(rf"{_WAV_DIR}/((demo|dense|calib)_\d+)\.wav")
    foreign = [f for f in files if f not in (_LEGACY_HASH_FILE, _MANIFEST) and not _is_scratch(f)
               and not wav.fullmatch(f)]
    if foreign:
        raise _refuse_foreign(root, foreign, from_config)
    prefixes = {wav.fullmatch(f).group(2) for f in files if wav.fullmatch(f)}
    if prefixes - {id_prefix}:
        other = {"demo": "demo_asr", "dense": "demo_dense", "calib": "demo_calib"}[sorted(prefixes - {id_prefix})[0]]
        raise DemoFolderError(f"{root} holds the demo set {other!r}, not {set_name!r}: give each demo set "
                              f"its own folder (defaults data/{other} and data/{set_name})")
    plan_hash = (root / _LEGACY_HASH_FILE).read_text(encoding="utf-8").strip()
    return {"builder": __name__, "set": set_name, "plan_hash": plan_hash, "complete": True,
            "files": {f: None for f in files if f != _LEGACY_HASH_FILE and not _is_scratch(f)}}


def _owned_stamp(root: Path, set_name: str, id_prefix: str, require_demo_name: bool) -> dict | None:
    """The stamp of a folder this builder owns for ``set_name``; None for a folder it may claim
    (new or empty; with ``require_demo_name`` only if its name says it is for a demo set).
    Anything else raises :class:`DemoFolderError` and nothing is touched."""
    if root.exists() and not root.is_dir():
        raise DemoFolderError(f"{root} is a file, not a folder: the demo set needs a folder of its own; "
                              f"{_OWN_DATA_HINT}")
    files = _files_under(root) if root.is_dir() else []
    stamp = _read_stamp(root) if files else None
    if stamp is None and files:
        stamp = _legacy_stamp(root, files, set_name, id_prefix, require_demo_name)
        if stamp is None:
            raise _refuse_foreign(root, files, require_demo_name)
    if stamp is None:
        if require_demo_name and DEMO_NAME_MARK not in root.name.lower():
            state = "is empty" if root.is_dir() else "does not exist"
            raise DemoFolderError(
                f"{root} {state}: the demo dataset builds its synthetic espeak-ng set only into a new or empty "
                f"folder whose name contains '{DEMO_NAME_MARK}' (default data/{set_name}), never into a path that "
                f"may be mistyped; {_OWN_DATA_HINT}")
        return None
    if stamp["set"] != set_name:
        raise DemoFolderError(f"{root} holds the demo set {stamp['set']!r}, not {set_name!r}: give each demo set "
                              f"its own folder (defaults data/{stamp['set']} and data/{set_name})")
    ours = set(stamp["files"]) | {STAMP_FILE, _LEGACY_HASH_FILE}
    foreign = [f for f in files if f not in ours and not _is_scratch(f)]
    if foreign:
        raise _refuse_foreign(root, foreign, require_demo_name)
    changed = [f for f, digest in stamp["files"].items()
               if digest is not None and (root / f).is_file() and _sha256(root / f) != digest]
    if changed:
        raise _refuse_foreign(root, changed, require_demo_name, "files changed since the demo-set builder wrote them")
    return stamp


def _write_stamp(root: Path, stamp: dict) -> None:
    tmp = root / f"{STAMP_FILE}.tmp"
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / STAMP_FILE)


@dataclass(frozen=True)
class SetContent:
    """What a build writes: the manifest rows (each ``audio`` is ``wavs/<id>.wav``) and the
    function that writes every row's wav into the given folder (atomically, file by file); it
    may complete the rows with what only writing tells (the gain a clip needed), as the
    manifest is written after it."""

    rows: list[dict]
    write_audio: Callable[[Path], None]


def recipe_hash(recipe: dict) -> str:
    """The hash a set's stamp records: of everything its audio and manifest depend on."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def build_owned_set(
    out_dir: str | Path,
    *,
    set_name: str,
    recipe: str,
    prepare: Callable[[], SetContent],
    force: bool = False,
    require_demo_name: bool = False,
    id_prefix: str = "demo",
    expected_files: set[str] | None = None,
) -> Path:
    """Build a synthetic set into ``out_dir`` (a folder this builder owns) and return its manifest.

    The builder writes only into folders it owns: a new or empty folder (which
    it claims by writing :data:`STAMP_FILE` first) or one whose stamp names
    ``set_name`` and lists every file in it. A folder holding anything else (a
    user's manifest and wavs, a file changed since the build) is refused with a
    :class:`DemoFolderError` before anything is written or removed, and a
    rebuild removes only files the stamp lists. ``require_demo_name`` (the
    dataset configs) also refuses to claim a new or empty folder whose name
    lacks ``demo``: there a mistyped path is likelier than a wish for the demo set.

    Skips all work when the stamp's ``recipe`` hash matches and every file it lists
    (and every ``expected_files``) exists, so it is cheap to call before every run;
    ``prepare`` (which may render, in memory) runs only otherwise. The stamp is marked
    complete last, with the sha256 of every file, so an interrupted build is redone
    rather than trusted.
    """
    out = Path(out_dir)
    stamp = _owned_stamp(out, set_name, id_prefix, require_demo_name)
    manifest, wav_dir = out / _MANIFEST, out / _WAV_DIR
    up_to_date = (
        stamp is not None
        and stamp.get("complete") is True
        and stamp.get("plan_hash") == recipe
        and manifest.is_file()
        and all((out / f).is_file() for f in (expected_files if expected_files is not None else stamp["files"]))
    )
    if up_to_date and not force:
        if (out / _LEGACY_HASH_FILE).exists():  # an older build: record its files in a stamp once
            _write_stamp(out, {**stamp, "files": {f: _sha256(out / f) for f in stamp["files"] if (out / f).is_file()}})
            (out / _LEGACY_HASH_FILE).unlink()
        return manifest
    content = prepare()
    planned = {row["audio"] for row in content.rows}
    previous = dict(stamp["files"]) if stamp else {}
    out.mkdir(parents=True, exist_ok=True)
    # claim first: every file this build may leave behind is listed before it is written
    _write_stamp(out, {"builder": __name__, "set": set_name, "plan_hash": recipe, "complete": False,
                       "files": {**previous, _MANIFEST: None, **{f: None for f in planned}}})
    (out / _LEGACY_HASH_FILE).unlink(missing_ok=True)
    wav_dir.mkdir(exist_ok=True)
    for stale in sorted(set(previous) - planned - {_MANIFEST}):  # ours, from a larger or older plan
        (out / stale).unlink(missing_ok=True)
    content.write_audio(wav_dir)
    tmp_manifest = out / f".{_MANIFEST}.tmp"
    tmp_manifest.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in content.rows) + "\n",
                            encoding="utf-8")
    os.replace(tmp_manifest, manifest)
    _write_stamp(out, {"builder": __name__, "set": set_name, "plan_hash": recipe, "complete": True,
                       "files": {f: _sha256(out / f) for f in sorted(planned | {_MANIFEST})}})
    return manifest


def build_demo_set(
    out_dir: str | Path,
    *,
    sentences: Sequence[str] = SENTENCES,
    voices: Sequence[str] = VOICES,
    speeds: Sequence[int] = SPEEDS,
    force: bool = False,
    workers: int = 2,
    plan: Sequence[DemoItem] | None = None,
    max_seconds: float | None = None,
    set_name: str = "demo_asr",
    require_demo_name: bool = False,
) -> Path:
    """Render the demo set (one espeak-ng utterance per item) into `out_dir` and return its
    manifest path; :func:`build_owned_set` says which folders it writes into and when it
    skips the work."""
    plan = list(plan) if plan is not None else demo_plan(sentences, voices, speeds)

    def write_audio(wav_dir: Path) -> None:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(lambda item: _render(item, wav_dir), plan))
        if max_seconds is not None:
            import soundfile as sf

            too_long = [(p.id, sf.info(str(wav_dir / f"{p.id}.wav")).duration) for p in plan]
            too_long = [(i, d) for i, d in too_long if d > max_seconds]
            if too_long:
                raise RuntimeError(f"clips longer than {max_seconds} s: {too_long}; use fewer sentences per clip")

    def prepare() -> SetContent:
        check_tools()
        rows = [{"id": p.id, "audio": f"{_WAV_DIR}/{p.id}.wav", "text": p.text, "voice": p.voice, "speed": p.speed}
                for p in plan]
        return SetContent(rows, write_audio)

    return build_owned_set(out_dir, set_name=set_name, recipe=_plan_hash(plan), prepare=prepare, force=force,
                           require_demo_name=require_demo_name, id_prefix=plan[0].id.split("_")[0] if plan else "demo",
                           expected_files={f"{_WAV_DIR}/{p.id}.wav" for p in plan})


def demo_samples(root: str | Path, limit: int | None = None) -> list:
    """The demo set as manifest samples, built first when missing (the
    ``dataset=demo`` config); never into a folder the builder does not own."""
    from ..manifest import load_manifest

    return load_manifest(build_demo_set(root, require_demo_name=True), limit=limit)


def dense_demo_samples(root: str | Path, limit: int | None = None) -> list:
    """The dense-speech demo set (``dataset=demo_dense``): 16 clips of about
    20-30 s of espeak-ng speech, built on first use."""
    from ..manifest import load_manifest

    manifest = build_demo_set(root, plan=dense_plan(), max_seconds=DENSE_MAX_S, set_name="demo_dense",
                              require_demo_name=True)
    return load_manifest(manifest, limit=limit)


def calibration_plan() -> list[DemoItem]:
    """The held-out calibration utterances (ids ``calib_NNN``)."""
    return [DemoItem(f"calib_{i:03d}", p.text, p.voice, p.speed)
            for i, p in enumerate(demo_plan(CALIBRATION_SENTENCES))]


def calibration_samples(root: str | Path, limit: int | None = None) -> list:
    """16 held-out espeak-ng utterances (``dataset=demo_calib``): sentences that appear in
    neither demo set, for calibration (Transfer-Entropy layer selection)."""
    from ..manifest import load_manifest

    manifest = build_demo_set(root, plan=calibration_plan(), set_name="demo_calib", require_demo_name=True)
    return load_manifest(manifest, limit=limit)
