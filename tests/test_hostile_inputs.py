"""Hostile inputs (issue 15, section 3): each ends in a result or in one line, exit 2.

- corpus, audio and settings errors reach the user as the one line ``ConfigError``
  gets (``EXPECTED_ERRORS``), never as Hydra's instantiation traceback around them;
- method settings are checked against the model's reduced stack from its config,
  before any weights load (a model folder holding only ``config.json`` proves it:
  loading it would fail), and constructors refuse values no model can take;
- a sweep is checked job by job before the first starts: all bad jobs at once;
- ``+method.shedule``, a seed beyond 64 bits, every sample's audio missing,
  ``model.device=cuda`` on a CPU build of torch and an unusable ``hydra.run.dir``
  are one line each; nothing already written is lost.

In-process checks go through ``fastadasp.run.runner.main`` (what ``run.py`` runs);
``run.py`` itself is run where its own layer matters (the one-line print, Hydra's
callback, ``run.log``, the sweep). The tiny random Whisper: plumbing, never scores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, ROOT, compose_run, noise_clips, tiny_whisper_run, write_jsonl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fastadasp.engine import Budget
from fastadasp.reduction import BudgetError, StackSpec
from fastadasp.reduction.methods import (
    ATome,
    FastAdaSPDense,
    FastAdaSPSparse,
    FastV,
    MethodSettingsError,
    RandomMerge,
)
from fastadasp.run.config import ConfigError, validate
from fastadasp.run.instantiate import build, check_arguments, instantiate
from fastadasp.run.runner import (
    EXPECTED_ERRORS,
    ModelCache,
    NothingEvaluatedError,
    _check_device,
    main,
)

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
ENCODER = StackSpec(num_layers=4, d_model=64, num_heads=4, num_kv_heads=4, head_dim=16, ffn_dim=128)
DECODER = StackSpec(num_layers=4, d_model=64, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=128,
                    mlp_matrices=3, causal=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 2-clip manifest, one whose audio is all missing, an empty folder, a file."""
    root = tmp_path_factory.mktemp("hostile")
    write_jsonl(root / "m.jsonl", noise_clips(root, 2, seed=5, first=8000, step=2000))
    write_jsonl(root / "gone.jsonl", [{"id": f"g{i}", "audio": f"gone/g{i}.wav", "text": "x"} for i in range(4)])
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a folder")
    return root


@pytest.fixture(scope="module")
def config_only(tiny_whisper_dir, tmp_path_factory):
    """The tiny Whisper's config.json without weights or tokenizer: a run that loads it fails."""
    out = tmp_path_factory.mktemp("config_only")
    shutil.copy(Path(tiny_whisper_dir) / "config.json", out / "config.json")
    return out


def tiny(model_dir, data, out, *extra):
    return tiny_whisper_run(model_dir, data / "m.jsonl", out, *extra)


def run_py(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**ONE_THREAD, **(env or {})})


