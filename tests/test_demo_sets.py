"""The dense-speech demo set: clips of 20-30 s that fill most of Whisper's 30 s window; every
set's sentences stay out of the Transfer-Entropy calibration set."""

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


def test_no_set_shares_a_sentence_with_the_calibration_set():
    """Calibration (Transfer-Entropy layer selection on demo_calib) never sees evaluation text: not in the
    demo sets, the large English set or the multilingual sets (transcripts and translations), also
    after lowercasing and removing punctuation; each builder repeats this check before it renders."""
    from fastadasp.data.synthetic import evaluation_sets as sets
    from fastadasp.data.synthetic.demo_sets import CALIBRATION_SENTENCES

    every_set = {"demo": list(SENTENCES), "demo_dense": [p.text for p in dense_plan()],
                 "demo_dense_large": sets.read_sentences()}
    every_set.update({f"demo_multilingual ({lang})": [t for pair in sets.read_pairs(lang) for t in pair]
                      for lang in sets.LANGUAGES})
    calibration = {" ".join(c.lower().replace(",", "").rstrip(".").split()) for c in CALIBRATION_SENTENCES}
    for name, texts in every_set.items():
        sets.check_disjoint_from_calibration(texts, name)
        joined = " ".join(texts).lower().replace(",", "")
        assert not [c for c in calibration if c in joined], name  # not even inside a dense clip's text
    assert not set(sets.read_sentences()) & set(SENTENCES)  # the large set shares no sentence with demo/demo_dense
