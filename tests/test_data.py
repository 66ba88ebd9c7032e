"""Manifest validation (read and write) and the espeak-ng demo-set builder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fastadasp.data.synthetic import demo_sets as demo_set
from fastadasp.data.synthetic import speech
from fastadasp.data.audio import AudioError
from fastadasp.data.manifest import ManifestError, Sample, load_manifest, write_manifest


def _write_wav(path: Path, data: np.ndarray, sr: int) -> Path:
    sf.write(str(path), data, sr, subtype="PCM_16")
    return path


# Audio reading and resampling are tested in tests/test_audio.py.


# ---------------------------------------------------------------- manifest

def _manifest(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_manifest_paths_extras_and_limit(tmp_path):
    absolute = _write_wav(tmp_path / "abs.wav", np.zeros(160) + 0.1, 16000)
    (tmp_path / "sub").mkdir()
    _write_wav(tmp_path / "sub" / "rel.wav", np.zeros(320) + 0.1, 16000)
    path = _manifest(tmp_path, [
        {"id": "a", "audio": "sub/rel.wav", "text": "hello", "voice": "en-us"},
        "",
        {"id": "b", "audio": str(absolute), "text": "world"},
        {"id": "c", "audio": "gone.wav", "text": "x"},  # missing audio is not a load error
    ])
    samples = load_manifest(path)
    assert [s.id for s in samples] == ["a", "b", "c"]
    assert samples[0].audio_path == (tmp_path / "sub" / "rel.wav").resolve()
    assert samples[0].extra == {"voice": "en-us"} and samples[0].text == "hello"
    assert samples[1].audio_path == absolute
    assert len(samples[0].load_audio(16000)) == 320
    with pytest.raises(AudioError, match="audio file not found"):
        samples[2].load_audio()
    assert [s.id for s in load_manifest(path, limit=2)] == ["a", "b"]
    assert isinstance(samples[0], Sample)


def test_manifest_text_optional_when_not_required(tmp_path):
    path = _manifest(tmp_path, [{"id": "a", "audio": "x.wav"}, {"id": "b", "audio": "y.wav", "text": None}])
    assert [s.text for s in load_manifest(path, require_text=False)] == [None, None]
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: missing key\(s\) text"):
        load_manifest(path)


@pytest.mark.parametrize(
    "rows, pattern",
    [
        ([{"id": "a", "audio": "a.wav", "text": ""}, '{"id": "b", "audio": '], r"m\.jsonl:2: malformed JSON"),
        ([{"id": "a", "audio": "a.wav", "text": ""}, {"id": "b", "text": "t"}], r"m\.jsonl:2: missing key\(s\) audio"),
        ([{"id": "a", "audio": "a.wav", "text": "t"}, "", {"id": "a", "audio": "b.wav", "text": "t"}],
         r"m\.jsonl:3: duplicate id 'a' \(first seen on line 1\)"),
        (["[1, 2]"], r"m\.jsonl:1: expected a JSON object"),
        ([{"id": 7, "audio": "a.wav", "text": "t"}], r"m\.jsonl:1: 'id' must be a non-empty string"),
        ([""], r"no samples"),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path, rows, pattern):
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(_manifest(tmp_path, rows))


def test_write_manifest_round_trips_extras_and_paths(tmp_path):
    (tmp_path / "out" / "wavs").mkdir(parents=True)
    inside = _write_wav(tmp_path / "out" / "wavs" / "a.wav", np.zeros(160) + 0.1, 16000)
    outside = _write_wav(tmp_path / "b.wav", np.zeros(160) + 0.1, 16000)
    samples = [
        Sample("a", inside, None, {"choices": ["x", "y"], "answer": "B", "captions": ["c1", "c2"]}),
        Sample("b", outside, "ünïcode text", {"labels": ["neutral", "joy"], "label": "joy", "n": 3}),
    ]
    path = write_manifest(tmp_path / "out" / "m.jsonl", samples)
    assert json.loads(path.read_text().splitlines()[0])["audio"] == "wavs/a.wav"  # relative inside
    back = load_manifest(path, require_text=False)
    assert [(s.id, s.audio_path, s.text, s.extra) for s in back] == [
        (s.id, s.audio_path.resolve(), s.text, s.extra) for s in samples]
    with pytest.raises(ManifestError, match="clash with reserved keys"):
        write_manifest(tmp_path / "x.jsonl", [Sample("c", outside, None, {"audio": "y"})])


def test_manifest_validate_hook_names_the_line(tmp_path):
    path = _manifest(tmp_path, [{"id": "a", "audio": "a.wav", "text": "t", "n": 1},
                                {"id": "b", "audio": "b.wav", "text": "t", "n": -1}])

    def positive(obj):
        if obj["n"] <= 0:
            raise ValueError(f"'n' must be positive, got {obj['n']}")

    with pytest.raises(ManifestError, match=r"m\.jsonl:2: 'n' must be positive, got -1"):
        load_manifest(path, validate=positive)


def test_manifest_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "none.jsonl")


# ---------------------------------------------------------------- demo set

def test_sentence_list_is_well_formed():
    assert len(demo_set.SENTENCES) >= 48 and len(set(demo_set.SENTENCES)) == len(demo_set.SENTENCES)
    assert all(6 <= len(s.split()) <= 15 for s in demo_set.SENTENCES)
    assert not any(ch.isdigit() for s in demo_set.SENTENCES for ch in s)
    plan = demo_set.demo_plan()
    assert {(p.voice, p.speed) for p in plan} == {(v, s) for v in demo_set.VOICES for s in demo_set.SPEEDS}


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_build_small_demo_set(tmp_path):
    kwargs = dict(sentences=demo_set.SENTENCES[:3], voices=("en-us", "en-gb+f3"), speeds=(170,))
    manifest = demo_set.build_demo_set(tmp_path, **kwargs)
    samples = load_manifest(manifest)
    assert [s.text for s in samples] == list(demo_set.SENTENCES[:3])
    assert [s.extra["voice"] for s in samples] == ["en-us", "en-gb+f3", "en-us"]
    for s in samples:
        info = sf.info(str(s.audio_path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames > 16000 and np.abs(s.load_audio()).max() > 0.01
    # Second call with the same plan: nothing is re-rendered.
    stamp = samples[0].audio_path.stat().st_mtime_ns
    assert demo_set.build_demo_set(tmp_path, **kwargs) == manifest
    assert samples[0].audio_path.stat().st_mtime_ns == stamp


def test_build_without_tools_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng sox"):
        demo_set.build_demo_set(tmp_path, sentences=("one two three four five six",))


def test_manifest_round_trips_unicode_line_separators(tmp_path):
    """U+2028, U+2029 and U+0085 are written raw (ensure_ascii=False); lines split on "\\n" only."""
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"x")
    text = "one\u2028two\u2029three\u0085four"
    write_manifest(tmp_path / "m.jsonl", [Sample("a", wav, text, {"note": "x\u2028y"})])
    # and a CRLF copy, as an editor on Windows writes it
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes((tmp_path / "m.jsonl").read_bytes().replace(b"\n", b"\r\n"))
    for path in (tmp_path / "m.jsonl", crlf):
        (sample,) = load_manifest(path)
        assert sample.text == text and sample.extra["note"] == "x\u2028y"
