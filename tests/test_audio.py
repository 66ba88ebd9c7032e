"""The one audio reader: formats (wav/flac/ogg/mp3/mp4), mixdown, soxr resampling, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from fastadasp.testing import fixtures
from fastadasp.data.audio import AudioError, decode_audio_bytes, read_audio, resample


def _sine(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / sr)[spectrum.argmax()])


def _write(path: Path, data: np.ndarray, sr: int, **kw) -> Path:
    sf.write(str(path), data, sr, **kw)
    return path


# ---------------------------------------------------------------- resampling

@pytest.mark.parametrize("orig_sr, freq", [(22050, 440), (44100, 1000), (48000, 3000), (8000, 440)])
def test_resample_matches_the_ideal_sine(orig_sr, freq):
    y = resample(_sine(freq, orig_sr, 2.0), orig_sr, 16000)
    assert y.dtype == np.float32 and len(y) == 32000
    ideal = _sine(freq, 16000, 2.0)
    assert np.abs(y - ideal)[200:-200].max() < 1e-4
    assert abs(_peak_hz(y, 16000) - freq) <= 1


def test_resample_removes_content_above_new_nyquist():
    x = np.sin(2 * np.pi * 9000 * np.arange(22050) / 22050)  # above 8 kHz: must not alias
    assert np.abs(resample(x, 22050, 16000)[100:-100]).max() < 1e-3


def test_resample_same_rate_and_bad_input():
    x = _sine(440, 16000, 0.1)
    assert np.array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 10)), 16000, 8000)


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("suffix, kw", [(".wav", {"subtype": "PCM_16"}), (".flac", {}), (".ogg", {}),
                                        (".mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"})])
def test_formats_decode_to_the_written_sine(tmp_path, suffix, kw):
    path = _write(tmp_path / f"a{suffix}", _sine(1000, 44100), 44100, **kw)
    y = read_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 1200  # mp3/ogg add encoder padding
    assert abs(_peak_hz(y, 16000) - 1000) <= 2
    assert 0.4 < np.abs(y).max() < 0.6


def test_read_audio_mixes_stereo_and_resamples(tmp_path):
    left = _sine(440, 22050, amp=0.4)
    path = _write(tmp_path / "st.wav", np.stack([left, np.zeros_like(left)], axis=1), 22050, subtype="PCM_16")
    y = read_audio(path)
    assert abs(len(y) - 16000) <= 1 and abs(_peak_hz(y, 16000) - 440) <= 2
    assert 0.18 < np.abs(y).max() < 0.22  # mean of the two channels: half the amplitude


def test_read_audio_same_rate_is_untouched(tmp_path):
    x = np.linspace(-0.5, 0.5, 1600)
    y = read_audio(_write(tmp_path / "a.wav", x, 16000, subtype="PCM_16"))
    assert np.allclose(y, x, atol=1e-4)
    assert len(read_audio(tmp_path / "a.wav", target_sr=8000)) == 800


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")
def test_mp4_aac_stereo_48k_like_meld(tmp_path):
    """An mp4 with a video stream and an AAC 48 kHz stereo track: the audio track is read."""
    wav = _write(tmp_path / "s.wav", _sine(660, 48000, 1.5), 48000, subtype="PCM_16")
    mp4 = fixtures.write_mp4(wav, tmp_path / "clip.mp4")
    with av.open(str(mp4)) as container:
        (video,), (audio,) = container.streams.video, container.streams.audio
        assert audio.codec_context.name == "aac" and audio.rate == 48000 and audio.channels == 2
    y = read_audio(mp4)
    assert abs(len(y) / 16000 - 1.5) < 0.1
    assert abs(_peak_hz(y, 16000) - 660) <= 2 and 0.4 < np.abs(y).max() < 0.6
    assert np.allclose(decode_audio_bytes(mp4.read_bytes(), name="clip.mp4"), y)


def test_decode_bytes_matches_file(tmp_path):
    path = _write(tmp_path / "b.flac", _sine(500, 32000), 32000)
    assert np.array_equal(decode_audio_bytes(path.read_bytes(), name="b.flac"), read_audio(path))
    # no name: the suffix is unknown, soundfile still recognises the content
    assert np.array_equal(decode_audio_bytes(path.read_bytes()), read_audio(path))


# ---------------------------------------------------------------- errors

def test_missing_and_zero_byte_files(tmp_path):
    with pytest.raises(AudioError, match=r"audio file not found: .*nope\.wav") as info:
        read_audio(tmp_path / "nope.wav")
    assert isinstance(info.value, ValueError)
    (tmp_path / "zero.mp3").write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty audio file \(0 bytes\): .*zero\.mp3"):
        read_audio(tmp_path / "zero.mp3")
    with pytest.raises(AudioError, match=r"empty audio file \(0 bytes\)"):
        decode_audio_bytes(b"", name="x.wav")


def test_undecodable_and_audio_less_files(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"cannot read audio file .*bad\.wav"):
        read_audio(bad)
    fake_mp3 = tmp_path / "fake.mp3"
    fake_mp3.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AudioError, match=r"fake\.mp3"):
        read_audio(fake_mp3)
    video_only = tmp_path / "video.mp4"
    with av.open(str(video_only), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(AudioError, match=r"no audio stream in .*video\.mp4"):
        read_audio(video_only)


def test_empty_and_non_finite_audio(tmp_path):
    empty = _write(tmp_path / "empty.wav", np.zeros(0), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"empty audio \(0 samples\): .*empty\.wav"):
        read_audio(empty)
    for name, bad_value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = _sine(440, 16000, 0.1)
        x[37] = bad_value
        path = _write(tmp_path / name, x, 16000, subtype="FLOAT")
        with pytest.raises(AudioError, match=rf"not finite .*{name}"):
            read_audio(path)
