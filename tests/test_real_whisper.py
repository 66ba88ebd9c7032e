"""Real pretrained Whisper tiny.en on the espeak-ng demo set (48 utterances).

The only way to check that reduction keeps a real model working. WERs here are
real measurements on a small synthetic set: thresholds, not results.
"""

import functools
import re
from pathlib import Path

import pytest

from fastadasp.data.synthetic.demo_sets import demo_samples
from fastadasp.engine import Budget
from fastadasp.metrics.wer import corpus_wer
from fastadasp.reduction import FastAdaSPDense, NoReduction, RandomEvict
from fastadasp.run.runner import Task, evaluate

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def whisper():
    from fastadasp.models.whisper import WhisperModel

    return WhisperModel()


@pytest.fixture(scope="module")
def samples():
    return demo_samples(ROOT / "data" / "demo_asr")


@pytest.fixture(scope="module")
def asr():
    return Task("asr", {"whisper_en": "<|startoftranscript|><|notimestamps|>"},
                functools.partial(corpus_wer, normalizer="whisper_en"), 128)


@pytest.fixture(scope="module")
def results(whisper, samples, asr, tmp_path_factory):
    runs = {
        "full": (NoReduction(), 0.0),
        "dense_0.3": (FastAdaSPDense(), 0.3),
        "dense_0.5": (FastAdaSPDense(), 0.5),
        "evict_0.5": (RandomEvict(layer=1, seed=0), 0.5),
    }
    out = tmp_path_factory.mktemp("real")
    return {name: evaluate(whisper, asr, samples, m, Budget(f), out / name, batch_size=8, log=lambda s: None)
            for name, (m, f) in runs.items()}


def test_full_token_wer_below_20(results):
    assert results["full"]["num_samples"] == 48
    assert results["full"]["metrics"]["wer"] < 20.0


def test_dense_at_30_percent_stays_within_2_wer_points(results):
    assert results["dense_0.3"]["metrics"]["wer"] <= results["full"]["metrics"]["wer"] + 2.0


def test_random_evict_is_worse_than_fastadasp_at_50_percent(results):
    assert results["evict_0.5"]["metrics"]["wer"] > results["dense_0.5"]["metrics"]["wer"]


@pytest.mark.parametrize("name,target", [("dense_0.3", 0.3), ("dense_0.5", 0.5), ("evict_0.5", 0.5)])
def test_realised_flops_within_001_of_target_on_the_real_encoder(results, name, target):
    r = results[name]
    assert target - 0.01 <= r["flops_realized_min"] and r["flops_realized_max"] <= target + 0.01


def test_make_demo_shows_dense_speech_with_intervals_and_paired_differences(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.main(["--limit", "2", "--out", str(tmp_path)])
    rows = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(demo.RUNS) and rows[0].startswith("| full tokens | 0.000 |")
    assert all(re.search(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", r) for r in rows)  # each WER with its interval
    assert all(re.search(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", r) for r in rows[1:])  # paired Δ
    assert "padding" in capsys.readouterr().out  # why short padded clips flatter every method
