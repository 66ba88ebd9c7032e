"""Every experiment file: its sweep expands into the jobs it promises, and those jobs run.

Each ``configs/experiment/*.yaml`` is composed with Hydra, its sweeper parameters are
expanded the way the basic sweeper expands them (cartesian product of the parsed
override values), and:

* the paper experiments' job sets are checked against the tables they claim: every
  method of the table with the paper's settings (A-ToMe uncapped, single-layer
  methods at the TE layer, FastAdaSP dense constant and decay, ...), the paper's
  token-layer cost model with its grid search, the FLOPs grid, greedy decoding (beam 5 only in the long-audio
  sweep), batch 1;
* every job is dry-run through ``fastadasp.run.runner.main`` on a tiny model (the random
  tiny Qwen2-Audio for speech-LLM experiments, the tiny random Whisper otherwise)
  with ``limit=2`` on a generated manifest, only at the smallest and largest FLOPs
  target of its grid, and its metrics.json must record the method, settings,
  cost model (``budget_model``), target, beams and batch size the job was composed with. Qwen's
  layer-9 methods run at layer 0 of the 4-layer tiny model (the only override: one
  reduction at layer 1 of 4 cannot reach a 50% target under the paper's model).

The tiny models are random: no score here is a result.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate

from fastadasp.reduction import TokenLayerBudget
from fastadasp.run.runner import ModelCache, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
FLOPS_GRID = [0.1, 0.2, 0.3, 0.4, 0.5]

# what each paper experiment promises: one dict per method of its table (a subset of
# ReductionMethod.describe()), the FLOPs grid, the model, the beams swept
_H2O = {"name": "h2o", "start_layer": 0}
_ATOME = {"name": "atome", "start_layer": 0, "pair_factor": 2.0, "cap_to_budget": False}
_DENSE = {"name": "fastadasp_dense", "schedule": "constant", "start_layer": 0, "weighted": True}
_DECAY = {"name": "fastadasp_dense", "schedule": "decay", "start_layer": 0, "weighted": True}


def _single(name: str, layer: int, **extra) -> dict:
    return {"name": name, "start_layer": layer, **extra}


PROMISES = {
    "paper_qwen2_audio_dense": dict(
        model="qwen2_audio", task="asr", flops=FLOPS_GRID, beams={1},
        methods=[_H2O, _single("random_merge", 9), _single("random_evict", 9), _ATOME, _single("fastv", 9),
                 _DENSE, _DECAY]),
    "paper_qwen2_audio_sparse": dict(
        model="qwen2_audio", task="er", flops=FLOPS_GRID, beams={1},
        methods=[_H2O, _single("random_merge", 9), _single("random_evict", 9), _ATOME, _single("fastv", 9),
                 _single("fastadasp_sparse", 9, weighted=True)]),
    "paper_qwen2_audio_long": dict(
        model="qwen2_audio", task="asr", flops=None, beams={1, 5},
        arms={("none", 0.0), ("fastadasp_dense", 0.5)}, methods=[{"name": "none"}, _DENSE]),
    "whisper_paper_dense": dict(
        model="whisper_tiny_en", task="asr", flops=FLOPS_GRID[:4], beams=None,
        methods=[_single("random_merge", 1), _single("random_evict", 1), _ATOME, _single("fastv", 1),
                 _DENSE, _DECAY]),
    "whisper_paper_sparse": dict(
        model="whisper_tiny_en", task="asr", flops=FLOPS_GRID[:4], beams=None,
        methods=[_single("random_merge", 1), _single("random_evict", 1), _ATOME, _single("fastv", 1),
                 _single("fastadasp_sparse", 1, weighted=True)]),
}
PAPER_EXPERIMENTS = [e for e in EXPERIMENTS
                     if e.startswith(("paper_", "whisper_paper_")) and e != "whisper_paper_budget"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def expand_jobs(name: str) -> list[list[str]]:
    """The override lists of an experiment's multirun jobs, as the basic sweeper makes them."""
    cfg = compose_cfg([f"experiment={name}"])
    params = cfg.hydra.sweeper.get("params") or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return [list(job) for job in itertools.product(*axes)]


def matches(settings: dict, promise: dict) -> bool:
    return all(settings.get(k) == v for k, v in promise.items())


def job_view(name: str, job: list[str]) -> dict:
    cfg = compose_cfg([f"experiment={name}", *job])
    method = instantiate(cfg.method)
    return {"cfg": cfg, "settings": method.describe(), "flops": float(cfg.flops), "budget": instantiate(cfg.cost_model),
            "beams": cfg.model.get("num_beams"), "model": cfg.hydra.runtime.choices.model,
            "task": cfg.task.name, "batch_size": cfg.batch_size}


def test_every_experiment_is_found():
    assert set(PROMISES) <= set(EXPERIMENTS), sorted(set(PROMISES) - set(EXPERIMENTS))
    assert set(PAPER_EXPERIMENTS) == set(PROMISES)