def one_line_error(proc) -> str:
    """The refusal run.py printed: exit 2, one stderr line starting with 'error: ', no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def chain(exc: BaseException) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


# -- 1. corpus errors: one line, no Hydra wrapper ------------------------------------------------
def test_corpus_errors_are_one_line_and_the_full_trace_is_not_chained_under_hydras(data, tmp_path):
    proc = run_py("dataset=librispeech", "dataset.root=/nonexistent", f"hydra.run.dir={tmp_path / 'r1'}")
    assert "LibriSpeech root not found: /nonexistent" in one_line_error(proc)
    full = run_py("dataset=librispeech", "dataset.root=/nonexistent", f"hydra.run.dir={tmp_path / 'r2'}",
                  env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "CorpusError: LibriSpeech root not found" in full.stderr
    assert "InstantiationException" not in full.stderr and "direct cause" not in full.stderr


@pytest.mark.parametrize("overrides, message", [
    (["dataset=librispeech", "dataset.root={empty}"], "{empty}"),
    (["task=st", "dataset=covost2", "dataset.root={empty}"], "{empty}"),
    (["dataset=manifest", "dataset.path={empty}/none.jsonl"], "none.jsonl"),
])
def test_every_corpus_error_is_an_expected_error_before_the_model_loads(data, overrides, message, tmp_path):
    cfg = compose_run(*[o.format(empty=data / "empty") for o in overrides], f"output_dir={tmp_path / 'out'}")
    cache = ModelCache()
    with pytest.raises(EXPECTED_ERRORS) as info:
        main(cfg, model_cache=cache)
    text = str(info.value)
    assert message.format(empty=data / "empty") in text and "\n" not in text
    assert not any(type(e).__name__ == "InstantiationException" for e in chain(info.value))
    assert cache.loads == 0


def test_instantiate_raises_the_targets_own_error_and_hydras_own_as_a_config_error():
    with pytest.raises(MethodSettingsError) as info:
        instantiate(OmegaConf.create({"_target_": "fastadasp.reduction.FastV", "layer": -2}))
    assert info.value.__context__ is None and info.value.__cause__ is None  # not chained to Hydra's wrapper
    with pytest.raises(ConfigError, match="Error locating target 'fastadasp.reduction.NoSuchMethod'"):
        instantiate(OmegaConf.create({"_target_": "fastadasp.reduction.NoSuchMethod"}))


# -- 2. method settings against the stack, before loading ----------------------------------------
def test_method_layer_outside_the_stack_is_refused_by_run_py_before_loading(config_only, data, tmp_path):
    """The issue's command: a layer beyond the 4-layer encoder, with a model folder that cannot load."""
    proc = run_py("model=whisper_hf", f"model.source={config_only}", "dataset=manifest",
                  f"dataset.path={data / 'm.jsonl'}", "method=fastadasp_sparse", "method.layer=99", "flops=0.3",
                  f"hydra.run.dir={tmp_path / 'run'}")
    line = one_line_error(proc)
    assert "method.layer=99 is outside this model's reduced stack of 4 layers; use a layer in 0..3" in line
    assert not (tmp_path / "run" / "predictions.jsonl").exists()


