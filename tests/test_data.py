"""Audio reading/resampling, manifest validation and the espeak-ng demo-set builder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fastadasp.data import demo_set
from fastadasp.data.audio import AudioError, read_audio, resample
from fastadasp.data.manifest import ManifestError, Sample, load_manifest


def _write_wav(path: Path, data: np.ndarray, sr: int) -> Path:
    sf.write(str(path), data, sr, subtype="PCM_16")
    return path


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / sr)[spectrum.argmax()])


# ---------------------------------------------------------------- audio

def test_resample_sine_keeps_frequency_and_length():
    n = 22050
    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / 22050)
    y = resample(x, 22050, 16000)
    assert y.dtype == np.float32
    assert abs(len(y) - round(n * 16000 / 22050)) <= 1
    assert abs(_peak_hz(y, 16000) - 440) <= 2
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / 16000)
    assert np.abs(y - ideal)[100:-100].max() < 1e-3  # away from the zero-padded edges


def test_resample_removes_content_above_new_nyquist():
    x = np.sin(2 * np.pi * 9000 * np.arange(22050) / 22050)  # above 8 kHz: must not alias
    assert np.abs(resample(x, 22050, 16000)[100:-100]).max() < 1e-3


def test_read_audio_mixes_stereo_and_resamples(tmp_path):
    t = np.arange(22050) / 22050
    left, right = 0.4 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    path = _write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), 22050)
    y = read_audio(path)
    assert y.ndim == 1 and y.dtype == np.float32 and abs(len(y) - 16000) <= 1
    assert abs(_peak_hz(y, 16000) - 440) <= 2
    assert 0.18 < np.abs(y).max() < 0.22  # mean of the two channels: half the amplitude


def test_read_audio_same_rate_is_untouched(tmp_path):
    x = np.linspace(-0.5, 0.5, 1600)
    y = read_audio(_write_wav(tmp_path / "a.wav", x, 16000))
    assert np.allclose(y, x, atol=1e-4)


def test_read_audio_errors(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=r"audio file not found: .*nope\.wav"):
        read_audio(missing)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"cannot read audio file .*bad\.wav: ") as info:
        read_audio(bad)
    assert isinstance(info.value, ValueError)
    empty = _write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match=r"empty audio: .*empty\.wav"):
        read_audio(empty)


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
    monkeypatch.setattr(demo_set.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng sox"):
        demo_set.build_demo_set(tmp_path, sentences=("one two three four five six",))
