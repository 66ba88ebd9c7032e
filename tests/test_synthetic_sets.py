"""The larger espeak-ng evaluation sets (issues 17 and 18): clip lengths, sentence coverage,
noise at its SNR, determinism, voice checks and the fields each task reads. Small slices, except
one build of the full English set (about 6 s) that checks the sizes the issue asks for."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from fastadasp.data.manifest import load_manifest
from fastadasp.data.synthetic import evaluation_sets as sets
from fastadasp.data.synthetic.clips import ClipShape, SegmentCache, pack_clips, snr_db, write_pcm16
from fastadasp.data.synthetic.demo_sets import CALIBRATION_SENTENCES
from fastadasp.data.synthetic.speech import PROBE_SENTENCE, VoiceError, check_voices_distinct, espeak_wav
from fastadasp.run.instantiate import instantiate
from fastadasp.tasks import Task
from fastadasp.tasks.definition import TaskDataError

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                  reason="the synthetic sets need espeak-ng and sox")
SLICE = sets.read_sentences()[:16]  # about two clips


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def durations(samples) -> list[float]:
    return [sf.info(str(s.audio_path)).duration for s in samples]


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    """A two-clip slice of demo_dense_large and its noisy copy."""
    root = tmp_path_factory.mktemp("sets")
    clean = sets.build_dense_large(root / "clean", sentences=SLICE, max_clips=2, workers=2)
    noisy = sets.build_dense_large_noisy(root / "noisy", clean.parent, workers=2)
    return clean, noisy


# ------------------------------------------------------------------------------- packing (no espeak)


def fake_cache(seconds_by_text: dict[str, float]) -> SegmentCache:
    return SegmentCache(lambda text, voice, speed: np.full(int(seconds_by_text[text] * 16000), 0.1, np.float32))


def test_packing_keeps_every_clip_within_bounds_and_uses_each_sentence_once():
    texts = [f"s{i}" for i in range(60)]
    seconds = {t: 2.0 + (i * 7 % 50) / 10 for i, t in enumerate(texts)}  # 2.0-6.9 s
    shape = ClipShape()
    clips = pack_clips(texts, [("v1", 130), ("v2", 170)], fake_cache(seconds), seed=5, id_prefix="c_", shape=shape)
    used = [i for c in clips for i in c.sentences]
    assert used == list(range(len(used))) and len(used) > 50  # consecutive, each once; a short tail left out
    for c in clips:
        total = c.lead_s + c.trail_s + sum(c.pauses_s) + sum(seconds[texts[i]] for i in c.sentences)
        assert shape.min_s <= total <= shape.max_s
        assert len(c.pauses_s) == len(c.sentences) - 1 and all(0.3 <= p <= 0.9 for p in c.pauses_s)
    assert [c.voice for c in clips[:4]] == ["v1", "v2", "v1", "v2"]
    assert len({(c.lead_s > 0.5, c.trail_s > 0.5) for c in clips}) >= 3  # silence falls in different places
    again = pack_clips(texts, [("v1", 130), ("v2", 170)], fake_cache(seconds), seed=5, id_prefix="c_", shape=shape)
    assert again == clips
    assert pack_clips(texts, [("v1", 130), ("v2", 170)], fake_cache(seconds), seed=6, id_prefix="c_") != clips


def test_a_sentence_too_long_for_a_clip_is_refused():
    with pytest.raises(ValueError, match="alone is longer than 29.8 s"):
        pack_clips(["long"], [("v", 130)], fake_cache({"long": 31.0}), seed=0, id_prefix="c_")


def test_a_clip_that_would_clip_is_scaled_down_and_the_gain_returned(tmp_path):
    loud = np.concatenate([np.zeros(100), np.linspace(-1.5, 1.5, 1000)]).astype(np.float32)
    gain = write_pcm16(tmp_path / "x.wav", loud)
    written, _ = sf.read(str(tmp_path / "x.wav"), dtype="int16")
    assert gain == pytest.approx(32767 / 32768 / 1.5) and np.abs(written.astype(int)).max() == 32767
    assert write_pcm16(tmp_path / "y.wav", loud / 2) == 1.0
    assert not list(tmp_path.glob(".*"))  # no scratch file left


# ---------------------------------------------------------------------------------------- voices


def test_a_voice_variant_espeak_ignores_is_refused():
    def render(text, voice, speed):  # espeak-ng 1.51: en-gb+f3 sounds exactly like en-gb
        return voice.replace("en-gb+f3", "en-gb").encode()

    check_voices_distinct(["en-us", "en-us+f3"], render=render)
    with pytest.raises(VoiceError, match=r"ignores the variant '\+f3' of voice 'en-gb\+f3'.*'en-gb'"):
        check_voices_distinct(["en-us", "en-gb+f3"], render=render)
    with pytest.raises(VoiceError, match="'a' and 'b' render the same audio"):
        check_voices_distinct(["a", "b"], render=lambda text, voice, speed: b"same")


@needs_espeak
def test_the_sets_voices_are_distinct_and_an_ignored_variant_here_is_caught():
    check_voices_distinct(sets.DENSE_LARGE_VOICES)
    for voices in sets.LANGUAGE_VOICES.values():
        check_voices_distinct(voices)
    if espeak_wav(PROBE_SENTENCE, "en-gb+f3", 150) == espeak_wav(PROBE_SENTENCE, "en-gb", 150):  # espeak-ng 1.51
        with pytest.raises(VoiceError, match="ignores the variant"):
            check_voices_distinct(["en-us", "en-gb+f3"])


# ---------------------------------------------------------------------------------------- English


@needs_espeak
def test_clips_are_20_to_30_s_with_each_sentence_once_and_silence_where_recorded(english):
    clean, _ = english
    samples = load_manifest(clean)
    assert len(samples) == 2
    assert all(20.0 <= d <= 30.0 for d in durations(samples))
    used = [i for s in samples for i in s.extra["sentence_index"]]
    assert len(used) == len(set(used)) >= 8
    for s in samples:
        assert s.text == " ".join(SLICE[i] for i in s.extra["sentence_index"])
        audio, _ = sf.read(str(s.audio_path), dtype="int16")
        lead, trail = round(s.extra["lead_s"] * 16000), round(s.extra["trail_s"] * 16000)
        assert len(audio) / 16000 == pytest.approx(s.extra["duration_s"], abs=1e-3)
        assert not audio[:lead].any() and not audio[len(audio) - trail:].any()  # the drawn silences, exactly
        assert np.abs(audio[lead:lead + 1600]).max() > 100  # speech starts right after the lead
        assert s.extra["gain"] == 1.0 and s.extra["language"] == "en"


@needs_espeak
def test_noisy_clips_have_the_target_snr_and_their_own_seeded_noise(english):
    clean, noisy = english
    clean_samples, noisy_samples = load_manifest(clean), load_manifest(noisy)
    assert [s.id for s in noisy_samples] == [s.id for s in clean_samples]
    assert [s.text for s in noisy_samples] == [s.text for s in clean_samples]
    residuals = []
    for c, n in zip(clean_samples, noisy_samples):
        speech, mixture = c.load_audio(), n.load_audio()
        residual = mixture - n.extra["gain"] * speech
        assert abs(snr_db(n.extra["gain"] * speech, residual) - 10.0) < 0.5
        assert n.extra["snr_db"] == 10.0 and n.extra["noise"] == "pink"
        residuals.append(residual[:16000])
    assert [n.extra["noise_seed"] for n in noisy_samples] == [[sets.NOISE_SEED, 0], [sets.NOISE_SEED, 1]]
    assert not np.allclose(residuals[0], residuals[1])


@needs_espeak
def test_two_builds_write_identical_bytes_and_a_second_call_renders_nothing(english, tmp_path):
    clean, noisy = english
    again = sets.build_dense_large(tmp_path / "clean", sentences=SLICE, max_clips=2, workers=1)
    assert snapshot(again.parent) == snapshot(clean.parent)
    again_noisy = sets.build_dense_large_noisy(tmp_path / "noisy", again.parent, workers=1)
    assert snapshot(again_noisy.parent) == snapshot(noisy.parent)
    wav = next((again.parent / "wavs").iterdir())
    stamp = wav.stat().st_mtime_ns
    sets.build_dense_large(tmp_path / "clean", sentences=SLICE, max_clips=2, workers=1)
    assert wav.stat().st_mtime_ns == stamp


@needs_espeak
def test_the_noisy_set_needs_a_built_clean_set(tmp_path):
    with pytest.raises(sets.SyntheticSetError, match="holds no complete demo_dense_large set: build it first"):
        sets.build_dense_large_noisy(tmp_path / "noisy", tmp_path / "nothing")
    assert not (tmp_path / "noisy").exists()


@needs_espeak
def test_the_full_english_set_has_the_size_the_issue_asks_for(tmp_path):
    samples = load_manifest(sets.build_dense_large(tmp_path / "demo_dense_large", workers=2))
    seconds = durations(samples)
    used = [i for s in samples for i in s.extra["sentence_index"]]
    assert len(samples) >= 60 and sum(seconds) >= 25 * 60 and all(20.0 <= d <= 30.0 for d in seconds)
    assert len(used) == len(set(used)) >= 300
    assert len({s.extra["voice"] for s in samples}) == 8 and {s.extra["speed"] for s in samples} == {130, 150, 170}
    assert any(s.extra["lead_s"] >= 1.0 for s in samples) and any(s.extra["trail_s"] >= 1.0 for s in samples)


# ------------------------------------------------------------------------------- calibration overlap


def test_a_set_sharing_a_sentence_with_the_calibration_set_is_refused_before_anything_is_written(tmp_path):
    borrowed = CALIBRATION_SENTENCES[3].upper().rstrip(".")  # case and punctuation do not hide it
    with pytest.raises(sets.SyntheticSetError, match="shares 1 sentence.*calibration set demo_calib"):
        sets.build_dense_large(tmp_path / "demo_x", sentences=[*SLICE, borrowed])
    with pytest.raises(sets.SyntheticSetError, match="calibration set demo_calib"):
        sets.build_multilingual(tmp_path / "demo_y", "es", pairs=[("Hola a todos.", CALIBRATION_SENTENCES[0])])
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------- multilingual


def compose_task(*overrides: str) -> Task:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return Task.from_config(compose(config_name="config", overrides=list(overrides)).task, instantiate)


def compose_dataset(*overrides: str) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "data_root=/d"])
    return OmegaConf.to_container(cfg.dataset, resolve=True)


@needs_espeak
def test_multilingual_samples_carry_what_asr_and_st_need(tmp_path):
    pairs = sets.read_pairs("es")
    dense = load_manifest(sets.build_multilingual(tmp_path / "dense", "es", "dense", max_items=1, workers=2))
    single = load_manifest(sets.build_multilingual(tmp_path / "single", "es", "sentences", max_items=2, workers=2))
    assert 20.0 <= durations(dense)[0] <= 30.0 and len(dense[0].extra["sentence_index"]) >= 4
    for s in dense + single:
        assert s.text == " ".join(pairs[i][0] for i in s.extra["sentence_index"])
        assert s.extra["translation"] == " ".join(pairs[i][1] for i in s.extra["sentence_index"])
        assert (s.extra["language"], s.extra["source_language"], s.extra["target_language"]) == ("es", "es", "en")
        assert s.extra["voice"] in sets.LANGUAGE_VOICES["es"] and s.extra["speed"] in sets.LANGUAGE_SPEEDS["es"]
    assert [s.extra["voice"] for s in single] == list(sets.LANGUAGE_VOICES["es"])
    compose_task("task=st", "task.pair=es_en").check_dataset(dense + single, "demo_multilingual")
    with pytest.raises(TaskDataError, match="source_code='fr'.*source_language='es'"):
        compose_task("task=st", "task.pair=fr_en").check_dataset(dense, "demo_multilingual")
    compose_task("task=asr", "model=whisper_base", "model.language=es").check_dataset(dense, "demo_multilingual")
    with pytest.raises(TaskDataError, match="language='es'"):
        compose_task("task=asr", "model=whisper_base", "model.language=de").check_dataset(dense, "demo_multilingual")


@needs_espeak
def test_the_lid_set_pools_the_languages_with_their_labels(tmp_path):
    samples = load_manifest(sets.build_lid(tmp_path / "lid", "sentences", max_items_per_language=2, workers=2))
    assert [s.extra["label"] for s in samples] == [*sets.LANGUAGES, *sets.LANGUAGES]  # interleaved: limit keeps all
    assert all(s.extra["labels"] == sorted(sets.LANGUAGES) and s.extra["language"] == s.extra["label"]
               for s in samples)
    compose_task("task=lid").check_dataset(samples, "demo_lid")
    # the same audio as the language's own set
    french = load_manifest(sets.build_multilingual(tmp_path / "fr", "fr", "sentences", max_items=2, workers=2))
    pooled = {s.id: s for s in samples}
    assert [snapshot_of(pooled[s.id]) for s in french] == [snapshot_of(s) for s in french]


def snapshot_of(sample) -> str:
    return hashlib.sha256(Path(sample.audio_path).read_bytes()).hexdigest()


def test_the_multilingual_config_follows_the_st_pair_and_model_language():
    st = compose_dataset("task=st", "task.pair=de_en", "dataset=demo_multilingual")
    assert (st["language"], st["form"], st["root"]) == ("de", "dense", "/d/demo_multilingual_de_dense")
    asr = compose_dataset("task=asr", "model=whisper_base", "model.language=it", "dataset=demo_multilingual",
                          "dataset.form=sentences")
    assert asr["root"] == "/d/demo_multilingual_it_sentences"
    assert compose_dataset("dataset=demo_lid")["root"] == "/d/demo_lid_dense"
    assert compose_dataset("dataset=demo_dense_large_noisy")["clean_root"] == "/d/demo_dense_large"


@pytest.mark.parametrize("language", [None, "auto", "en"])
def test_a_missing_or_unknown_language_is_refused_in_one_line(tmp_path, language):
    with pytest.raises(sets.SyntheticSetError, match="dataset.language") as err:
        sets.multilingual_samples(tmp_path / "demo_multilingual_x_dense", language)
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())
