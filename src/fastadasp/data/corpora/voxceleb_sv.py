"""A speaker-count ("SV") set built from VoxCeleb1 test clips, WavLLM's setting.

WavLLM asks "Is there only one speaker in the audio clip?" (answer yes/no) of
clips made from VoxCeleb1. Its exact list is not published, so we build one,
deterministically from (listing, n, seed), and document the rule:

- `n` clips (even), exactly half "yes" and half "no", in an order shuffled by
  `random.Random(seed)`;
- "yes": one speaker drawn uniformly among speakers with >= 2 utterances, two
  distinct utterances of that speaker concatenated;
- "no": two distinct speakers drawn uniformly, one utterance of each,
  concatenated (order as drawn);
- both classes are two utterances joined the same way (`gap_s` seconds of
  silence between, each cut to `max_utt_s` if set), so clip length and the join
  carry no label information; no (first, second) pair repeats.

Clips are written as 16 kHz 16-bit wavs with a manifest into
`out_dir/sv_n{n}_seed{seed}_{hash}/`; a later call with the same listing
(relative paths and sizes), n, seed and options re-uses it instead of
rebuilding. The `.build_hash` stamp is written last, so a cut build is redone.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import AudioError, read_audio
from ..manifest import Sample, load_manifest, write_manifest
from ._common import CorpusError, apply_limit, check_limit, require_dir

__all__ = ["SV_QUESTION", "load_voxceleb_sv", "build_sv_set"]

SV_QUESTION = "Is there only one speaker in the audio clip?"
_VERSION = 1  # bump when the construction rule changes
_SR = 16000
_STAMP = ".build_hash"


def _wav_root(root: Path) -> Path:
    """The folder holding idXXXXX/ speaker folders: root, root/wav, root/vox1_test_wav[/wav]."""
    for candidate in (root, root / "wav", root / "vox1_test_wav", root / "vox1_test_wav" / "wav"):
        if candidate.is_dir() and any(candidate.glob("id*/*/*.wav")):
            return candidate
    require_dir(root, "VoxCeleb1 root")
    raise CorpusError(f"no idXXXXX/VIDEO/NNNNN.wav files under {root} (nor under its wav/ or vox1_test_wav/)")


def _listing(wav_root: Path) -> dict[str, list[str]]:
    """speaker -> sorted relative paths of its utterances."""
    speakers: dict[str, list[str]] = {}
    for wav in sorted(wav_root.glob("id*/*/*.wav")):
        rel = wav.relative_to(wav_root).as_posix()
        speakers.setdefault(rel.split("/", 1)[0], []).append(rel)
    return speakers


def _plan(speakers: dict[str, list[str]], n: int, seed: int) -> list[dict]:
    """The (label, speakers, sources) of each clip; pure function of its arguments."""
    names = sorted(speakers)
    multi = [s for s in names if len(speakers[s]) >= 2]
    if len(names) < 2 or not multi:
        raise CorpusError(f"need >= 2 speakers and one with >= 2 utterances, found {len(names)} speakers, "
                          f"{len(multi)} with >= 2 utterances")
    rng = random.Random(seed)
    labels = ["yes"] * (n // 2) + ["no"] * (n // 2)
    rng.shuffle(labels)
    used: set[tuple[str, str]] = set()
    plan = []
    for label in labels:
        for _ in range(1000):
            if label == "yes":
                spk = rng.choice(multi)
                first, second = rng.sample(speakers[spk], 2)
                who = [spk]
            else:
                s1, s2 = rng.sample(names, 2)
                first, second = rng.choice(speakers[s1]), rng.choice(speakers[s2])
                who = [s1, s2]
            if (first, second) not in used:
                break
        else:
            raise CorpusError(f"cannot draw {n} distinct clips from {sum(map(len, speakers.values()))} "
                              "utterances: lower n")
        used.add((first, second))
        plan.append({"answer": label, "speakers": who, "sources": [first, second]})
    return plan


def _render(wav_root: Path, sources: list[str], gap_s: float, max_utt_s: float | None) -> np.ndarray:
    parts = []
    for rel in sources:
        try:
            audio = read_audio(wav_root / rel, _SR)
        except AudioError as exc:
            raise CorpusError(f"SV build: cannot use source clip: {exc}") from exc
        parts.append(audio if max_utt_s is None else audio[: int(max_utt_s * _SR)])
    gap = np.zeros(int(round(gap_s * _SR)), dtype=np.float32)
    return np.concatenate([parts[0], gap, parts[1]])


def build_sv_set(
    root: str | Path,
    out_dir: str | Path,
    n: int = 200,
    seed: int = 0,
    gap_s: float = 0.0,
    max_utt_s: float | None = None,
) -> Path:
    """Build (or re-use) the clips and return the manifest path."""
    if n < 2 or n % 2:
        raise ValueError(f"n must be an even number >= 2 (half yes, half no), got {n}")
    wav_root = _wav_root(Path(root).expanduser())
    speakers = _listing(wav_root)
    listing = [f"{rel}\t{(wav_root / rel).stat().st_size}" for utts in speakers.values() for rel in utts]
    key = json.dumps({"v": _VERSION, "listing": listing, "n": n, "seed": seed, "gap_s": gap_s,
                      "max_utt_s": max_utt_s}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()
    folder = Path(out_dir).expanduser() / f"sv_n{n}_seed{seed}_{digest[:10]}"
    manifest, stamp = folder / "manifest.jsonl", folder / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest and manifest.is_file():
        return manifest
    if folder.exists():
        shutil.rmtree(folder)  # a cut build: start clean
    (folder / "wavs").mkdir(parents=True)
    samples = []
    for i, item in enumerate(_plan(speakers, n, seed)):
        wav = folder / "wavs" / f"sv_{i:05d}.wav"
        sf.write(str(wav), _render(wav_root, item["sources"], gap_s, max_utt_s), _SR, subtype="PCM_16")
        samples.append(Sample(f"sv_{i:05d}", wav, None, {"question": SV_QUESTION, **item}))
    write_manifest(manifest, samples)
    stamp.write_text(digest + "\n")
    return manifest


def load_voxceleb_sv(
    root: str | Path,
    out_dir: str | Path,
    n: int = 200,
    seed: int = 0,
    limit: int | None = None,
    gap_s: float = 0.0,
    max_utt_s: float | None = None,
) -> list[Sample]:
    """The built SV set as samples (sorted by id); extra: question, answer ("yes" =
    one speaker), speakers, sources (paths relative to the VoxCeleb wav folder)."""
    check_limit(limit)
    manifest = build_sv_set(root, out_dir, n=n, seed=seed, gap_s=gap_s, max_utt_s=max_utt_s)
    samples = sorted(load_manifest(manifest, require_text=False), key=lambda s: s.id)
    return apply_limit(samples, limit, manifest)
