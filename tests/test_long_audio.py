"""Audio longer than Whisper's 30 s window is transcribed in consecutive windows, never cut.

The real Whisper tiny.en on 75 s of espeak-ng speech is the only way to see that
words past 30 s (and past 60 s) are transcribed; the tiny random Whisper checks
the bookkeeping (windows, tokens and FLOPs over all windows).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from fastadasp.run.config import ConfigError
from fastadasp.testing.fixtures import build_long_wav
from fastadasp.engine import Budget
from fastadasp.metrics.wer import corpus_wer, normalize
from fastadasp.models.whisper import WhisperModel, long_form_windows
from fastadasp.reduction import FastAdaSPDense, NoReduction, RandomMerge
from fastadasp.run.runner import main

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def test_windows_cover_all_audio_and_cut_in_pauses():
    rng = np.random.default_rng(0)
    speech = rng.normal(0, 0.3, 75 * SR).astype("float32")
    speech[int(29.1 * SR) : int(29.4 * SR)] = 0  # a pause inside the first window's last 2 s
    parts = long_form_windows(speech, 30 * SR)
    assert np.array_equal(np.concatenate(parts), speech)
    assert all(len(p) <= 30 * SR for p in parts) and len(parts) == 3
    assert 29.1 * SR <= len(parts[0]) <= 29.4 * SR  # cut in the pause, not at 30.0 s
    short = speech[: 12 * SR]
    assert len(long_form_windows(short, 30 * SR)) == 1


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    return build_long_wav(tmp_path_factory.mktemp("long") / "long75.wav", seconds=75.0)


def test_runner_reports_windows_tokens_and_flops_over_all_windows(tiny_whisper_dir, long_wav, tmp_path):
    path, text = long_wav
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "long", "audio": str(path), "text": text}) + "\n"
                        + json.dumps({"id": "short", "audio": str(path), "text": text, "x": 1}) + "\n")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest", f"dataset.path={manifest}",
            f"output_dir={tmp_path / 'run'}", "task.max_new_tokens=3", "method=fastadasp_dense", "flops=0.3",
            "limit=1"])
    metrics = main(cfg)
    row = json.loads((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["windows"] == 3 and row["tokens_per_layer"][0] == 3 * 1500
    assert row["flops_realized"] == pytest.approx(0.3, abs=0.005) and metrics["num_truncated"] == 0


@pytest.mark.real_model
def test_real_whisper_transcribes_75_seconds_beyond_the_first_window(long_wav):
    path, text = long_wav
    audio, sr = sf.read(str(path), dtype="float32")
    assert sr == SR and len(audio) == 75 * SR
    whisper = WhisperModel()
    prompt = "<|startoftranscript|><|notimestamps|>"
    outputs = {}
    for name, method, flops in (("full", NoReduction(), 0.0), ("dense", FastAdaSPDense("constant"), 0.3)):
        gen = whisper.generate([audio], prompt, method, Budget(flops), max_new_tokens=224, sample_keys=["long"])[0]
        outputs[name] = gen
        assert gen.extra["windows"] == 3 and gen.tokens_per_layer[0] == 3 * 1500
    full = outputs["full"]
    # the words spoken after 60 s are in the transcript: the recording was not cut at 30 s
    tail = normalize(" ".join(text.split()[-12:])).split()
    hyp = set(normalize(full.text).split())
    assert sum(w in hyp for w in tail) >= 0.7 * len(tail), full.text
    assert corpus_wer([text], [full.text])["wer"] < 30.0, full.text
    assert outputs["dense"].flops_realized == pytest.approx(0.3, abs=0.005)  # closest achievable ratio


# ---------------------------------------------------------------- windows per encoder batch


def test_window_batches_bound_the_windows_encoded_at_once():
    from fastadasp.models.whisper import window_batches

    assert window_batches(7, 3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert window_batches(7, None) == [range(0, 7)] and window_batches(2, 8) == [range(0, 2)]
    assert window_batches(0, None) == []
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ConfigError, match=r"model.max_windows_per_batch must be a whole number >= 1"):
            WhisperModel.__init__(WhisperModel.__new__(WhisperModel), max_windows_per_batch=bad)


@pytest.mark.parametrize("method, flops", [(NoReduction(), 0.0), (FastAdaSPDense("constant"), 0.3),
                                           (RandomMerge(layer=1, seed=3), 0.3)],
                         ids=["full", "dense", "random_merge"])
def test_bounded_window_batches_give_the_outputs_of_one_batch(tiny_whisper_dir, long_wav, method, flops):
    audio, _ = sf.read(str(long_wav[0]), dtype="float32")
    rng = np.random.default_rng(1)
    # 3 + 2 + 1 windows: batches of 2 and 4 cut inside a sample and across samples
    audios = [audio, rng.normal(0, 0.1, 40 * SR).astype("float32"), audio[: 12 * SR]]
    keys = ["long", "noise", "short"]
    whisper = WhisperModel(source=str(tiny_whisper_dir), max_windows_per_batch=None)
    encoded: list[int] = []
    encode = whisper.encode
    whisper.encode = lambda features, *a, **k: encoded.append(features.shape[0]) or encode(features, *a, **k)
    prompt = "<|startoftranscript|><|notimestamps|>"

    def run(bound, batch=audios, batch_keys=keys):
        whisper.max_windows_per_batch = bound
        encoded.clear()
        gens = whisper.generate(batch, prompt, method, Budget(flops), max_new_tokens=6, sample_keys=batch_keys)
        return gens, list(encoded)

    reference, sizes = run(None)
    assert sizes == [6] and [g.extra.get("windows", 1) for g in reference] == [3, 2, 1]
    # a batch of 3 samples is never split below 3 windows; above that, at most the bound
    for bound, expected_sizes in ((1, [3, 3]), (4, [4, 2]), (5, [5, 1])):
        bounded, sizes = run(bound)
        assert sizes == expected_sizes
        for ref, got in zip(reference, bounded):
            assert got.text == ref.text and got.tokens == ref.tokens
            assert got.tokens_per_layer == ref.tokens_per_layer and got.flops_realized == ref.flops_realized
            assert got.hit_max_new_tokens == ref.hit_max_new_tokens and got.extra.get("windows") == ref.extra.get("windows")
    alone, sizes = run(1, audios[:1], keys[:1])  # one long recording: one window at a time
    assert sizes == [1, 1, 1]
    assert alone[0].tokens == reference[0].tokens and alone[0].tokens_per_layer == reference[0].tokens_per_layer


def test_the_whisper_configs_bound_the_windows_by_default():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name in ("whisper_tiny_en", "whisper_hf"):
            cfg = compose(config_name="config", overrides=[f"model={name}"])
            assert cfg.model.max_windows_per_batch == 8


@pytest.mark.real_model
def test_real_whisper_outputs_do_not_depend_on_the_windows_per_batch(long_wav):
    audio, _ = sf.read(str(long_wav[0]), dtype="float32")
    whisper = WhisperModel(max_windows_per_batch=None)
    prompt = "<|startoftranscript|><|notimestamps|>"
    audios, keys = [audio, audio[: 40 * SR]], ["long", "40s"]  # 3 + 2 windows
    outputs = {}
    for bound in (None, 1):  # 5 windows at once, or 2 + 2 + 1 (never fewer than the 2 samples)
        whisper.max_windows_per_batch = bound
        outputs[bound] = whisper.generate(audios, prompt, FastAdaSPDense("constant"), Budget(0.3),
                                          max_new_tokens=224, sample_keys=keys)
    for ref, got in zip(outputs[None], outputs[1]):
        assert got.tokens == ref.tokens and got.text == ref.text and got.flops_realized == ref.flops_realized
