"""Compose the real Hydra configs: every method and experiment instantiates."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

from fastadasp.reduction import AnalyticFlopsBudget, Budget, ReductionMethod, TokenLayerBudget

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_expected_method_set():
    assert set(METHODS) >= {"none", "fastadasp_dense", "fastadasp_sparse", "atome", "fastv",
                            "random_merge", "random_evict"}


@pytest.mark.parametrize("name", METHODS)
def test_every_method_config_instantiates(name):
    cfg = compose_cfg([f"method={name}"])
    method = instantiate(cfg.method)
    assert isinstance(method, ReductionMethod) and method.name == name


def test_flops_reaches_the_budget_and_cost_models_switch():
    cfg = compose_cfg(["method=fastadasp_dense", "flops=0.3"])
    assert instantiate(cfg.cost_model) == AnalyticFlopsBudget(0.3)
    cfg = compose_cfg(["cost_model=token_layer", "flops=0.2"])
    assert instantiate(cfg.cost_model) == TokenLayerBudget(0.2, "grid")
    cfg = compose_cfg(["cost_model=token_layer", "cost_model.search=exact", "flops=0.2"])
    assert instantiate(cfg.cost_model) == TokenLayerBudget(0.2, "exact")


def test_method_settings_override():
    cfg = compose_cfg(["method=fastadasp_dense", "method.schedule=decay", "method.start_layer=1"])
    m = instantiate(cfg.method)
    assert (m.schedule, m.start_layer) == ("decay", 1)
    with pytest.raises(Exception, match="schedule"):
        instantiate(compose_cfg(["method=fastadasp_dense", "method.schedule=linear"]).method)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_dry_runs(name):
    cfg = compose_cfg([f"experiment={name}"])
    method, budget = instantiate(cfg.method), instantiate(cfg.cost_model)
    assert isinstance(method, ReductionMethod) and isinstance(budget, Budget)
    assert cfg.task.prompts and cfg.model._target_
    # sweep values must compose too (multirun dry run)
    params = cfg.hydra.sweeper.get("params") or {}
    for key, values in params.items():
        for value in str(values).split(","):
            sub = compose_cfg([f"experiment={name}", f"{key}={value}"])
            instantiate(sub.method)
            instantiate(sub.cost_model)


def test_unknown_method_is_a_clear_error():
    with pytest.raises((MissingConfigException, ConfigCompositionException), match="fastadasp_dnse"):
        compose_cfg(["method=fastadasp_dnse"])


def test_default_run_is_whisper_asr_on_the_demo_set():
    cfg = compose_cfg([])
    assert cfg.model.source == "ct2" and cfg.task.name == "asr" and cfg.flops == 0.0
    assert cfg.dataset._target_.endswith("demo_samples")
