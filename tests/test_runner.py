"""The runner through the real configs, on a tiny random Whisper saved as an HF folder.

The tiny model's transcripts are noise: these tests check plumbing and errors, never scores.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from fastadasp.data.manifest import ManifestError
from fastadasp.reduction import BudgetError
from fastadasp.runner import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "wav").mkdir()
    for i in range(3):
        sf.write(tmp_path / "wav" / f"a{i}.wav", rng.normal(0, 0.1, 16000 + 4000 * i).astype("float32"), 16000)
    sf.write(tmp_path / "wav" / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    (tmp_path / "wav" / "broken.wav").write_bytes(b"RIFF not really a wav")
    rows = [{"id": f"s{i}", "audio": f"wav/a{i}.wav", "text": "hello world"} for i in range(3)]
    rows += [
        {"id": "missing", "audio": "wav/nope.wav", "text": "x"},
        {"id": "empty", "audio": "wav/empty.wav", "text": "x"},
        {"id": "broken", "audio": str(tmp_path / "wav" / "broken.wav"), "text": "x"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def cfg_for(tiny_whisper_dir, manifest, out, *extra):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=[
            "model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest",
            f"dataset.path={manifest}", f"output_dir={out}", "task.max_new_tokens=5", *extra])


def test_run_writes_predictions_and_metrics_and_records_bad_audio(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "run"
    metrics = main(cfg_for(tiny_whisper_dir, manifest, out, "method=fastadasp_dense", "flops=0.3", "batch_size=2"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for key in ("model", "task", "method", "flops_target", "flops_realized", "num_samples", "metrics"):
        assert key in saved
    assert saved["num_samples"] == 3 and saved["method"] == "fastadasp_dense"
    assert 0.3 <= saved["flops_realized"] <= 0.31
    assert saved["metrics"]["normalizer"] == "whisper_en" and "wer" in saved["metrics"]
    reasons = {f["id"]: f["error"] for f in saved["failures"]}
    assert "not found" in reasons["missing"] and "nope.wav" in reasons["missing"]
    assert "empty audio" in reasons["empty"]
    assert "broken.wav" in reasons["broken"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == ["s0", "s1", "s2"]
    assert all({"id", "prediction", "reference"} <= set(p) for p in preds)


def test_batched_run_equals_one_by_one(tiny_whisper_dir, manifest, tmp_path):
    runs = {}
    for bs in (1, 3):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / f"b{bs}", "method=atome", "method.cap_to_budget=false",
                     "flops=0.4", f"batch_size={bs}"))
        runs[bs] = [json.loads(x) for x in (tmp_path / f"b{bs}" / "predictions.jsonl").read_text().splitlines()]
    for a, b in zip(runs[1], runs[3]):
        assert a["prediction"] == b["prediction"] and a["tokens_per_layer"] == b["tokens_per_layer"]


def test_resume_continues_and_refuses_other_settings(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "r"
    main(cfg_for(tiny_whisper_dir, manifest, out, "limit=2"))
    first = (out / "predictions.jsonl").read_text()
    main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true"))
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert (out / "predictions.jsonl").read_text().startswith(first) and len(lines) == 3
    with pytest.raises(ValueError, match="other settings"):
        main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true", "method=fastv", "flops=0.2"))


def test_infeasible_budget_is_a_clear_error(tiny_whisper_dir, manifest, tmp_path):
    with pytest.raises(BudgetError, match="largest feasible"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "x", "method=fastv", "method.layer=3", "flops=0.5"))


def test_malformed_manifest_line_names_file_and_line(tiny_whisper_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "audio": "a.wav", "text": "x"}\n{"id": "b", "audio": \n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2"):
        main(cfg_for(tiny_whisper_dir, bad, tmp_path / "x"))


def test_task_without_a_prompt_for_the_model_family(tiny_whisper_dir, manifest, tmp_path):
    with pytest.raises(ValueError, match="no prompt for model family 'qwen'"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "x", "model.family=qwen"))


def test_run_py_command_line(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "run.py", "model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest",
         f"dataset.path={manifest}", "method=random_evict", "flops=0.2", "limit=1", "task.max_new_tokens=3",
         f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "random_evict" in proc.stdout and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["num_samples"] == 1


@pytest.mark.parametrize("method", ["fastadasp_dense", "h2o"])
def test_speech_lm_through_run_py_config_batched_equals_one_by_one(manifest, tmp_path, method):
    """model=tiny_qwen2_audio: the LLM engine behind the same runner and configs."""
    runs = {}
    for bs in (1, 3):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[
                "model=tiny_qwen2_audio", "dataset=manifest", f"dataset.path={manifest}",
                f"output_dir={tmp_path / f'{method}{bs}'}", "task.max_new_tokens=6", f"method={method}",
                "flops=0.3", f"batch_size={bs}"])
        metrics = main(cfg)
        assert metrics["num_samples"] == 3 and metrics["num_failed"] == 3
        runs[bs] = [json.loads(x) for x in (tmp_path / f"{method}{bs}" / "predictions.jsonl").read_text().splitlines()]
    for a, b in zip(runs[1], runs[3]):
        assert a["prediction"] == b["prediction"] and a["kv_reduction"] == pytest.approx(b["kv_reduction"])
