"""A speaker-count ("SV") set built from VoxCeleb1 test clips, WavLLM's setting.

WavLLM asks "Is there only one speaker in the audio clip?" (answer yes/no) of
clips made from VoxCeleb1. Its exact list is not published, so by default we
build one, deterministically from (listing, n, seed), and document the rule:

- `n` clips (even), exactly half "yes" and half "no", in an order shuffled by
  `random.Random(seed)`;
- "yes": one speaker drawn uniformly among speakers with >= 2 utterances, two
  distinct utterances of that speaker concatenated;
- "no": two distinct speakers drawn uniformly, one utterance of each,
  concatenated (order as drawn);
- both classes are two utterances joined the same way (`gap_s` seconds of
  silence between, each cut to `max_utt_s` if set), so clip length and the join
  carry no label information; no (first, second) pair repeats.

With `trials` (an official VoxCeleb1 trial list such as `veri_test2.txt`: one
`LABEL ENROLMENT TEST` per line, label 1 = same speaker, paths relative to the
wav folder like `id10270/x6uYqmx31kE/00001.wav`) the pairs come from the list
instead, joined the same way (enrolment first): label 1 -> "yes", 0 -> "no", so
results are comparable across papers. `n=null` takes every trial; an even `n`
takes n/2 trials of each label drawn with `random.Random(seed)`, in file order.
Sample ids are `trial<LINE>` (the trial's line in the list, 6 digits), stable across n and
seed. A malformed line is a CorpusError naming file:line. A chosen trial naming
a wav that is not there is a CorpusError listing the missing clips, not a
per-sample failure: a trial list is a fixed benchmark, a score on part of it is
not comparable to anyone's, and the usual cause (a wrong root, the dev wavs, a
partial extract) concerns every trial, so it is reported before any clip is built.

Clips are written as 16 kHz 16-bit wavs with a manifest into
`out_dir/sv_n{n}_seed{seed}_{hash}/` (`sv_<list>_n{n|all}_seed{seed}_{hash}/`
with a trial list); a later call with the same inputs re-uses it instead of
rebuilding. The hash covers everything the set depends on: the construction
version, n, seed, gap_s, max_utt_s, the source clips (relative paths and sizes:
the whole listing, or the clips the chosen trials name) and, with a trial list,
the list's content. The `.build_hash` stamp is written last, so a cut build is redone.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from ..audio import AudioError, read_audio
from ..manifest import Sample, load_manifest, write_manifest
from ._common import CorpusError, apply_limit, check_limit, read_lines, require_dir, require_file

__all__ = ["SV_QUESTION", "Trial", "build_sv_set", "load_voxceleb_sv", "read_trials"]

SV_QUESTION = "Is there only one speaker in the audio clip?"
_VERSION = 1  # bump when the construction rule changes
_TRIALS_VERSION = 1  # the same, for sets built from a trial list
_SR = 16000
_STAMP = ".build_hash"
_ANSWERS = {"1": "yes", "0": "no"}
_MISSING_SHOWN = 5


@dataclass(frozen=True)
class Trial:
    """One line of a trial list: label "1" (same speaker) or "0", two wav paths."""

    line: int
    label: str
    enrolment: str
    test: str

    @property
    def answer(self) -> str:
        return _ANSWERS[self.label]


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


def _speaker(rel: str) -> str:
    return rel.split("/", 1)[0]


def _trial_path(value: str, where: str) -> str:
    """A clip path of a trial line: relative, inside the wav folder, SPEAKER/VIDEO/NAME.wav."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2 or path.suffix.lower() != ".wav":
        raise CorpusError(f"{where}: expected a wav path relative to the wav folder "
                          f"(like id10270/x6uYqmx31kE/00001.wav), got {value!r}")
    return path.as_posix()


def read_trials(path: str | Path) -> list[Trial]:
    """Parse a `LABEL ENROLMENT TEST` trial list (blank lines skipped); label 1 must join
    two clips of one speaker and 0 two speakers, as in the official lists."""
    path = Path(path).expanduser()
    require_file(path, "SV trial list")
    trials = []
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 3 or fields[0] not in _ANSWERS:
            raise CorpusError(f"{where}: expected 'LABEL ENROLMENT TEST' with label 1 (same speaker) or 0, "
                              f"got {line.strip()!r}")
        label, first, second = fields[0], _trial_path(fields[1], where), _trial_path(fields[2], where)
        same = _speaker(first) == _speaker(second)
        if same != (label == "1"):
            raise CorpusError(f"{where}: label {label} says {'same' if label == '1' else 'different'} speaker, "
                              f"but the paths name {_speaker(first)} and {_speaker(second)}")
        if first == second:
            raise CorpusError(f"{where}: enrolment and test are the same clip {first}")
        trials.append(Trial(lineno, label, first, second))
    if not trials:
        raise CorpusError(f"{path}: no trials")
    return trials


