"""Budgets as types: each gives the base ratios the single Budget class gave, Budget(0.5) and the
earlier spellings keep working (with a warning where deprecated), the engine never asks a budget
or a method its name, and the realised costs are those the engine computed before they moved."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import CONFIGS, ROOT, compose_run
from hydra.utils import instantiate

import fastadasp.run.config  # noqa: F401  (registers run.py's typed schema, run_schema)
from fastadasp.engine import Budget as EngineBudget
from fastadasp.engine import CostReport as EngineCostReport
from fastadasp.reduction import (
    COST_MODELS,
    H2O,
    AnalyticFlopsBudget,
    ATome,
    Budget,
    BudgetError,
    CostReport,
    FastAdaSPDense,
    FastAdaSPSparse,
    FastV,
    FixedRatio,
    NoReduction,
    RandomMerge,
    StackSpec,
    TokenLayerBudget,
    TokenLayout,
    decode_flops,
    decode_step_flops,
    flops_reduction,
    kv_cache_bytes,
    realised_costs,
    solve_ratio,
    solve_ratio_flops,
)
from fastadasp.reduction.budget import DEPRECATED_COST_MODEL_NAMES
from fastadasp.run.config import (
    RENAMED_BUDGET_OPTIONS,
    ConfigError,
    rewrite_deprecated_overrides,
)

ENGINE = ROOT / "src" / "fastadasp" / "engine"

ENCODER = StackSpec(num_layers=4, d_model=384, num_heads=6, num_kv_heads=6, head_dim=64, ffn_dim=1536)
DECODER = StackSpec(num_layers=8, d_model=256, num_heads=8, num_kv_heads=2, head_dim=32, ffn_dim=768,
                    mlp_matrices=3, causal=True)
CASES = [(ENCODER, TokenLayout(0, (1500,))), (DECODER, TokenLayout(40, (300, 120))), (DECODER, TokenLayout(90, (30,)))]
METHODS = [FastAdaSPDense("constant"), FastAdaSPDense("decay", start_layer=1), FastAdaSPSparse(layer=1), FastV(layer=2),
           ATome(), RandomMerge(layer=1), H2O(), NoReduction()]


def old_base_ratio(flops, model, search, method, spec, layout):
    """The single Budget class's base_ratio before budgets became types (verbatim logic)."""
    if flops == 0:
        return 0.0
    if not method.reducing_layers(spec.num_layers):
        raise BudgetError(f"method {method.name!r} cannot reduce FLOPs; use flops=0")
    if method.acts_on == "kv_cache":
        audio = sum(layout.spans)
        r = flops if model == "paper" else flops * layout.total / max(audio, 1)
        if r >= 1:
            raise BudgetError("largest feasible reduction")
        return r
    if model == "paper":
        return solve_ratio(spec.num_layers, method.start_layer, method.schedule, flops, search)
    return solve_ratio_flops(spec, layout, method.schedule, method.start_layer, flops)


def outcome(fn):
    try:
        return fn()
    except BudgetError:
        return BudgetError


@pytest.mark.parametrize("spec,layout", CASES)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: repr(m))
def test_each_budget_type_gives_the_ratios_the_single_class_gave(spec, layout, method):
    for flops in (0.0, 0.1, 0.3, 0.5, 0.8):
        analytic = outcome(lambda: AnalyticFlopsBudget(flops).base_ratio(method, spec, layout))
        assert analytic == outcome(lambda: old_base_ratio(flops, "flops", "exact", method, spec, layout)), flops
        for search in ("exact", "grid"):
            token_layer = outcome(lambda: TokenLayerBudget(flops, search).base_ratio(method, spec, layout))
            assert token_layer == outcome(lambda: old_base_ratio(flops, "paper", search, method, spec, layout))


# SPEC section 5, N = 32 (tests/test_budget.py holds the solver's own copy): the token-layer budget type
SPEC_TABLE = {
    (FastAdaSPSparse(layer=0), "exact"): (0.103, 0.206, 0.310, 0.413, 0.516),
    (FastAdaSPSparse(layer=9), "exact"): (0.145, 0.291, 0.436, 0.582, 0.727),
    (FastAdaSPDense("constant", 0), "grid"): (0.007, 0.015, 0.024, 0.036, 0.050),
    (FastAdaSPDense("constant", 9), "grid"): (0.014, 0.031, 0.053, 0.084, 0.135),
    (FastAdaSPDense("decay", 0), "exact"): (0.010, 0.022, 0.035, 0.051, 0.070),
    (FastAdaSPDense("decay", 9), "exact"): (0.020, 0.045, 0.075, 0.116, 0.179),
}


