"""A small synthetic English ASR set rendered locally with espeak-ng and sox.

No speech dataset can be downloaded on our machines, yet token-reduction
experiments need real audio with known transcripts. espeak-ng gives varied,
repeatable speech (voices x speeds) on which Whisper tiny.en still makes
errors (18% corpus WER at full tokens), so there is headroom to measure
degradation. Voices were chosen by measurement: other espeak-ng variants
(en-us+m3, en-gb+m7, en-gb+f2, en-us+f1...) swung between 15% and 36% WER
from one sentence subset to the next, which would make the set a test of
espeak's intelligibility rather than of token reduction.

The sentences are our own: 6-15 words, numbers spelled out, no contractions,
no hyphenated compounds and no words with British/American spelling variants,
so that reference text and model output compare the same way under both WER
normalisers (the Whisper one and the paper's lowercase-only one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["SENTENCES", "VOICES", "SPEEDS", "DemoItem", "demo_plan", "dense_plan", "build_demo_set",
           "demo_samples", "dense_demo_samples", "CALIBRATION_SENTENCES", "calibration_samples"]

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
_HASH_FILE = ".build_hash"
_MANIFEST = "manifest.jsonl"
_WAV_DIR = "wavs"


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


def _check_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found on PATH; the demo set needs both: "
            "apt-get install espeak-ng sox"
        )


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")


def _render(item: DemoItem, wav_dir: Path) -> None:
    """espeak-ng -> 22.05 kHz wav -> sox -> 16 kHz mono 16-bit; atomic rename at the end.

    `sox -R` seeds sox's dither with a fixed value: without it, each build
    writes different bytes and the set would not be reproducible.
    """
    raw, tmp, final = (wav_dir / f".{item.id}.22k.wav", wav_dir / f".{item.id}.16k.wav",
                       wav_dir / f"{item.id}.wav")
    try:
        _run(["espeak-ng", "-v", item.voice, "-s", str(item.speed), "-w", str(raw), item.text])
        _run(["sox", "-R", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(tmp)])
        os.replace(tmp, final)
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


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
) -> Path:
    """Render the demo set into `out_dir` and return its manifest path.

    Skips all work when the stored plan hash matches and every wav exists, so
    it is cheap to call before every run. The hash file is removed first and
    written last, so an interrupted build is redone rather than trusted.
    """
    out = Path(out_dir)
    plan = list(plan) if plan is not None else demo_plan(sentences, voices, speeds)
    digest = _plan_hash(plan)
    manifest, hash_file, wav_dir = out / _MANIFEST, out / _HASH_FILE, out / _WAV_DIR
    up_to_date = (
        manifest.is_file()
        and hash_file.is_file()
        and hash_file.read_text().strip() == digest
        and all((wav_dir / f"{p.id}.wav").is_file() for p in plan)
    )
    if up_to_date and not force:
        return manifest
    _check_tools()
    wav_dir.mkdir(parents=True, exist_ok=True)
    hash_file.unlink(missing_ok=True)
    wanted = {f"{p.id}.wav" for p in plan}
    for stale in wav_dir.glob("*.wav"):  # left over from a larger, older plan
        if stale.name not in wanted:
            stale.unlink()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda item: _render(item, wav_dir), plan))
    if max_seconds is not None:
        import soundfile as sf

        too_long = [(p.id, sf.info(str(wav_dir / f"{p.id}.wav")).duration) for p in plan]
        too_long = [(i, d) for i, d in too_long if d > max_seconds]
        if too_long:
            raise RuntimeError(f"clips longer than {max_seconds} s: {too_long}; use fewer sentences per clip")
    lines = [
        json.dumps({"id": p.id, "audio": f"{_WAV_DIR}/{p.id}.wav", "text": p.text,
                    "voice": p.voice, "speed": p.speed})
        for p in plan
    ]
    tmp_manifest = out / f".{_MANIFEST}.tmp"
    tmp_manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, manifest)
    hash_file.write_text(digest + "\n")
    return manifest


def demo_samples(root: str | Path, limit: int | None = None) -> list:
    """The demo set as manifest samples, built first when missing (the
    ``dataset=demo`` config)."""
    from .manifest import load_manifest

    return load_manifest(build_demo_set(root), limit=limit)


def dense_demo_samples(root: str | Path, limit: int | None = None) -> list:
    """The dense-speech demo set (``dataset=demo_dense``): 16 clips of about
    20-30 s of espeak-ng speech, built on first use."""
    from .manifest import load_manifest

    return load_manifest(build_demo_set(root, plan=dense_plan(), max_seconds=DENSE_MAX_S), limit=limit)


def calibration_samples(root: str | Path, limit: int | None = None) -> list:
    """16 held-out espeak-ng utterances (``dataset=demo_calib``): sentences that appear in
    neither demo set, for calibration (Transfer-Entropy layer selection)."""
    from .manifest import load_manifest

    plan = [DemoItem(f"calib_{i:03d}", p.text, p.voice, p.speed)
            for i, p in enumerate(demo_plan(CALIBRATION_SENTENCES))]
    return load_manifest(build_demo_set(root, plan=plan), limit=limit)
