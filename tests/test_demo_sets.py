"""The dense-speech demo set: clips of 20-30 s that fill most of Whisper's 30 s window."""

import shutil

import pytest
import soundfile as sf

from fastadasp.data.synthetic.demo_sets import SENTENCES, dense_demo_samples, dense_plan

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="the demo sets need espeak-ng and sox")


def test_dense_plan_uses_every_sentence_once_per_voice_in_distinct_clips():
    plan = dense_plan()
    assert len(plan) == 16 and len({p.id for p in plan}) == 16
    for voice in {p.voice for p in plan}:
        words = " ".join(p.text for p in plan if p.voice == voice)
        assert sorted(s for s in SENTENCES if s in words) == sorted(SENTENCES)
    assert len({p.text for p in plan}) == 16  # the voices group the sentences differently


def test_dense_clips_fill_most_of_the_encoder_window(tmp_path):
    samples = dense_demo_samples(tmp_path / "demo_dense")
    durations = [sf.info(str(s.audio_path)).duration for s in samples]
    assert all(20.0 <= d <= 30.0 for d in durations), durations
    # share of Whisper's 1,500 encoder positions (30 s) that hold speech rather than padding
    assert sum(durations) / (30.0 * len(durations)) > 0.7
    assert all(len(s.text.split()) > 50 for s in samples)


def test_calibration_set_shares_no_sentence_with_the_demo_sets(tmp_path):
    from fastadasp.data.synthetic.demo_sets import CALIBRATION_SENTENCES, calibration_samples

    samples = calibration_samples(tmp_path / "demo_calib")
    assert len(samples) == len(CALIBRATION_SENTENCES) == 16
    assert not set(CALIBRATION_SENTENCES) & set(SENTENCES)
    assert all(sf.info(str(s.audio_path)).duration > 1.0 for s in samples)