@pytest.mark.parametrize("method,search", list(SPEC_TABLE), ids=lambda x: repr(x))
def test_token_layer_budget_reproduces_the_spec_table(method, search):
    spec = StackSpec(num_layers=32, d_model=64, num_heads=4, num_kv_heads=4, head_dim=16, ffn_dim=128)
    layout = TokenLayout(10, (500,))  # the token-layer model ignores the layout
    got = [TokenLayerBudget(m, search).base_ratio(method, spec, layout) for m in (0.1, 0.2, 0.3, 0.4, 0.5)]
    assert got == pytest.approx(SPEC_TABLE[(method, search)], abs=0.002)


def test_h2o_ratios_are_unchanged_and_the_cache_limit_is_an_error():
    layout = TokenLayout(40, (300, 120))  # 460 entries, 420 of them audio
    assert AnalyticFlopsBudget(0.3).base_ratio(H2O(), DECODER, layout) == 0.3 * 460 / 420
    assert TokenLayerBudget(0.3).base_ratio(H2O(), DECODER, layout) == 0.3  # keep = 1 - reduce
    with pytest.raises(BudgetError, match=r"h2o: evicting 95% of 460 cache entries .* largest feasible reduction is 0\.9109"):
        AnalyticFlopsBudget(0.95).base_ratio(H2O(), DECODER, layout)


def test_fixed_ratio_is_the_ratio_for_every_method_and_sample():
    for spec, layout in CASES:
        for method in METHODS[:-1]:
            assert FixedRatio(0.5).base_ratio(method, spec, layout) == 0.5
    with pytest.raises(BudgetError, match="cannot reduce"):
        FixedRatio(0.5).base_ratio(NoReduction(), ENCODER, CASES[0][1])
    for bad in (0, 1, 1.5, True, "0.5"):
        with pytest.raises(BudgetError, match=r"ratio must be in \(0, 1\)"):
            FixedRatio(bad)
    assert FixedRatio(0.25).reduces and FixedRatio(0.25).target == 0.25


def test_the_types_check_their_settings_and_share_one_protocol():
    for make in (lambda: AnalyticFlopsBudget(1.0), lambda: TokenLayerBudget(-0.1), lambda: AnalyticFlopsBudget(True)):
        with pytest.raises(BudgetError, match=r"flops must be a FLOPs-reduction fraction in \[0, 1\)"):
            make()
    with pytest.raises(BudgetError, match=r"unknown search 'fine' \(cost_model.search\)"):
        TokenLayerBudget(0.3, "fine")
    for budget, name in ((AnalyticFlopsBudget(0.3), "analytic"), (TokenLayerBudget(0.3, "grid"), "token_layer"),
                         (FixedRatio(0.3), "fixed_ratio")):
        assert isinstance(budget, Budget) and budget.cost_model == name and budget.target == 0.3 and budget.reduces
        assert budget.describe()["cost_model"] == name
        with pytest.raises(AttributeError):  # frozen: a budget is a value
            budget.flops = 0.5
    assert not AnalyticFlopsBudget(0.0).reduces and not TokenLayerBudget().reduces
    assert TokenLayerBudget(0.3, "grid").describe() == {"cost_model": "token_layer", "flops": 0.3, "search": "grid"}
    assert AnalyticFlopsBudget(0.3) != TokenLayerBudget(0.3)  # same field, another cost model


# -- Budget(0.5) and the earlier spellings ------------------------------------------------------


def test_budget_of_a_number_is_the_analytic_budget_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EngineBudget is Budget and EngineCostReport is CostReport
        assert Budget(0.5) == AnalyticFlopsBudget(0.5) and type(Budget(0.5)) is AnalyticFlopsBudget
        assert Budget() == AnalyticFlopsBudget(0.0) and Budget(flops=0.3) == AnalyticFlopsBudget(0.3)


