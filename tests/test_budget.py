"""Budgets: the paper's token-layer model against SPEC's table, and the analytic model."""

import pytest

from fastadasp.reduction import (
    BudgetError,
    StackSpec,
    TokenLayout,
    flops_reduction,
    layer_ratios,
    simulate_tokens,
    solve_ratio,
    solve_ratio_flops,
    stack_flops,
)

M = (0.1, 0.2, 0.3, 0.4, 0.5)
# SPEC section 5, N = 32. Single rows: closed form; decay rows: the exact formula;
# constant rows: the authors' calculator (grid step .001, tolerance .005).
TABLE = {
    (0, "single", "exact"): (0.103, 0.206, 0.310, 0.413, 0.516),
    (9, "single", "exact"): (0.145, 0.291, 0.436, 0.582, 0.727),
    (0, "constant", "grid"): (0.007, 0.015, 0.024, 0.036, 0.050),
    (9, "constant", "grid"): (0.014, 0.031, 0.053, 0.084, 0.135),
    (0, "decay", "exact"): (0.010, 0.022, 0.035, 0.051, 0.070),
    (9, "decay", "exact"): (0.020, 0.045, 0.075, 0.116, 0.179),
}


@pytest.mark.parametrize("key", list(TABLE))
def test_solver_reproduces_spec_table(key):
    start, schedule, search = key
    got = [solve_ratio(32, start, schedule, m, search) for m in M]
    assert got == pytest.approx(TABLE[key], abs=0.002)


def test_atome_row_is_the_doubled_constant_schedule():
    got = [2 * solve_ratio(32, 0, "constant", m, "grid") for m in M]
    assert got == pytest.approx((0.014, 0.030, 0.048, 0.072, 0.100), abs=0.002)


def test_exact_constant_solution_hits_the_target_exactly():
    from fastadasp.reduction import token_layer_cost

    r = solve_ratio(32, 9, "constant", 0.5)
    assert 1 - token_layer_cost(layer_ratios("constant", 32, 9, r)) == pytest.approx(0.5, abs=1e-9)
    assert r == pytest.approx(0.138, abs=0.001)  # the grid's 0.135 undershoots by its tolerance


def test_infeasible_target_names_the_largest_feasible_value():
    with pytest.raises(BudgetError, match=r"largest feasible reduction is 0\.6875"):
        solve_ratio(32, 9, "single", 0.7)
    with pytest.raises(BudgetError, match="largest feasible"):
        solve_ratio(4, 3, "constant", 0.2)


def test_decay_schedule_is_linear_to_zero():
    r = layer_ratios("decay", 5, 1, 0.4)
    assert r == pytest.approx([0.0, 0.4, 0.4 * 2 / 3, 0.4 / 3, 0.0])


WHISPER_TINY = StackSpec(num_layers=4, d_model=384, num_heads=6, num_kv_heads=6, head_dim=64, ffn_dim=1536)
QWEN_LIKE = StackSpec(num_layers=8, d_model=256, num_heads=8, num_kv_heads=2, head_dim=32, ffn_dim=768,
                      mlp_matrices=3, causal=True)


@pytest.mark.parametrize("spec,layout", [(WHISPER_TINY, TokenLayout(0, (1500,))),
                                         (QWEN_LIKE, TokenLayout(40, (300, 120)))])
@pytest.mark.parametrize("schedule,start", [("constant", 0), ("decay", 0), ("single", 1)])
@pytest.mark.parametrize("m", [0.1, 0.3, 0.5])
def test_flops_model_meets_the_target_per_sample(spec, layout, schedule, start, m):
    r = solve_ratio_flops(spec, layout, schedule, start, m)
    tokens = simulate_tokens(layout, layer_ratios(schedule, spec.num_layers, start, r))
    realised = flops_reduction(spec, tokens, layout.total)
    assert abs(realised - m) <= 0.005


def test_flops_model_infeasible_is_a_clear_error():
    with pytest.raises(BudgetError, match="largest feasible reduction"):
        solve_ratio_flops(WHISPER_TINY, TokenLayout(0, (1500,)), "single", 3, 0.3)


def test_analytic_flops_formula_by_hand():
    spec = StackSpec(num_layers=1, d_model=4, num_heads=2, num_kv_heads=1, head_dim=2, ffn_dim=8, mlp_matrices=3,
                     causal=True)
    t_in, t_out = 10, 6
    proj = 2 * t_in * 4 * (2 + 2) * 2 + 2 * t_in * 2 * 2 * 4
    attn = 4 * 2 * 2 * (t_in * (t_in + 1) / 2)
    mlp = 2 * t_out * 4 * 8 * 3
    assert stack_flops(spec, [t_in, t_out]) == proj + attn + mlp