@pytest.mark.parametrize("overrides, error, message", [
    (["method=fastadasp_sparse", "method.layer=99"], MethodSettingsError, "method.layer=99 is outside"),  # flops=0 too
    (["method=fastadasp_dense", "method.start_layer=4", "flops=0.3"], MethodSettingsError, "method.start_layer=4"),
    (["method=fastv", "method.layer=7", "flops=0.3"], MethodSettingsError, "method.layer=7 is outside"),
    (["method=h2o"], MethodSettingsError, "'h2o' evicts KV-cache entries.*4-layer encoder without a KV cache"),
    (["method=h2o", "flops=0.3"], MethodSettingsError, "without a KV cache"),
    (["method=fastadasp_dense", "method.schedule=bogus"], MethodSettingsError,
     "method.schedule must be 'constant' or 'decay'.*'bogus'"),
    (["method=fastadasp_dense", "+method.shedule=decay"], ConfigError,
     r"method.shedule is not a setting of method FastAdaSPDense; its settings are: schedule, start_layer, weighted"),
    (["+model.dtyp=float16"], ConfigError, r"model.dtyp is not a setting of model WhisperModel.*dtype"),
    (["+task.metric.normaliser=paper"], ConfigError, r"task.metric.normaliser is not a setting.*normalizer"),
    (["cost_model=token_layer", "cost_model.search=fine", "method=fastv", "flops=0.2"], BudgetError,
     "cost_model.search"),
    # a node written for the earlier single Budget class still builds, and its checks still name its keys
    (["cost_model._target_=fastadasp.engine.Budget", "+cost_model.model=bogus"], BudgetError,
     "unknown budget model 'bogus' \\(budget.model\\)"),
    (["seed=99999999999999999999999"], ConfigError, r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    (["seed=-1"], ConfigError, "seed must be an integer"),
])
def test_settings_errors_are_one_line_before_the_weights_load(config_only, data, tmp_path, overrides, error, message):
    cache = ModelCache()
    with pytest.raises(error, match=message) as info:
        main(tiny(config_only, data, tmp_path / "out", *overrides), model_cache=cache)
    assert isinstance(info.value, EXPECTED_ERRORS) and "\n" not in str(info.value)
    assert cache.loads == 0 and not (tmp_path / "out" / "settings.json").exists()


def test_the_same_methods_fit_a_decoder_stack_with_a_cache(config_only):
    """h2o is refused on the encoder only; a layer inside the stack passes everywhere."""
    for name in ("none", "fastadasp_dense", "fastadasp_sparse", "atome", "fastv", "random_merge", "random_evict",
                 "h2o"):
        method = instantiate(compose_run(f"method={name}").method)
        method.validate(DECODER)
        if name == "h2o":
            with pytest.raises(MethodSettingsError, match="KV-cache"):
                method.validate(ENCODER)
        else:
            method.validate(ENCODER)
    for name in ("fastv", "random_merge", "random_evict", "fastadasp_sparse"):
        with pytest.raises(MethodSettingsError, match=r"method\.layer=9 is outside .* 4 layers"):
            instantiate(compose_run(f"method={name}", "method.layer=9").method).validate(DECODER)


def test_constructors_refuse_values_no_model_can_take():
    cases = [
        (lambda: FastAdaSPDense(schedule="linear"), "method.schedule"),
        (lambda: FastAdaSPDense(weighted="yes"), "method.weighted must be true or false"),
        (lambda: FastAdaSPDense(start_layer=-1), "method.start_layer must be a layer index"),
        (lambda: FastV(layer="3"), "method.layer must be a layer index"),
        (lambda: FastAdaSPSparse(layer=-4), "method.layer must be a layer index .* or 'auto'"),
        (lambda: RandomMerge(layer=1, seed="x"), "method.seed must be an integer"),
        (lambda: ATome(pair_factor=0), "method.pair_factor must be a number > 0"),
    ]
    for make, message in cases:
        with pytest.raises(MethodSettingsError, match=message):
            make()
    for kwargs, message in [({"model": "tokens"}, "budget.model"), ({"search": "fine"}, "budget.search"),
                            ({"flops": 1.0}, r"\[0, 1\)")]:
        with pytest.raises(BudgetError, match=message):
            Budget(**kwargs)


def test_argument_check_names_unknown_and_missing_keys_and_leaves_partials_alone():
    with pytest.raises(ConfigError, match=r"method.shedule, method.strat are not settings of method FastAdaSPDense"):
        check_arguments({"_target_": "fastadasp.reduction.FastAdaSPDense", "shedule": 1, "strat": 2}, "method")
    with pytest.raises(ConfigError, match=r"task.metric corpus_wer needs task.metric.references, "
                                          r"task.metric.hypotheses"):
        check_arguments({"_target_": "fastadasp.metrics.wer.corpus_wer"}, "task.metric")
    check_arguments({"_target_": "fastadasp.metrics.wer.corpus_wer", "_partial_": True}, "task.metric")
    with pytest.raises(ConfigError, match=r"budget: .*frobnicate"):  # a plain ValueError of a constructor
        build(OmegaConf.create({"_target_": "builtins.float", "_args_": ["frobnicate"]}), "budget")


def test_a_model_whose_shapes_need_loading_is_checked_right_after_it_loads(tmp_path, data, monkeypatch):
    """An adapter that cannot tell its stack before loading (peek_stack_spec gives None; the CTranslate2
    source did before it read model.bin's headers): the check runs once it has loaded, before anything
    in the run folder changes (overwrite=true keeps the finished run)."""
    from fastadasp.models.whisper import WhisperModel

    monkeypatch.setattr(WhisperModel, "peek_stack_spec", classmethod(lambda cls, **_: None))
    out = tmp_path / "finished"
    out.mkdir()
    finished = {"predictions.jsonl": '{"id": "s0", "prediction": "x"}\n', "metrics.json": '{"num_samples": 1}'}
    for name, text in finished.items():
        (out / name).write_text(text)
    cache = ModelCache()
    cfg = compose_run("dataset=manifest", f"dataset.path={data / 'm.jsonl'}", f"output_dir={out}", "overwrite=true",
                      "method=fastadasp_sparse", "method.layer=99", "flops=0.3")
    with pytest.raises(MethodSettingsError, match="method.layer=99 is outside this model's reduced stack of 4"):
        main(cfg, model_cache=cache)
    assert cache.loads == 1
    assert {name: (out / name).read_text() for name in finished} == finished


# -- 3. a sweep is checked before its first job ----------------------------------------------------
def test_a_sweep_reports_every_bad_job_at_once_and_starts_none(config_only, data, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_py("-m", "model=whisper_hf", f"model.source={config_only}", "dataset=manifest",
                  "method=fastadasp_sparse", "method.layer=1,99", "flops=0.3,2.0",
                  f"dataset.path={data / 'm.jsonl'},{data / 'nope.jsonl'}", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    jobs = [line for line in lines if line.startswith("error: job #")]
    # job order: method.layer, flops, dataset.path; only #0 (layer 1, 0.3, the real manifest) is good
    assert sorted(int(line.split("#")[1].split()[0]) for line in jobs) == list(range(1, 8))
    assert sum("method.layer=99 is outside this model's reduced stack of 4 layers" in line for line in jobs) == 2
    assert sum("flops must be a FLOPs-reduction fraction" in line for line in jobs) == 4
    assert sum("nope.jsonl" in line.split("):", 1)[1] for line in jobs) == 1  # layer 1, flops 0.3, missing file
    assert lines[-1] == "error: 7 of 8 jobs of this sweep would fail; no job was started (fix or drop them and " \
                        "run the sweep again)"
    assert [p for p in sweep.iterdir() if p.is_dir()] == []  # the config-only model was never loaded


def test_the_sweep_check_loads_each_distinct_dataset_once(data, monkeypatch, tmp_path):
    import fastadasp.run.datasets as dataset_module
    from fastadasp.run.preflight import check_jobs

    loads = []
    real = dataset_module.load_dataset
    monkeypatch.setattr(dataset_module, "load_dataset", lambda *a, **k: loads.append(1) or real(*a, **k))
    base = ["model=whisper_hf", "model.source=/nowhere", "dataset=manifest", f"dataset.path={data / 'm.jsonl'}",
            "method=fastv", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        master = compose(config_name="config", overrides=base, return_hydra_config=True)
        jobs = [[*base, f"flops={f}"] for f in (0.1, 0.2, 0.3)] + [[*base, "flops=0.1", "limit=1"]]
        assert check_jobs(master, jobs) == []
    assert len(loads) == 2  # one per distinct dataset config (limit changes it)


def test_a_good_sweep_runs_and_its_rerun_is_refused_before_any_job(tiny_whisper_dir, data, tmp_path):
    """The pre-check passes a good sweep (the basic launcher runs it); run again into the same
    hydra.sweep.dir, every job's folder holds results: all refused at once, nothing touched."""
    args = ["-m", "model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest",
            f"dataset.path={data / 'm.jsonl'}", "limit=1", "task.max_new_tokens=2", "method=fastv", "flops=0.1,0.2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    first = run_py(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(metrics) == 2
    before = [p.read_bytes() for p in metrics]
    again = run_py(*args)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    jobs = [line for line in again.stderr.splitlines() if line.startswith("error: job #")]
    assert len(jobs) == 2 and all("already holds results; add resume=true" in line for line in jobs)
    assert [p.read_bytes() for p in metrics] == before


# -- 4. tracebacks where a line is due -------------------------------------------------------------
def test_unknown_key_and_seed_and_device_are_one_line_from_run_py(data, tmp_path):
    proc = run_py("method=fastadasp_dense", "+method.shedule=decay", f"hydra.run.dir={tmp_path / 'a'}")
    line = one_line_error(proc)
    assert "method.shedule is not a setting" in line and "schedule, start_layer, weighted" in line
    proc = run_py("seed=99999999999999999999999", f"hydra.run.dir={tmp_path / 'b'}")
    assert "seed must be an integer in [0, 2**63 - 1]" in one_line_error(proc)
    import torch

    if not torch.cuda.is_available():
        proc = run_py("model.device=cuda", f"hydra.run.dir={tmp_path / 'c'}")
        line = one_line_error(proc)
        assert "use model.device=cpu" in line
        if torch.version.cuda is None:
            assert "was built without CUDA" in line


def test_device_check_says_why_and_what_to_do(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    with pytest.raises(ConfigError, match=r"model.device=cuda: torch .* was built without CUDA; use model.device=cpu"):
        _check_device(OmegaConf.create({"device": "cuda"}))
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"model.device=cuda:1: no CUDA device is visible.*model.device=cpu"):
        _check_device(OmegaConf.create({"device": "cuda:1"}))
    with pytest.raises(ConfigError, match=r"model.device='gpu' is not a torch device"):
        _check_device(OmegaConf.create({"device": "gpu"}))
    _check_device(OmegaConf.create({"device": "cuda", "device_map": "auto"}))  # the map places the weights
    _check_device(OmegaConf.create({"device": "cpu"}))


def test_seed_range():
    for seed in (0, 2**63 - 1):
        assert validate(OmegaConf.create({"seed": seed})).seed == seed
    for seed in (2**63, -1):
        with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\]"):
            validate(OmegaConf.create({"seed": seed}))


def test_every_audio_missing_is_one_line_naming_the_count_and_keeps_what_was_there(tiny_whisper_dir, data, tmp_path):
    """No metrics.json for a run without a single scored sample (a number-less result would be
    read as one), the failures stay in the log, and a finished run that overwrite=true would
    have replaced is kept."""
    out = tmp_path / "run"
    main(tiny(tiny_whisper_dir, data, out))
    before = {name: (out / name).read_bytes() for name in ("metrics.json", "predictions.jsonl")}
    cfg = tiny(tiny_whisper_dir, data, out, f"dataset.path={data / 'gone.jsonl'}", "overwrite=true")
    with pytest.raises(NothingEvaluatedError) as info:
        main(cfg)
    text = str(info.value)
    assert isinstance(info.value, EXPECTED_ERRORS) and "\n" not in text
    assert "no sample could be evaluated: all 4 failed" in text and "g0: " in text and "gone/g0.wav" in text
    assert "and 1 more" in text
    assert {name: (out / name).read_bytes() for name in before} == before


def test_every_audio_missing_from_run_py_logs_each_failure_and_writes_no_metrics(tiny_whisper_dir, data, tmp_path):
    out = tmp_path / "run"
    proc = run_py("model=whisper_hf", f"model.source={tiny_whisper_dir}", "dataset=manifest",
                  f"dataset.path={data / 'gone.jsonl'}", f"hydra.run.dir={out}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "all 4 failed" in errors[0]
    log = (out / "run.log").read_text()
    assert all(f"skipped g{i}" in log for i in range(4)) and "all 4 failed" in log
    assert not (out / "metrics.json").exists()


def test_an_unusable_run_dir_is_one_line(data, tmp_path):
    proc = run_py(f"hydra.run.dir={data / 'a_file'}")
    assert f"hydra.run.dir={data / 'a_file'} cannot hold the run's output: {data / 'a_file'} is a file" \
        in one_line_error(proc)
    proc = run_py("-m", "flops=0.1,0.2", "method=fastv", f"hydra.sweep.dir={data / 'a_file' / 'sweep'}")
    assert "no folder can be created under it; choose another hydra.sweep.dir" in one_line_error(proc)


def test_folder_problems(data, tmp_path):
    from fastadasp.run.preflight import folder_problem

    assert folder_problem(tmp_path / "new" / "run") is None and (tmp_path / "new" / "run").is_dir()
    assert "is a file, not a folder" in folder_problem(data / "a_file")
    assert "is a file, so no folder can be created under it" in folder_problem(data / "a_file" / "x" / "y")
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        assert "cannot be created (Permission denied)" in folder_problem(locked / "run")
        assert "cannot be written (Permission denied)" in folder_problem(locked)
    finally:
        locked.chmod(0o755)