def test_the_model_spelling_builds_the_same_types_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"Budget\(model='paper'\) is deprecated: use TokenLayerBudget"):
        assert Budget(0.5, model="paper", search="grid") == TokenLayerBudget(0.5, "grid")
    with pytest.warns(DeprecationWarning, match="Budget"):
        assert Budget(0.2, "paper") == TokenLayerBudget(0.2, "exact")  # the old default search
    with pytest.warns(DeprecationWarning, match=r"use AnalyticFlopsBudget\(flops\)"):
        assert Budget(0.3, model="flops", search="grid") == AnalyticFlopsBudget(0.3)  # search never applied to it
    with pytest.raises(BudgetError, match=r"unknown budget model 'tokens' \(budget.model\)"):
        Budget(0.3, model="tokens")
    # a config node written for the single class (its _target_ and model key) still builds
    node = {"_target_": "fastadasp.engine.Budget", "flops": 0.4, "model": "paper", "search": "grid"}
    with pytest.warns(DeprecationWarning):
        assert instantiate(node) == TokenLayerBudget(0.4, "grid")


def test_every_cost_model_config_builds_its_type_and_names_it():
    files = sorted(p.stem for p in (CONFIGS / "cost_model").glob("*.yaml"))
    assert files == sorted(COST_MODELS) == ["analytic", "token_layer"]
    assert not (CONFIGS / "budget").exists()
    for name in files:
        cfg = compose_run(f"cost_model={name}", "flops=0.2", hydra_config=True)
        budget = instantiate(cfg.cost_model)
        assert type(budget) is COST_MODELS[name] and budget.cost_model == name and budget.target == 0.2
    assert compose_run(hydra_config=True).hydra.runtime.choices.cost_model == "analytic"  # the default


def test_the_budget_group_on_the_command_line_becomes_cost_model_with_a_warning():
    assert RENAMED_BUDGET_OPTIONS == DEPRECATED_COST_MODEL_NAMES  # run.py's copy (it must not import torch)
    argv = ["-m", "budget=flops,paper", "+budget=paper", "budget.search=exact", "flops=0.3", "method=fastv",
            "dataset.path=/data/paper/flops.jsonl"]
    new, notes = rewrite_deprecated_overrides(argv)
    assert new == ["-m", "cost_model=analytic,token_layer", "+cost_model=token_layer", "cost_model.search=exact",
                   "flops=0.3", "method=fastv", "dataset.path=/data/paper/flops.jsonl"]
    assert notes == ["warning: budget=flops,paper is deprecated: use cost_model=analytic,token_layer",
                     "warning: +budget=paper is deprecated: use +cost_model=token_layer",
                     "warning: budget.search=exact is deprecated: use cost_model.search=exact"]
    assert rewrite_deprecated_overrides(["cost_model=token_layer", "flops=0.1"]) == (
        ["cost_model=token_layer", "flops=0.1"], [])
    with pytest.raises(ConfigError, match=r"budget.model=paper: .* use cost_model=analytic \(was flops\) or "
                                          r"cost_model=token_layer \(was paper\)"):
        rewrite_deprecated_overrides(["budget.model=paper"])
    # the old spelling composes exactly the budget the new one does
    for old, new in ((["budget=flops"], ["cost_model=analytic"]),
                     (["budget=paper", "budget.search=exact"], ["cost_model=token_layer", "cost_model.search=exact"])):
        rewritten = rewrite_deprecated_overrides([*old, "flops=0.3"])[0]
        a, b = compose_run(*rewritten, hydra_config=True), compose_run(*new, "flops=0.3", hydra_config=True)
        assert instantiate(a.cost_model) == instantiate(b.cost_model)
        assert a.hydra.overrides.task == b.hydra.overrides.task  # so the run folder is named the same


