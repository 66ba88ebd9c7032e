"""Every corpus reader on a miniature copy of its corpus in the real layout.

Checks that references, labels, questions and choices arrive intact, ids are
unique, order is deterministic, `limit` takes a prefix, configs instantiate, and
malformed corpora fail with errors that name the file, line and column.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from fastadasp.testing import fixtures
from fastadasp.data.audio import AudioError, read_audio
from fastadasp.data.corpora import CorpusError
from fastadasp.data.corpora.clotho import load_clotho
from fastadasp.data.corpora.clotho_aqa import load_clotho_aqa
from fastadasp.data.corpora.covost2 import load_covost2
from fastadasp.data.corpora.hf import HFSample, samples_from_table
from fastadasp.data.corpora.iemocap import load_iemocap
from fastadasp.data.corpora.librispeech import load_librispeech
from fastadasp.data.corpora.meld import fix_mojibake, load_meld
from fastadasp.data.corpora.sqa import load_sqa_manifest
from fastadasp.data.corpora.voxceleb_sv import SV_QUESTION, build_sv_set, load_voxceleb_sv
from fastadasp.data.manifest import ManifestError, load_manifest

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="fixtures need espeak-ng and sox")

LOADERS = {"librispeech": load_librispeech, "covost2": load_covost2, "meld": load_meld,
           "clotho": load_clotho, "clotho_aqa": load_clotho_aqa, "iemocap": load_iemocap,
           "sqa": load_sqa_manifest}
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, fixtures.CorpusFixture]:
    names = [n for n in fixtures.BUILDERS if n != "hf"]
    return fixtures.build_all(tmp_path_factory.mktemp("corpora"), names)


def _key(name: str, sample) -> str:
    """How a fixture names a sample: its id, or file|question for Clotho-AQA (ids are hashed)."""
    return f"{sample.audio_path.name}|{sample.extra['question']}" if name == "clotho_aqa" else sample.id


def _field(sample, key: str) -> Any:
    return sample.text if key == "text" else sample.extra[key]


def _load(fixture: fixtures.CorpusFixture, **overrides):
    return LOADERS[fixture.name](fixture.root, **{**fixture.kwargs, **overrides})


def refused(match: str, load, *args, **kwargs) -> None:
    """``load(*args, **kwargs)`` raises a CorpusError whose message matches ``match``."""
    with pytest.raises(CorpusError, match=match):
        load(*args, **kwargs)


def _copy(fixture: fixtures.CorpusFixture, tmp_path: Path) -> Path:
    target = tmp_path / fixture.root.name
    shutil.copytree(fixture.root, target)
    return target


# ---------------------------------------------------------------- readers on their fixtures

@pytest.mark.parametrize("name", list(LOADERS))
def test_reader_returns_the_written_fields_in_order(corpora, name):
    fixture = corpora[name]
    samples = _load(fixture)
    assert [_key(name, s) for s in samples] == list(fixture.expected)  # the documented order
    for sample in samples:
        for key, value in fixture.expected[_key(name, sample)].items():
            assert _field(sample, key) == value, (sample.id, key)
    assert len({s.id for s in samples}) == len(samples)
    assert [s.id for s in _load(fixture)] == [s.id for s in samples]  # deterministic
    assert [s.id for s in _load(fixture, limit=2)] == [s.id for s in samples[:2]]
    for sample in samples:
        audio = sample.load_audio(16000)
        assert 0.5 * 16000 < len(audio) < 4 * 16000 and np.abs(audio).max() > 0.01


def test_config_overrides_and_export_round_trip(corpora, tmp_path):
    """configs/dataset/<name>.yaml + the fixture's run.py overrides give the same samples,
    and export_manifest writes a manifest that reads back with every field."""
    spec = importlib.util.spec_from_file_location("export_manifest", SCRIPTS / "export_manifest.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    for name in [*LOADERS, "voxceleb_sv"]:
        fixture = corpora[name]
        overrides = fixture.overrides()
        assert overrides[0] == f"dataset={name}"
        samples = export.load_samples(name, overrides[1:], None, str(tmp_path / "data_root"))
        if name != "voxceleb_sv":
            assert [s.id for s in samples] == [s.id for s in _load(fixture)]
        out = tmp_path / f"{name}.jsonl"
        export.main([name, *overrides[1:], "--out", str(out), "--data-root", str(tmp_path / "data_root")])
        back = load_manifest(out, require_text=False)
        assert [(s.id, s.audio_path, s.text, s.extra) for s in back] == \
            [(s.id, s.audio_path.resolve(), s.text, s.extra) for s in samples]


def test_meld_reads_video_audio_and_repairs_text(corpora):
    samples = _load(corpora["meld"])
    assert all(s.audio_path.suffix == ".mp4" for s in samples)
    assert fix_mojibake("heâ\x80\x99s café") == "he’s café"
    assert fix_mojibake("it\x92s") == "it’s" and fix_mojibake("naïve — ok") == "naïve — ok"


def test_covost2_full_tsv_filters_the_split(tmp_path):
    fixture = fixtures.build_covost2(tmp_path, full_tsv=True)
    samples = _load(fixture)
    assert [s.id for s in samples] == list(fixture.expected)
    assert samples[1].extra["translation"] == 'Er sagte "guten Morgen" zu allen.'
    refused(r"covost_v2\.en_de\.tsv: no rows for split 'dev'", load_covost2, fixture.root, split="dev")


def test_clotho_aqa_majority_confidence_and_stable_ids(corpora):
    fixture = corpora["clotho_aqa"]
    every = _load(fixture)
    confident = _load(fixture, confident_only=True)
    expected = fixtures.aqa_expected(confident_only=True)
    assert [_key("clotho_aqa", s) for s in confident] == list(expected)
    assert [s.extra["answer"] for s in confident] == [e["answer"] for e in expected.values()]
    ids = {_key("clotho_aqa", s): s.id for s in every}
    assert all(ids[_key("clotho_aqa", s)] == s.id for s in confident)  # ids survive filtering
    rain = next(s for s in every if s.extra["question"] == "What is making the sound?")
    assert rain.extra["answers"] == ["rain", "Water", "Rain."] and rain.extra["answer"] == "rain"


def test_iemocap_sessions_and_label_mapping(corpora):
    fixture = corpora["iemocap"]
    both = _load(fixture, sessions=[1, 5])
    assert [s.id for s in both][0] == "Ses01F_impro01_F000" and len(both) == len(fixture.expected) + 1
    originals = {s.extra["original_label"] for s in both}
    assert "fru" not in originals and {"exc", "hap"} <= originals
    refused("IEMOCAP session 3 not found", _load, fixture, sessions=[3])


# ---------------------------------------------------------------- malformed corpora

def test_librispeech_errors(corpora, tmp_path):
    root = _copy(corpora["librispeech"], tmp_path)
    refused(r"split 'test-other' not found .*found: test-clean", load_librispeech, root, split="test-other")
    assert [s.id for s in load_librispeech(root / "test-clean")] == list(corpora["librispeech"].expected)
    trans = root / "test-clean" / "121" / "127105" / "121-127105.trans.txt"
    trans.write_text(trans.read_text() + "121-127105-0001\n")
    refused(r"121-127105\.trans\.txt:2: expected 'SPK-CHAPTER-UTT TRANSCRIPT'", load_librispeech, root)


def test_covost2_errors(corpora, tmp_path):
    root = _copy(corpora["covost2"], tmp_path)
    tsv = root / "covost_v2.en_de.test.tsv"
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join([lines[0], lines[1], lines[2] + "\textra"]) + "\n")
    refused(r"covost_v2\.en_de\.test\.tsv:3: expected 4 fields, got 5", load_covost2, root)
    tsv.write_text("\n".join([lines[0].replace("translation", "target")] + lines[1:]) + "\n")
    refused(r"test\.tsv:1: missing column\(s\) translation", load_covost2, root)
    refused(r"no CoVoST 2 TSV for pair 'en_zh'.*covost_v2\.en_zh-CN\.test\.tsv", load_covost2, root, pair="en_zh")


def test_meld_errors(corpora, tmp_path):
    root = _copy(corpora["meld"], tmp_path)
    table = root / "test_sent_emo.csv"
    original = table.read_bytes()
    table.write_bytes(original.replace(b",joy,", b",happy,"))
    refused(r"test_sent_emo\.csv:4: column Emotion: unknown label 'happy'", load_meld, root)
    table.write_bytes(original.replace(b",0,1,3,19,", b",0,one,3,19,"))
    refused(r"test_sent_emo\.csv:4: column Utterance_ID must be an integer", load_meld, root)
    refused(r"table not found: .*dev_sent_emo\.csv", load_meld, root, split="dev")


def test_clotho_and_aqa_errors(corpora, tmp_path):
    root = _copy(corpora["clotho"], tmp_path)
    table = root / "clotho_captions_evaluation.csv"
    table.write_text(table.read_text().replace("caption_5", "caption_five", 1))
    refused(r"clotho_captions_evaluation\.csv:1: missing column\(s\) caption_5", load_clotho, root)
    aqa = _copy(corpora["clotho_aqa"], tmp_path)
    (aqa / "clotho_aqa_test.csv").write_text("file_name,QuestionText,answer,confidence\n")
    refused(r"clotho_aqa_test\.csv: no samples found", load_clotho_aqa, aqa)


def test_iemocap_malformed_label_line(corpora, tmp_path):
    root = _copy(corpora["iemocap"], tmp_path)
    labels = root / "Session5" / "dialog" / "EmoEvaluation" / "Ses05M_script01_1.txt"
    lines = labels.read_text().splitlines()
    bad = next(i for i, line in enumerate(lines) if line.startswith("["))
    lines[bad] = lines[bad].replace("\t[", "\t(")
    labels.write_text("\n".join(lines) + "\n")
    refused(rf"Ses05M_script01_1\.txt:{bad + 1}: expected", load_iemocap, root)


def test_sqa_manifest_validates_fields(tmp_path):
    rows = [{"id": "a", "audio": "a.wav", "question": "Q?", "choices": ["x", "y"], "answer": "A"},
            {"id": "b", "audio": "b.wav", "question": "Q?", "choices": ["x", "y"], "answer": "C"},
            {"id": "c", "audio": "c.wav", "question": "Q?", "choices": "x, y", "answer": "A"}]
    path = tmp_path / "sqa.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(ManifestError, match=r"sqa\.jsonl:2: 'answer' must be one of A, B .*got 'C'"):
        load_sqa_manifest(path)
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[2]) + "\n")
    with pytest.raises(ManifestError, match=r"sqa\.jsonl:2: 'choices' must be a list"):
        load_sqa_manifest(path)


def test_missing_audio_is_a_per_sample_failure(corpora, tmp_path):
    root = _copy(corpora["librispeech"], tmp_path)
    victim = next(root.glob("test-clean/*/*/*.flac"))
    victim.unlink()
    samples = load_librispeech(root)  # loading still works
    failed = [s for s in samples if s.audio_path == victim]
    with pytest.raises(AudioError, match="audio file not found"):
        failed[0].load_audio()


# ---------------------------------------------------------------- VoxCeleb speaker-count set

def test_sv_set_is_balanced_seeded_and_reused(corpora, tmp_path):
    root = corpora["voxceleb_sv"].root
    samples = load_voxceleb_sv(root, out_dir=tmp_path, n=4, seed=0)
    assert sorted(s.extra["answer"] for s in samples) == ["no", "no", "yes", "yes"]
    wav_root = root / "wav"
    for s in samples:
        assert s.extra["question"] == SV_QUESTION and s.text is None
        first, second = s.extra["sources"]
        assert first != second
        speakers = {first.split("/")[0], second.split("/")[0]}
        assert sorted(speakers) == sorted(s.extra["speakers"])
        assert len(speakers) == (1 if s.extra["answer"] == "yes" else 2)
        parts = [len(read_audio(wav_root / p)) for p in (first, second)]
        assert len(s.load_audio()) == sum(parts)  # the two sources, concatenated
    manifest = samples[0].audio_path.parents[1] / "manifest.jsonl"
    stamp = manifest.stat().st_mtime_ns
    again = load_voxceleb_sv(root, out_dir=tmp_path, n=4, seed=0)
    assert [s.extra for s in again] == [s.extra for s in samples]
    assert manifest.stat().st_mtime_ns == stamp  # re-used, not rebuilt
    plans = {json.dumps([s.extra["sources"] for s in load_voxceleb_sv(root, out_dir=tmp_path, n=4, seed=k)])
             for k in range(1, 5)}
    assert len(plans) > 1  # the seed changes the set
    assert [s.id for s in load_voxceleb_sv(root, out_dir=tmp_path, n=4, seed=0, limit=3)] == \
        [s.id for s in samples[:3]]
    with pytest.raises(ValueError, match="even"):
        build_sv_set(root, tmp_path, n=3)


def test_sv_set_rebuilds_when_listing_changes_or_build_was_cut(corpora, tmp_path):
    root = tmp_path / "vox"
    shutil.copytree(corpora["voxceleb_sv"].root, root)
    first = build_sv_set(root, tmp_path / "out", n=4, seed=0)
    (first.parent / ".build_hash").unlink()  # a cut build
    os.utime(first, ns=(0, 0))
    rebuilt = build_sv_set(root, tmp_path / "out", n=4, seed=0)
    assert rebuilt == first and rebuilt.stat().st_mtime_ns != 0
    extra = root / "wav" / "id10273" / "abc" / "00001.wav"
    extra.parent.mkdir(parents=True)
    shutil.copy(next(root.glob("wav/id10270/*/*.wav")), extra)
    assert build_sv_set(root, tmp_path / "out", n=4, seed=0).parent != first.parent


# ---------------------------------------------------------------- Hugging Face datasets

class _Table(list):
    """The slice of `datasets.Dataset` that samples_from_table uses."""

    def __init__(self, rows: list[dict], features: dict | None = None):
        super().__init__(rows)
        self.column_names = list(rows[0])
        self.features = features or {}


class _ClassLabel:
    def __init__(self, names):
        self.names = names

    def int2str(self, value: int) -> str:
        return self.names[value]


def test_hf_rows_decode_bytes_paths_and_arrays(corpora, tmp_path):
    flac = next(corpora["librispeech"].root.glob("test-clean/*/*/*.flac"))
    mp3 = next(corpora["covost2"].root.glob("clips/*.mp3"))
    wav = next(corpora["iemocap"].root.glob("Session5/sentences/wav/*/*.wav"))
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32) * 0.3
    table = _Table([
        {"key": "b", "audio": {"bytes": flac.read_bytes(), "path": "x/orig.flac"}, "sentence": "one", "emo": 1},
        {"key": "a", "audio": {"bytes": mp3.read_bytes(), "path": None}, "sentence": "two", "emo": 0},
        {"key": "c", "audio": {"bytes": None, "path": str(wav)}, "sentence": "three", "emo": 0},
        {"key": "d", "audio": {"array": tone, "sampling_rate": 8000}, "sentence": None, "emo": 1},
    ], features={"emo": _ClassLabel(["neutral", "joy"])})
    samples = samples_from_table(table, source="tiny", id_column="key", text_column="sentence",
                                 fields={"label": "emo"}, constants={"target_language": "de"})
    assert [s.id for s in samples] == ["a", "b", "c", "d"]
    assert [s.text for s in samples] == ["two", "one", "three", None]
    assert [s.extra["label"] for s in samples] == ["neutral", "joy", "neutral", "joy"]
    assert all(s.extra["target_language"] == "de" for s in samples)
    by_id = {s.id: s for s in samples}
    assert not isinstance(by_id["c"], HFSample) and by_id["c"].audio_path == wav  # a real file
    assert np.array_equal(by_id["b"].load_audio(), read_audio(flac))
    # nameless mp3 bytes go through libsndfile's mpg123, the .mp3 file through PyAV: same signal
    assert np.allclose(by_id["a"].load_audio(), read_audio(mp3), atol=1e-4)
    assert len(by_id["d"].load_audio()) == 16000
    exported = by_id["b"].materialize(tmp_path)
    assert exported.name == "b.flac" and np.array_equal(read_audio(exported), read_audio(flac))
    refused(r"tiny: missing column\(s\) transcript", samples_from_table, table, source="tiny", text_column="transcript")
    broken = _Table([{"audio": {"bytes": b"not audio" * 20, "path": "bad.wav"}}])
    (sample,) = samples_from_table(broken, source="tiny")
    with pytest.raises(AudioError, match="cannot read audio file"):
        sample.load_audio()


def test_hf_load_from_disk(tmp_path):
    pytest.importorskip("datasets")
    from fastadasp.data.corpora.hf import load_hf

    fixture = fixtures.build_hf(tmp_path)
    samples = load_hf(path=fixture.root, **fixture.kwargs)
    assert [s.id for s in samples] == list(fixture.expected)
    for s in samples:
        assert {"text": s.text, "label": s.extra["label"]} == fixture.expected[s.id]
        assert len(s.load_audio()) > 8000


# ---------------------------------------------------------------- fixtures themselves

def test_fixture_builds_are_deterministic(tmp_path):
    def digest(folder: Path) -> dict[str, str]:
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    for builder in (fixtures.build_meld, fixtures.build_covost2, fixtures.build_librispeech):
        a, b = builder(tmp_path / "a"), builder(tmp_path / "b")
        assert digest(a.root) == digest(b.root) and digest(a.root)


def test_long_wav_is_75_seconds_of_speech(tmp_path):
    path, text = fixtures.build_long_wav(tmp_path / "long.wav")
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 75 * 16000)
    audio = read_audio(path)
    assert len(text.split()) > 120 and np.abs(audio[: 60 * 16000]).max() > 0.05
