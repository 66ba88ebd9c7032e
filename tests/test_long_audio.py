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

from fastadasp.data.fixtures import build_long_wav
from fastadasp.engine import Budget
from fastadasp.metrics.wer import corpus_wer, normalize
from fastadasp.models.whisper import WhisperModel, long_form_windows
from fastadasp.reduction import FastAdaSPDense, NoReduction
from fastadasp.runner import main

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