def test_run_py_rewrites_the_budget_group_and_warns_on_one_line(tmp_path):
    """budget=paper budget.search=fine reaches the token-layer budget (refused there, before any
    model or data loads): the rewrite happened, and stderr named the new spelling first."""
    proc = subprocess.run(
        [sys.executable, "run.py", "budget=paper", "budget.search=fine", "flops=0.2", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[:2] == ["warning: budget=paper is deprecated: use cost_model=token_layer",
                         "warning: budget.search=fine is deprecated: use cost_model.search=fine"]
    assert lines[-1] == "error: unknown search 'fine' (cost_model.search); expected 'exact' or 'grid'"


# -- the engine asks a budget two things, and never a name ----------------------------------------


def _engine_trees() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(ENGINE.glob("*.py"))]


def test_the_engine_never_tests_a_budget_or_method_name():
    for path, tree in _engine_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands):
                    named = [ast.unparse(o) for o in operands if not isinstance(o, ast.Constant)]
                    assert not any("budget" in n or n.endswith((".name", ".cost_model", ".model", ".search"))
                                   for n in named), f"{path.name}:{node.lineno}: {ast.unparse(node)}"
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("isinstance", "type"):
                assert "Budget" not in ast.unparse(node) and "FixedRatio" not in ast.unparse(node), \
                    f"{path.name}:{node.lineno}: {ast.unparse(node)}"
            if isinstance(node, ast.Attribute) and ast.unparse(node.value).endswith("budget"):
                assert node.attr in ("reduces", "base_ratio"), f"{path.name}:{node.lineno}: budget.{node.attr}"


def test_budgets_ask_the_method_what_its_ratio_controls_not_its_name():
    """The method's hook (``ratio_from``) picks schedule_ratio or cache_ratio; names only reach messages."""
    tree = ast.parse((ROOT / "src" / "fastadasp" / "reduction" / "budget.py").read_text())
    assert "acts_on" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            assert not any(isinstance(o, ast.Attribute) and o.attr in ("name", "cost_model")
                           for o in (node.left, *node.comparators)), f"budget.py:{node.lineno}: {ast.unparse(node)}"


# -- realised costs: a pure function of counts ------------------------------------------------------


def old_costs(spec, tokens, cache, generated, bytes_per_value):
    """TokenReducer.costs before it moved (per-row, per-step loop)."""
    n, reports = spec.num_layers, []
    for row, cached, g in zip(tokens, cache, generated):
        full = row[0]
        steps = max(g - 1, 0)
        dec_full = sum(decode_step_flops(spec, [full + s] * n) for s in range(steps))
        dec = sum(decode_step_flops(spec, [c + s for c in cached]) for s in range(steps))
        reports.append(CostReport(
            prefill_flops_reduction=flops_reduction(spec, row, full),
            decode_flops_reduction=1 - dec / dec_full if dec_full else 0.0,
            kv_bytes_full=kv_cache_bytes(spec, [full] * n, bytes_per_value),
            kv_bytes=kv_cache_bytes(spec, cached, bytes_per_value),
            kv_reduction_end=1 - kv_cache_bytes(spec, [c + steps for c in cached], bytes_per_value)
            / kv_cache_bytes(spec, [full + steps] * n, bytes_per_value),
            tokens_per_layer=list(row)))
    return reports


def test_realised_costs_equal_the_engines_earlier_loop():
    spec = DECODER
    tokens = [[460, 460, 400, 350, 300, 260, 230, 200, 180], [120] * 9, [50, 50, 40, 40, 40, 40, 40, 40, 40]]
    cache = [row[:-1] for row in tokens]
    cache[1] = [120, 118.5, 97.25, 80.0, 64.75, 60.0, 55.5, 51.0]  # H2O: mean attended entries over heads
    generated = [17, 1, 0]
    new = realised_costs(spec, tokens, cache, generated, 2)
    for got, want in zip(new, old_costs(spec, tokens, cache, generated, 2), strict=True):
        assert got.tokens_per_layer == want.tokens_per_layer and got.kv_bytes == want.kv_bytes
        for key in ("prefill_flops_reduction", "decode_flops_reduction", "kv_bytes_full", "kv_reduction_end",
                    "kv_reduction"):
            assert getattr(got, key) == pytest.approx(getattr(want, key), rel=1e-12, abs=1e-15), key
    assert new[0].decode_flops_reduction > 0 and new[1].decode_flops_reduction == 0.0  # one token: no decode step
    with pytest.raises(ValueError):  # a generated count for every row, no more, no less
        realised_costs(spec, tokens, cache, generated[:2])


def test_decode_flops_closed_form_is_the_sum_over_steps():
    for cache in ([100] * 8, [100.0, 80.5, 60, 60, 50, 40, 40, 31.25]):
        for steps in (0, 1, 2, 37):
            want = sum(decode_step_flops(DECODER, [c + s for c in cache]) for s in range(steps))
            assert decode_flops(DECODER, cache, steps) == pytest.approx(want, rel=1e-14)
