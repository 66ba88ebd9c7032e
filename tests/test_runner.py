"""The runner through the real configs, on a tiny random Whisper saved as an HF folder.

The tiny model's transcripts are noise: these tests check plumbing, the rules
that protect a run's results, and errors, never scores.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from fastadasp.run.config import ConfigError
from fastadasp.data.manifest import ManifestError
from fastadasp.reduction import BudgetError
from fastadasp.run.folder import ResumeError, RunFolderError, write_json_atomic
from fastadasp.run.runner import ModelCache, main
from fastadasp.tasks.definition import TaskDataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "wav").mkdir()
    for i in range(3):
        sf.write(tmp_path / "wav" / f"a{i}.wav", rng.normal(0, 0.1, 16000 + 4000 * i).astype("float32"), 16000)
    sf.write(tmp_path / "wav" / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    (tmp_path / "wav" / "broken.wav").write_bytes(b"RIFF not really a wav")
    (tmp_path / "wav" / "zero.wav").write_bytes(b"")
    nan = rng.normal(0, 0.1, 16000).astype("float32")
    nan[100] = np.nan
    sf.write(tmp_path / "wav" / "nan.wav", nan, 16000, subtype="FLOAT")
    inf = rng.normal(0, 0.1, 16000).astype("float32")
    inf[5] = np.inf
    sf.write(tmp_path / "wav" / "inf.wav", inf, 16000, subtype="FLOAT")
    rows = [{"id": f"s{i}", "audio": f"wav/a{i}.wav", "text": "hello world"} for i in range(3)]
    rows += [
        {"id": "missing", "audio": "wav/nope.wav", "text": "x"},
        {"id": "empty", "audio": "wav/empty.wav", "text": "x"},
        {"id": "broken", "audio": str(tmp_path / "wav" / "broken.wav"), "text": "x"},
        {"id": "zero", "audio": "wav/zero.wav", "text": "x"},
        {"id": "nan", "audio": "wav/nan.wav", "text": "x"},
        {"id": "inf", "audio": "wav/inf.wav", "text": "x"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def cfg_for(tiny_whisper_dir, manifest, out, *extra):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=[
            "model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest",
            f"dataset.path={manifest}", f"output_dir={out}", "task.max_new_tokens=5", *extra])


def rows_of(out):
    return [json.loads(x) for x in (Path(out) / "predictions.jsonl").read_text().splitlines()]


def test_run_writes_predictions_and_self_describing_metrics(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "run"
    metrics = main(cfg_for(tiny_whisper_dir, manifest, out, "method=fastadasp_dense", "flops=0.3", "batch_size=2"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["num_samples"] == 3 and saved["method"] == "fastadasp_dense"
    assert 0.3 <= saved["flops_realized"] <= 0.31
    assert saved["metrics"]["normalizer"] == "whisper_en" and saved["primary_metric"] == "wer"
    assert saved["higher_is_better"] is False
    # self-describing: config, dataset identity, subset, seed, versions, git, device, timings
    assert saved["config"]["method"]["schedule"] == "constant" and saved["config"]["flops"] == 0.3
    assert saved["dataset"]["name"] is None or isinstance(saved["dataset"]["name"], str)
    assert saved["dataset"]["path"] == str(manifest) and len(saved["dataset"]["fingerprint"]) == 20
    assert saved["limit"] is None and saved["batch_size"] == 2 and saved["seed"] == 0
    assert saved["versions"]["torch"] and saved["versions"]["transformers"]
    assert set(saved["git"]) == {"commit", "dirty"} and saved["device"].startswith("cpu")
    assert saved["wall_s"] > 0 and saved["samples_per_s"] > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["method"]["name"] == "fastadasp_dense" and settings["budget"]["flops"] == 0.3
    assert [p["id"] for p in rows_of(out)] == ["s0", "s1", "s2"]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_bad_audio_is_a_per_sample_failure_with_its_reason(tiny_whisper_dir, manifest, tmp_path):
    saved = main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "run"))
    reasons = {f["id"]: f["error"] for f in saved["failures"]}
    assert "not found" in reasons["missing"] and "nope.wav" in reasons["missing"]
    assert "empty" in reasons["empty"]
    assert "broken.wav" in reasons["broken"]
    assert "0 bytes" in reasons["zero"]
    assert "not finite" in reasons["nan"] and "not finite" in reasons["inf"]
    assert saved["num_failed"] == 6 and {r["id"] for r in rows_of(tmp_path / "run")} == {"s0", "s1", "s2"}


def test_batched_and_length_sorted_runs_equal_one_by_one(tiny_whisper_dir, manifest, tmp_path):
    runs = {}
    for name, extra in {"b1": ["batch_size=1"], "b3": ["batch_size=3"],
                        "sorted": ["batch_size=2", "sort_by_length=true"]}.items():
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / name, "method=atome", "method.cap_to_budget=false",
                     "flops=0.4", *extra))
        runs[name] = {r["id"]: r for r in rows_of(tmp_path / name)}
    assert [r["id"] for r in rows_of(tmp_path / "sorted")] == ["s0", "s1", "s2"]  # shortest first
    for name in ("b3", "sorted"):
        for key, a in runs["b1"].items():
            b = runs[name][key]
            assert a["prediction"] == b["prediction"] and a["tokens_per_layer"] == b["tokens_per_layer"]


def test_resume_refuses_other_settings_naming_each_key(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "r"
    main(cfg_for(tiny_whisper_dir, manifest, out, "limit=2", "method=fastadasp_dense", "flops=0.3"))
    before = (out / "predictions.jsonl").read_bytes()
    with pytest.raises(ResumeError) as err:
        main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true", "limit=2", "method=fastadasp_dense",
                     "method.schedule=decay", "flops=0.2"))
    msg = str(err.value)
    assert "method.schedule: 'constant' (saved) != 'decay' (now)" in msg
    assert "budget.flops: 0.3 (saved) != 0.2 (now)" in msg
    with pytest.raises(ResumeError, match=r"subset.limit: 2 \(saved\) != None \(now\)"):
        main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true", "method=fastadasp_dense", "flops=0.3"))
    with pytest.raises(ResumeError, match="task.max_new_tokens: 5 \\(saved\\) != 7"):
        main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true", "limit=2", "method=fastadasp_dense",
                     "flops=0.3", "task.max_new_tokens=7"))
    assert (out / "predictions.jsonl").read_bytes() == before  # refusals change nothing


def test_resume_redoes_a_partial_last_line_and_ignores_foreign_rows(tiny_whisper_dir, manifest, tmp_path, caplog):
    full, out = tmp_path / "full", tmp_path / "cut"
    main(cfg_for(tiny_whisper_dir, manifest, full, "method=fastadasp_dense", "flops=0.3"))
    main(cfg_for(tiny_whisper_dir, manifest, out, "method=fastadasp_dense", "flops=0.3"))
    lines = (out / "predictions.jsonl").read_text().splitlines()
    stray = json.dumps({**json.loads(lines[0]), "id": "not-in-dataset", "prediction": "x"})
    # the process "died" while writing the third row; a row of another sample set slipped in
    (out / "predictions.jsonl").write_text(lines[0] + "\n" + stray + "\n" + lines[1] + "\n" + lines[2][:25])
    (out / "metrics.json").unlink()
    with caplog.at_level(logging.WARNING):
        metrics = main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true", "method=fastadasp_dense", "flops=0.3"))
    assert "partial last line" in caplog.text and "predictions.jsonl" in caplog.text
    assert "not in this run's samples" in caplog.text
    assert metrics["num_samples"] == 3
    assert metrics["timed_samples"] == 1  # the redone row; the killed session left no timing
    got = {r["id"]: r["prediction"] for r in rows_of(out)}
    assert got == {r["id"]: r["prediction"] for r in rows_of(full)}
    assert metrics["metrics"] == json.loads((full / "metrics.json").read_text())["metrics"]


def test_resuming_a_finished_run_keeps_its_timing(tiny_whisper_dir, manifest, tmp_path):
    """resume=true over a finished run only re-summarises it: the generation
    time and throughput of the session that did the work survive."""
    out = tmp_path / "t"
    first = main(cfg_for(tiny_whisper_dir, manifest, out, "limit=2", "method=fastadasp_dense", "flops=0.3"))
    again = main(cfg_for(tiny_whisper_dir, manifest, out, "limit=2", "method=fastadasp_dense", "flops=0.3",
                         "resume=true"))
    assert first["timed_samples"] == again["timed_samples"] == 2
    assert first["wall_s"] <= again["wall_s"] < first["wall_s"] + 1.0
    assert again["samples_per_s"] == pytest.approx(first["samples_per_s"], rel=0.5)
    assert again["metrics"] == first["metrics"]


def test_rerun_into_a_folder_with_results_is_refused_and_overwrite_replaces(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "o"
    main(cfg_for(tiny_whisper_dir, manifest, out, "limit=1"))
    before = (out / "predictions.jsonl").read_bytes()
    with pytest.raises(RunFolderError, match="resume=true.*overwrite=true"):
        main(cfg_for(tiny_whisper_dir, manifest, out, "limit=2"))
    # overwrite=true with a check that fails before decoding leaves the folder untouched
    with pytest.raises(BudgetError):
        main(cfg_for(tiny_whisper_dir, manifest, out, "overwrite=true", "method=fastv", "method.layer=3", "flops=0.5"))
    assert (out / "predictions.jsonl").read_bytes() == before and (out / "metrics.json").is_file()
    metrics = main(cfg_for(tiny_whisper_dir, manifest, out, "limit=2", "overwrite=true"))
    assert metrics["num_samples"] == 2 and len(rows_of(out)) == 2


def test_every_check_runs_before_the_model_loads(tiny_whisper_dir, manifest, tmp_path):
    cache = ModelCache()
    with pytest.raises(BudgetError, match="largest feasible"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "x", "method=fastv", "method.layer=3", "flops=0.5"),
             model_cache=cache)
    empty_ref = tmp_path / "empty_ref.jsonl"
    empty_ref.write_text(json.dumps({"id": "a", "audio": "a.wav", "text": ""}) + "\n")
    with pytest.raises(TaskDataError, match="needs field 'text'.*empty reference.*'a'"):
        main(cfg_for(tiny_whisper_dir, empty_ref, tmp_path / "y"), model_cache=cache)
    with pytest.raises(ValueError, match="no prompt for model family 'qwen'"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "z", "model.family=qwen"), model_cache=cache)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "z", "batch_size=0"), model_cache=cache)
    with pytest.raises(ConfigError, match="0 <= shard < num_shards"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "z", "shard=2", "num_shards=2"), model_cache=cache)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with pytest.raises(RunFolderError, match="cannot write to output folder"):
        main(cfg_for(tiny_whisper_dir, manifest, blocked / "run"), model_cache=cache)
    assert cache.loads == 0


def test_seed_reaches_random_methods_and_is_recorded(tiny_whisper_dir, manifest, tmp_path):
    runs = {}
    for seed in (0, 0, 7):
        out = tmp_path / f"s{seed}-{len(runs)}"
        m = main(cfg_for(tiny_whisper_dir, manifest, out, "method=random_evict", "method.layer=0", "flops=0.3",
                         f"seed={seed}"))
        assert m["seed"] == seed and m["method_settings"]["seed"] == seed
        runs[len(runs)] = [r["tokens_per_layer"] for r in rows_of(out)], [r["prediction"] for r in rows_of(out)]
    assert runs[0] == runs[1]


def test_write_json_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})

    class Boom:
        def __str__(self):
            raise RuntimeError("serialisation failed")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"a": Boom()})
    assert json.loads(path.read_text()) == {"a": 1} and len(list(tmp_path.iterdir())) == 1


def test_progress_is_logged_when_not_a_terminal(tiny_whisper_dir, manifest, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fastadasp.run.runner"):
        main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "p", "progress_every=2", "limit=3"))
    lines = [r.getMessage() for r in caplog.records if "samples/s" in r.getMessage()]
    assert lines and lines[-1].startswith("3/3 samples") and "audio tokens kept" in lines[-1]


def _run_py(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_run_py_command_line(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "cli"
    proc = _run_py("model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest",
                   f"dataset.path={manifest}", "method=random_evict", "flops=0.2", "limit=1",
                   "task.max_new_tokens=3", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "random_evict" in proc.stdout and json.loads((out / "metrics.json").read_text())["num_samples"] == 1
    assert "random_evict" in (out / "run.log").read_text()  # logging, so Hydra's run.log holds the story


@pytest.mark.parametrize("override, message", [
    ("flops=abc", "error: flops must be a number, got 'abc'"),
    ("flops=-0.1", "error: flops must be a FLOPs-reduction fraction in [0, 1), got -0.1"),
    ("batch_size=0", "error: batch_size must be >= 1, got 0"),
    ("limit=-3", "error: limit must be >= 0 or null, got -3"),
])
def test_config_errors_are_one_line_before_the_model_loads(override, message, tmp_path):
    proc = _run_py("model=whisper_hf", "model.source=/nonexistent/model", override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stdout + proc.stderr


def test_expected_errors_are_one_line_and_full_error_shows_the_trace(tiny_whisper_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "audio": "a.wav", "text": "x"}\n{"id": "b", "audio": \n')
    args = ("model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest", f"dataset.path={bad}",
            f"hydra.run.dir={tmp_path / 'run'}")
    proc = _run_py(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.jsonl:2" in lines[0] and lines[0].startswith("error: ")
    assert "bad.jsonl:2" in (tmp_path / "run" / "run.log").read_text()
    full = _run_py(*args, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "ManifestError" in full.stderr


def test_malformed_manifest_line_names_file_and_line(tiny_whisper_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "audio": "a.wav", "text": "x"}\n{"id": "b", "audio": \n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2"):
        main(cfg_for(tiny_whisper_dir, bad, tmp_path / "x"))


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
        assert metrics["num_samples"] == 3 and metrics["num_failed"] == 6
        assert metrics["model_family"] == "qwen2_audio" and metrics["num_truncated"] == 0
        runs[bs] = rows_of(tmp_path / f"{method}{bs}")
    for a, b in zip(runs[1], runs[3]):
        assert a["prediction"] == b["prediction"] and a["kv_reduction"] == pytest.approx(b["kv_reduction"])


def test_a_missing_dataset_root_names_the_key(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["dataset=librispeech", f"output_dir={tmp_path}"])
    cache = ModelCache()
    with pytest.raises(ConfigError, match=r"dataset.root is required for dataset 'librispeech': add dataset.root="):
        main(cfg, model_cache=cache)
    assert cache.loads == 0