def _choose_trials(trials: list[Trial], n: int | None, seed: int, source: Path) -> list[Trial]:
    """Every trial (n=None) or n/2 of each label drawn with Random(seed), in file order."""
    if n is None:
        return trials
    by_label = {label: [t for t in trials if t.label == label] for label in ("1", "0")}
    short = {label: len(ts) for label, ts in by_label.items() if len(ts) < n // 2}
    if short:
        raise CorpusError(f"{source}: n={n} needs {n // 2} trials of each label, the list has "
                          f"{len(by_label['1'])} with label 1 and {len(by_label['0'])} with label 0: lower n "
                          "or set n=null for every trial")
    rng = random.Random(seed)
    chosen = rng.sample(by_label["1"], n // 2) + rng.sample(by_label["0"], n // 2)
    return sorted(chosen, key=lambda t: t.line)


def _trial_plan(wav_root: Path, trials_file: Path, n: int | None, seed: int) -> list[dict]:
    """The (id, label, speakers, sources, trial_line) of each clip from a trial list."""
    chosen = _choose_trials(read_trials(trials_file), n, seed, trials_file)
    missing = [(t.line, rel) for t in chosen for rel in (t.enrolment, t.test) if not (wav_root / rel).is_file()]
    if missing:
        shown = ", ".join(f"{rel} (line {line})" for line, rel in missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise CorpusError(f"{trials_file}: {len(missing)} clip(s) named by the chosen trials are not under "
                          f"{wav_root}: {shown}{more} (is dataset.root the VoxCeleb1 test set the list is for?)")
    return [{"id": f"trial{t.line:06d}", "answer": t.answer,
             "speakers": list(dict.fromkeys([_speaker(t.enrolment), _speaker(t.test)])),
             "sources": [t.enrolment, t.test], "trial_line": t.line} for t in chosen]


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


def _sizes(wav_root: Path, rels: list[str]) -> list[str]:
    return [f"{rel}\t{(wav_root / rel).stat().st_size}" for rel in rels]


def build_sv_set(
    root: str | Path,
    out_dir: str | Path,
    n: int | None = 200,
    seed: int = 0,
    gap_s: float = 0.0,
    max_utt_s: float | None = None,
    trials: str | Path | None = None,
) -> Path:
    """Build (or re-use) the clips and return the manifest path."""
    if (n is None and trials is None) or (n is not None and (n < 2 or n % 2)):
        raise ValueError(f"n must be an even number >= 2 (half yes, half no), got {n}"
                         + ("" if trials is not None else " (n=null only with a trial list: every trial)"))
    wav_root = _wav_root(Path(root).expanduser())
    if trials is None:
        speakers = _listing(wav_root)
        listing = _sizes(wav_root, [rel for utts in speakers.values() for rel in utts])
        # the key of sets built before trial lists existed, unchanged so their caches stay valid
        key = json.dumps({"v": _VERSION, "listing": listing, "n": n, "seed": seed, "gap_s": gap_s,
                          "max_utt_s": max_utt_s}, sort_keys=True)
        prefix = f"sv_n{n}_seed{seed}"
        plan = None
    else:
        trials_file = Path(trials).expanduser()
        plan = _trial_plan(wav_root, trials_file, n, seed)
        sources = sorted({rel for item in plan for rel in item["sources"]})
        key = json.dumps({"v": _TRIALS_VERSION, "trials_sha256": hashlib.sha256(trials_file.read_bytes()).hexdigest(),
                          "listing": _sizes(wav_root, sources), "n": n, "seed": seed, "gap_s": gap_s,
                          "max_utt_s": max_utt_s}, sort_keys=True)
        prefix = f"sv_{trials_file.stem}_n{'all' if n is None else n}_seed{seed}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    folder = Path(out_dir).expanduser() / f"{prefix}_{digest[:10]}"
    manifest, stamp = folder / "manifest.jsonl", folder / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest and manifest.is_file():
        return manifest
    if folder.exists():
        shutil.rmtree(folder)  # a cut build: start clean
    (folder / "wavs").mkdir(parents=True)
    if plan is None:
        plan = [{"id": f"sv_{i:05d}", **item} for i, item in enumerate(_plan(speakers, n, seed))]
    samples = []
    for item in plan:
        sample_id, extra = item["id"], {k: v for k, v in item.items() if k != "id"}
        wav = folder / "wavs" / f"{sample_id}.wav"
        sf.write(str(wav), _render(wav_root, item["sources"], gap_s, max_utt_s), _SR, subtype="PCM_16")
        samples.append(Sample(sample_id, wav, None, {"question": SV_QUESTION, **extra}))
    write_manifest(manifest, samples)
    stamp.write_text(digest + "\n")
    return manifest


def load_voxceleb_sv(
    root: str | Path,
    out_dir: str | Path,
    n: int | None = 200,
    seed: int = 0,
    limit: int | None = None,
    gap_s: float = 0.0,
    max_utt_s: float | None = None,
    trials: str | Path | None = None,
) -> list[Sample]:
    """The built SV set as samples (sorted by id); extra: question, answer ("yes" =
    one speaker), speakers, sources (paths relative to the VoxCeleb wav folder),
    and trial_line with a trial list."""
    check_limit(limit)
    manifest = build_sv_set(root, out_dir, n=n, seed=seed, gap_s=gap_s, max_utt_s=max_utt_s, trials=trials)
    samples = sorted(load_manifest(manifest, require_text=False), key=lambda s: s.id)
    return apply_limit(samples, limit, manifest)