@pytest.mark.parametrize("name", sorted(PROMISES))
def test_paper_experiment_sweeps_every_method_of_its_table_as_the_paper_ran_it(name):
    promise = PROMISES[name]
    views = [job_view(name, job) for job in expand_jobs(name)]
    for v in views:
        assert v["budget"] == TokenLayerBudget(v["flops"], "grid") and v["batch_size"] == 1  # the authors' calculator
        assert v["model"] == promise["model"] and v["task"] == promise["task"]
        if promise["beams"] is not None:
            assert v["beams"] in promise["beams"]
    # every method of the table, each with the paper's settings, at every budget of the grid
    found = []
    for p in promise["methods"]:
        jobs = [v for v in views if matches(v["settings"], p)]
        assert jobs, f"{name}: no job runs {p}"
        found.extend(id(v) for v in jobs)
        if promise["flops"] is not None:
            for beams in promise["beams"] or {None}:
                got = sorted(v["flops"] for v in jobs if v["beams"] == beams)
                assert got == promise["flops"], (name, p, beams, got)
    assert len(found) == len(views) == len(set(found)), f"{name}: a job runs a method the table does not promise"
    if "arms" in promise:
        pairs = {(v["settings"]["name"], v["flops"]) for v in views}
        assert pairs == promise["arms"]
        assert {(v["settings"]["name"], v["beams"]) for v in views} == {
            (m, b) for m, _ in promise["arms"] for b in promise["beams"]}


def test_single_layer_methods_name_their_layer_and_the_uncapped_atome_is_not_capped():
    """The _l9 method configs carry the layer the paper used for Qwen-Audio (9 of 32)."""
    for config in (CONFIGS / "method" / "paper").glob("*_l9.yaml"):
        method = instantiate(compose_cfg([f"method=paper/{config.stem}"]).method)
        assert method.start_layer == 9 and method.name == config.stem.removesuffix("_l9")
    atome = instantiate(compose_cfg(["method=paper/atome"]).method)
    assert atome.name == "atome" and atome.cap_to_budget is False


# -- dry runs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Two short clips with every field a task may read (ASR text, ER label set, ...)."""
    root = tmp_path_factory.mktemp("experiment_data")
    rng = np.random.default_rng(0)
    rows = []
    for i, seconds in enumerate((1.0, 1.6)):
        t = np.arange(int(seconds * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (220 + 90 * i) * t) + rng.normal(0, 0.03, t.shape)
        sf.write(root / f"c{i}.wav", wav.astype("float32"), 16000)
        rows.append({"id": f"c{i}", "audio": f"c{i}.wav", "text": "hello world", "translation": "hallo welt",
                     "label": "neutral", "labels": ["neutral", "joy", "sadness"],
                     "captions": ["a tone plays"] * 5, "question": "is there a tone?", "answer": "yes",
                     "choices": ["a tone", "a voice"]})
    path = root / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def caches():
    return {}


def dry_run_jobs(name: str) -> list[tuple[list[str], dict]]:
    """The jobs at the smallest and largest FLOPs target of the grid (every method, arm, beam)."""
    views = [(job, job_view(name, job)) for job in expand_jobs(name)]
    flops = sorted({v["flops"] for _, v in views})
    return [(job, v) for job, v in views if v["flops"] in (flops[0], flops[-1])]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_dry_runs_and_records_its_settings(name, manifest, tiny_whisper_dir, caches, tmp_path):
    jobs = dry_run_jobs(name)
    assert jobs
    for n, (job, view) in enumerate(jobs):
        speech_lm = view["model"] in ("qwen2_audio", "tiny_qwen2_audio", "audioflamingo3", "tiny_audioflamingo3")
        if speech_lm:
            tiny = ["model=tiny_qwen2_audio"]
            if "layer" in view["cfg"].method and view["cfg"].method.layer >= 4:
                tiny.append("method.layer=0")  # the paper's layer 9 on the 4-layer tiny LLM
        else:
            tiny = ["model=whisper_hf", f"model.source={tiny_whisper_dir}"]
        out = tmp_path / f"job{n}"
        cfg = compose_cfg([f"experiment={name}", *job, *tiny, "dataset=manifest", f"dataset.path={manifest}",
                           "limit=2", "task.max_new_tokens=3", f"output_dir={out}", f"data_root={tmp_path}"])
        cache = caches.setdefault(tiny[0], ModelCache())
        main(cfg, model_cache=cache)
        metrics = json.loads((out / "metrics.json").read_text())
        expected = dict(view["settings"])
        if "method.layer=0" in tiny:
            expected["start_layer"] = 0
        assert metrics["method"] == expected["name"], job
        assert matches(metrics["method_settings"], expected), (job, metrics["method_settings"], expected)
        assert metrics["budget_model"] == view["budget"].cost_model
        assert metrics["flops_target"] == pytest.approx(view["flops"])
        assert metrics["num_samples"] == 2 and metrics["num_failed"] == 0
        assert metrics["batch_size"] == view["batch_size"]
        if view["beams"] is not None:
            assert metrics["config"]["model"]["num_beams"] == view["beams"]
        if name in PROMISES:
            assert metrics["task"] == PROMISES[name]["task"]
