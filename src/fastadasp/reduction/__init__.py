"""Model-agnostic token reduction: operators, methods, schedules, budgets, FLOPs and costs.

Pure torch; imports nothing else from the project.
"""

from .budget import (
    COST_MODELS,
    SCHEDULES,
    AnalyticFlopsBudget,
    Budget,
    BudgetError,
    FixedRatio,
    TokenLayerBudget,
    TokenLayout,
    flops_reduction,
    layer_ratios,
    simulate_tokens,
    solve_ratio,
    solve_ratio_flops,
    token_layer_cost,
)
from .costs import CostReport, realised_costs
from .flops import StackSpec, decode_flops, decode_step_flops, kv_cache_bytes, layer_flops, stack_flops
from .methods import (
    ATome,
    FastAdaSPDense,
    FastAdaSPSparse,
    H2O,
    FastV,
    LayerInputs,
    NoReduction,
    RandomEvict,
    RandomMerge,
    ReductionMethod,
    sample_seed,
)
from .ops import MergeResult, Reduction, chain_merge, evict, weighted_merge

__all__ = [name for name in dir() if not name.startswith("_")]
